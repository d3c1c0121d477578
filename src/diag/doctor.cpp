// fathom doctor's rules: plain arithmetic over a TraceAnalysis. Every estimate of time saved is an
// upper bound per token step (what the step would lose if the named waste went to zero), so the
// ranking says where to look first, not what a fix will certainly give.
#include "fathom/doctor.h"

#include <algorithm>
#include <cctype>
#include <cstdarg>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "fathom/error.h"

namespace fathom {

const char* severity_name(Severity s) {
  switch (s) {
    case Severity::INFO: return "info";
    case Severity::LOW: return "low";
    case Severity::MEDIUM: return "medium";
    case Severity::HIGH: return "high";
  }
  return "info";
}

namespace {

// 1234567 -> "1,234,567"
std::string commas(double v) {
  std::string digits = str_printf("%.0f", v < 0 ? -v : v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return (v < 0 ? "-" : "") + out;
}

std::string bytes_str(double b) {
  if (b >= 1e9) return str_printf("%.2f GB", b / 1e9);
  if (b >= 1e6) return str_printf("%.2f MB", b / 1e6);
  if (b >= 1e3) return str_printf("%.1f kB", b / 1e3);
  return str_printf("%.0f B", b);
}

Severity severity_for(double saved_us, double step_us, const DoctorThresholds& th) {
  if (saved_us <= 0 || step_us <= 0) return Severity::INFO;
  const double pct = 100.0 * saved_us / step_us;
  if (pct >= th.high_pct) return Severity::HIGH;
  if (pct >= th.medium_pct) return Severity::MEDIUM;
  return Severity::LOW;
}

// Kernels that read weight matrices: fathom's GEMV/GEMM and cuBLASLt's (nvjet, xmma, cutlass).
bool is_matmul_kernel(const std::string& name) {
  for (const char* k : {"gemv", "gemm", "matmul", "nvjet", "xmma", "cutlass"})
    if (name.find(k) != std::string::npos) return true;
  return false;
}

// Kernels that only move or re-lay-out data (transposes, contiguous copies, dtype conversions,
// concatenations), by name: the "layout" rule's reformats (profiler.h is_layout_kernel, which the
// profile's prefill section shares).
bool is_reformat_kernel(const KernelStat& k) { return is_layout_kernel(k.name); }

// A softmax that is its own kernel: the scores went to memory between the two matmuls.
bool is_unfused_softmax(const KernelStat& k) {
  std::string n = k.name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  const bool softmax = n.find("softmax") != std::string::npos || n.find("soft_max") != std::string::npos;
  const bool fused = n.find("flash") != std::string::npos || n.find("fmha") != std::string::npos ||
                     n.find("attention") != std::string::npos || n.find("attn") != std::string::npos;
  return softmax && !fused;
}

// ---- what to change, where, and how to check it -------------------------------------------

// fathom's own kernels by name -> the file under src/cuda/ that defines them; "" for any other
// kernel. Matched as a whole identifier, so "gemv_kernel" is not found in "gemv_q4k_kernel".
std::string kernel_source_file(const std::string& name) {
  static const std::pair<const char*, const char*> kFiles[] = {
      {"gemv_q8_kernel", "src/cuda/matmul_gemv_q8.cu"},
      {"gemv_q4k_pair_kernel", "src/cuda/matmul_gemv_q8.cu"},
      {"gemv_q4k_bulk_kernel", "src/cuda/matmul_gemv_q4k_bulk.cuh"},
      {"gemv_q6k_direct_kernel", "src/cuda/matmul_gemv_q8.cu"},
      {"gemv_q6k_bulk_kernel", "src/cuda/matmul_gemv_q6k_bulk.cuh"},
      {"gemv_q80_bulk_kernel", "src/cuda/matmul_gemv_q8_0_one.cuh"},
      {"mma_q8_kernel", "src/cuda/matmul_mma_q8_kernel.cuh"},
      {"gemv_half_kernel", "src/cuda/matmul_gemv_f16.cu"},
      {"gemv_kernel", "src/cuda/matmul_gemv.cu"},
      {"gemm_tile_kernel", "src/cuda/matmul_gemm.cu"},
      {"dequantize_rows_bf16_kernel", "src/cuda/matmul_gemm.cu"},
      {"convert_kernel", "src/cuda/matmul_gemm.cu"},
      {"add_bias_kernel", "src/cuda/matmul_gemm.cu"},
      {"rms_norm_kernel", "src/cuda/rms_norm.cu"},
      {"rms_norm_vec_kernel", "src/cuda/rms_norm.cu"},
      {"rope_kv_kernel", "src/cuda/rope.cu"},
      {"attention_decode_split_kernel", "src/cuda/attention_decode.cu"},
      {"attention_decode_merge_kernel", "src/cuda/attention_decode.cu"},
      {"attention_prefill_tc_kernel", "src/cuda/attention_prefill.cu"},
      {"attention_prefill_kernel", "src/cuda/attention.cu"},
      {"glu_kernel", "src/cuda/activation.cu"},
      {"softcap_kernel", "src/cuda/activation.cu"},
      {"embedding_kernel", "src/cuda/embedding.cu"},
      {"argmax_pass1_kernel", "src/cuda/sampling.cu"},
      {"argmax_pass2_kernel", "src/cuda/sampling.cu"},
      {"sample_kernel", "src/cuda/sampling.cu"},
  };
  auto ident = [](char c) { return std::isalnum((unsigned char)c) || c == '_'; };
  for (const auto& [kernel, file] : kFiles) {
    const std::string k = kernel;
    for (size_t at = name.find(k); at != std::string::npos; at = name.find(k, at + 1)) {
      const bool left = at == 0 || !ident(name[at - 1]);
      const bool right = at + k.size() == name.size() || !ident(name[at + k.size()]);
      if (left && right) return file;
    }
  }
  return "";
}

// A kernel name for prose: no "void ", no parameter list, at most 60 characters.
std::string short_kernel(const std::string& name) {
  std::string n = name.rfind("void ", 0) == 0 ? name.substr(5) : name;
  int depth = 0;  // the parameter list is the first '(' outside template arguments
  for (size_t i = 0; i < n.size(); ++i) {
    if (n[i] == '<') ++depth;
    if (n[i] == '>' && depth > 0) --depth;
    if (n[i] == '(' && depth == 0 && i > 0 && n.compare(i, 21, "(anonymous namespace)") != 0) {
      n = n.substr(0, i);
      break;
    }
  }
  return n.size() > 60 ? n.substr(0, 57) + "..." : n;
}

// Where the named kernels live: fathom's files for fathom's own (in an engine trace), else the
// kernels by name with `other` (the library or framework that provides them).
std::string kernels_where(const std::vector<std::string>& names, bool engine, const std::string& other) {
  std::vector<std::string> files, foreign;
  for (const std::string& n : names) {
    const std::string f = engine ? kernel_source_file(n) : "";
    std::vector<std::string>& v = f.empty() ? foreign : files;
    const std::string item = f.empty() ? short_kernel(n) : f;
    if (std::find(v.begin(), v.end(), item) == v.end()) v.push_back(item);
  }
  std::string s;
  for (const std::string& f : files) s += (s.empty() ? "" : ", ") + f;
  if (!foreign.empty()) {
    std::string k;
    for (size_t i = 0; i < foreign.size() && i < 3; ++i) k += (k.empty() ? "" : ", ") + foreign[i];
    if (foreign.size() > 3) k += str_printf(" and %zu more", foreign.size() - 3);
    s += (s.empty() ? "" : "; ") + str_printf("%s %s: %s", foreign.size() > 1 ? "kernels" : "kernel", k.c_str(),
                                              other.c_str());
  }
  return s;
}

// How a finding enters the patch plan: the changes its fix makes (a later finding whose changes an
// earlier step already makes is covered by that step), where to make them, and the profile
// counters that must move.
struct PlanHint {
  std::vector<std::string> changes;
  std::string where;
  std::string counters;
};

// The patch plan and the checklist, from the ranked findings: one step per finding that saves
// time, largest first; a finding whose changes an earlier step already makes is listed under that
// step instead (their estimates overlap, so they are not added).
void finish_report(DoctorReport& r, const std::map<std::string, PlanHint>& hints, bool engine, double step) {
  const bool per_token = r.scope == "decode" && r.steps_from != "readbacks";
  const char* per = per_token ? "token" : "step";
  constexpr size_t kMaxSteps = 6;
  std::vector<std::vector<std::string>> step_changes;
  std::string counters;
  for (const Finding& f : r.findings) {
    const auto h = hints.find(f.rule);
    if (f.saved_us_per_step <= 0 || h == hints.end()) continue;
    bool covered = false;
    for (size_t i = 0; i < r.patch_plan.size() && !covered; ++i) {
      covered = std::all_of(h->second.changes.begin(), h->second.changes.end(), [&](const std::string& c) {
        return std::find(step_changes[i].begin(), step_changes[i].end(), c) != step_changes[i].end();
      });
      if (covered) r.patch_plan[i].rules.push_back(f.rule);
    }
    if (covered || r.patch_plan.size() >= kMaxSteps) continue;
    PatchStep ps;
    ps.rules = {f.rule};
    ps.change = f.fix;
    ps.where = h->second.where;
    ps.saved_us_per_step = f.saved_us_per_step;
    ps.expected = str_printf("up to %.1f us per %s (%.1f%% of the %.1f us step; %s)", f.saved_us_per_step, per,
                             step > 0 ? 100.0 * f.saved_us_per_step / step : 0.0, step,
                             severity_name(f.severity));
    r.patch_plan.push_back(ps);
    step_changes.push_back(h->second.changes);
    counters += (counters.empty() ? "" : "; ") + h->second.counters;
  }
  for (PatchStep& ps : r.patch_plan)
    if (ps.rules.size() > 1) {
      std::string also;
      for (size_t i = 1; i < ps.rules.size(); ++i) also += (i > 1 ? ", " : "") + ps.rules[i];
      ps.expected += "; also addresses " + also + " (their estimates overlap this one: not added)";
    }

  const std::string profile_cmd = engine ? "`fathom profile -m MODEL`" : "`fathom profile -- CMD`";
  const std::string doctor_cmd = engine ? "`fathom doctor -m MODEL`" : "`fathom doctor -- CMD`";
  std::vector<std::string>& c = r.checklist;
  if (engine)
    c.push_back("before any change: `fathom bench -m MODEL --json before.json` (the tok/s and ms/token baseline) "
                "and `fathom profile -m MODEL --json before-trace.json` (the counters; `fathom doctor --trace "
                "before-trace.json` re-reads them)");
  else
    c.push_back("before any change: `fathom profile --json before.json -- CMD` (the counters; `fathom doctor "
                "--trace before.json` re-reads them) and the program's own step time over the same steps");
  const PatchStep* first = r.patch_plan.empty() ? nullptr : &r.patch_plan[0];
  const std::string target = first ? str_printf(": the step must fall by up to %.1f us per %s after step 1 (from "
                                                "%.1f us)",
                                                first->saved_us_per_step, per, step)
                                   : "";
  if (engine)
    c.push_back("after each step: `fathom bench -m MODEL --baseline before.json` (exits 1 on a regression beyond 3%)" +
                target);
  else
    c.push_back("after each step: the program's step time, or the median step of " + profile_cmd + target +
                "; for a change in fathom's own engine, `fathom bench -m MODEL --json before.json` before and "
                "`fathom bench -m MODEL --baseline before.json` after (exits 1 on a regression beyond 3%)");
  if (!counters.empty()) c.push_back("re-read with " + profile_cmd + ": " + counters);
  if (engine)
    c.push_back("correctness: `fathom check -m MODEL` (generated tokens against the CPU reference) and `ctest "
                "--test-dir build -L gpu` (each op against its CPU reference) must pass as before");
  else
    c.push_back("correctness: the program's outputs on fixed inputs must match the run before (bitwise for copy, "
                "sync and graph changes; within tolerance for kernel or precision changes); for fathom's engine, "
                "`fathom check -m MODEL` and `ctest --test-dir build -L gpu`");
  if (first)
    c.push_back(doctor_cmd + " again: " + first->rules[0] + " must disappear or drop in rank, and the next finding "
                "becomes the one to work on");
  else
    c.push_back(doctor_cmd + " again after any change: no finding should claim a saving");
}

// Tolerance on "more per step than expected": per-step figures are averages over steps, so a
// single stray event in a long run is noise, not a habit of the loop.
constexpr double kPerStepSlack = 0.05;

// ---- time intervals -------------------------------------------------------------------------

struct Span {
  uint64_t b = 0, e = 0;  // [b, e), ns
};

double us(uint64_t ns) { return double(ns) * 1e-3; }

// Sorted by start, overlapping and touching spans joined.
std::vector<Span> merged(std::vector<Span> v) {
  std::sort(v.begin(), v.end(), [](const Span& x, const Span& y) { return x.b < y.b; });
  std::vector<Span> out;
  for (const Span& s : v) {
    if (s.e <= s.b) continue;
    if (!out.empty() && s.b <= out.back().e)
      out.back().e = std::max(out.back().e, s.e);
    else
      out.push_back(s);
  }
  return out;
}

// Length of s covered by a merged span list, us.
double overlap_us(const std::vector<Span>& u, Span s) {
  auto it = std::upper_bound(u.begin(), u.end(), s.b, [](uint64_t t, const Span& x) { return t < x.b; });
  if (it != u.begin()) --it;
  uint64_t ns = 0;
  for (; it != u.end() && it->b < s.e; ++it) {
    const uint64_t b = std::max(it->b, s.b), e = std::min(it->e, s.e);
    if (e > b) ns += e - b;
  }
  return us(ns);
}

// Whether t lies in one of the sorted, disjoint spans.
bool inside(const std::vector<Span>& steps, uint64_t t) {
  auto it = std::upper_bound(steps.begin(), steps.end(), t, [](uint64_t x, const Span& s) { return x < s.b; });
  return it != steps.begin() && t < std::prev(it)->e;
}

// The runtime calls that block the host, as the analysis counts them (trace.cpp).
bool is_sync_api(const std::string& n) {
  return n == "cudaStreamSynchronize" || n == "cudaDeviceSynchronize" || n == "cudaEventSynchronize" ||
         n == "cudaThreadSynchronize";
}
bool is_blocking_copy_api(const std::string& n) {
  return n == "cudaMemcpy" || n == "cudaMemset" || n == "cudaMemcpy2D" || n == "cudaMemcpyToSymbol" ||
         n == "cudaMemcpyFromSymbol";
}
bool is_copy_api(const std::string& n) { return n.rfind("cudaMemcpy", 0) == 0; }

// The window analyze() uses (profiler.h trace_window).
Span window_of(const Trace& t) {
  const TraceWindow w = trace_window(t);
  return {w.begin_ns, w.end_ns};
}

// The steps of `phase` as analyze() cuts them: each from its mark to the next (the whole window
// for "all").
std::vector<Span> phase_steps(const Trace& t, const std::string& phase) {
  const Span w = window_of(t);
  std::vector<StepMark> marks = step_marks_from_ranges(t.ranges);
  if (marks.empty()) marks = t.steps;
  if (marks.empty() || phase == "all") return {w};
  std::stable_sort(marks.begin(), marks.end(), [](const StepMark& x, const StepMark& y) { return x.t_ns < y.t_ns; });
  std::vector<Span> out;
  for (size_t i = 0; i < marks.size(); ++i) {
    const uint64_t e = i + 1 < marks.size() ? marks[i + 1].t_ns : w.e;
    if (marks[i].phase == phase && e > marks[i].t_ns) out.push_back({marks[i].t_ns, e});
  }
  return out;
}

// ---- the host's blocking calls against the GPU's work ----------------------------------------

// Time the host spends inside calls that block it (stream/device/event syncs, synchronous copies,
// copies of pageable memory, which the driver stages synchronously), and the part of it in which
// the GPU has no kernel left to run: the stall. A host blocked while kernels run is waiting for
// compute, which is the normal end of a decode step; a host blocked while the GPU copies or idles
// is waiting for a transfer or for the driver. A kernel that runs during a blocking call was
// queued before it (the blocked thread cannot launch), so within each call the stall starts when
// the last kernel running in it ends.
struct HostWait {
  double blocked_us = 0;       // union of the blocking calls
  double stall_us = 0;         // of it: no kernel running or queued
  double stall_copy_us = 0;    // of the stall: the GPU copying
  double stall_idle_us = 0;    // of the stall: the GPU doing nothing (no copy, no memset)
  double pageable_us = 0;      // of the stall: inside calls that copy pageable memory
  double pageable_copy_us = 0; // GPU time of the pageable copies themselves
  std::map<std::string, int64_t> calls;  // blocking runtime calls by name
};

HostWait host_wait(const Trace& t, const std::vector<Span>& steps) {
  HostWait w;
  std::vector<Span> copies, transfers, pageable;
  for (const MemcpyEvent& m : t.memcpys) {
    copies.push_back({m.start_ns, m.end_ns});
    transfers.push_back({m.start_ns, m.end_ns});
    if (m.pageable) {
      pageable.push_back({m.start_ns, m.end_ns});
      if (inside(steps, m.start_ns)) w.pageable_copy_us += us(m.end_ns - std::min(m.end_ns, m.start_ns));
    }
  }
  for (const MemsetEvent& m : t.memsets) transfers.push_back({m.start_ns, m.end_ns});
  copies = merged(copies);
  transfers = merged(transfers);
  pageable = merged(pageable);

  std::vector<Span> blocking, pageable_calls;
  for (const SyncEvent& s : t.syncs)
    if (s.blocks_host() && inside(steps, s.start_ns)) blocking.push_back({s.start_ns, s.end_ns});
  for (const ApiEvent& a : t.api) {
    if (!inside(steps, a.start_ns)) continue;
    const bool pageable_copy = is_copy_api(a.name) && overlap_us(pageable, {a.start_ns, a.end_ns}) > 0;
    if (!is_sync_api(a.name) && !is_blocking_copy_api(a.name) && !pageable_copy) continue;
    blocking.push_back({a.start_ns, a.end_ns});
    ++w.calls[a.name];
    if (pageable_copy) pageable_calls.push_back({a.start_ns, a.end_ns});
  }
  blocking = merged(blocking);
  pageable_calls = merged(pageable_calls);

  // Kernels by start, with the latest end among those started so far.
  std::vector<Span> kernels;
  for (const KernelEvent& k : t.kernels) kernels.push_back({k.start_ns, k.end_ns});
  std::sort(kernels.begin(), kernels.end(), [](const Span& x, const Span& y) { return x.b < y.b; });
  std::vector<uint64_t> latest_end(kernels.size());
  for (size_t i = 0; i < kernels.size(); ++i)
    latest_end[i] = std::max(kernels[i].e, i > 0 ? latest_end[i - 1] : 0);

  for (const Span& b : blocking) {
    w.blocked_us += us(b.e - b.b);
    // Kernels started before the call ends; the last of them to finish.
    const size_t n = size_t(std::lower_bound(kernels.begin(), kernels.end(), b.e,
                                             [](const Span& k, uint64_t t) { return k.b < t; }) -
                            kernels.begin());
    uint64_t from = b.b;
    if (n > 0 && latest_end[n - 1] > b.b) from = std::min(latest_end[n - 1], b.e);
    if (from >= b.e) continue;
    const Span stall{from, b.e};
    const double len = us(stall.e - stall.b);
    w.stall_us += len;
    w.stall_copy_us += overlap_us(copies, stall);
    w.stall_idle_us += std::max(0.0, len - overlap_us(transfers, stall));
    w.pageable_us += overlap_us(pageable_calls, stall);
  }
  return w;
}

// ---- steps of a trace without step markers --------------------------------------------------

struct InferredSteps {
  std::vector<StepMark> marks;
  std::string scope;  // the phase to diagnose: "decode" or "window"
  std::string from;   // "readbacks" or "window"
};

// A loop that reads a result back every step (a decode loop's sampled token; PyTorch's .item())
// is cut at the end of each device-to-host copy; copies with no kernel between them are one
// readback. Leading and trailing steps far longer than the median (first-call autotuning,
// allocation, teardown) are left out as "warm-up" and "tail". Without at least two such steps,
// the scope is the longest run of GPU work without an idle gap over kLongGapUs ("window").
InferredSteps infer_steps(const Trace& t, const DoctorThresholds& th) {
  InferredSteps inf;
  std::vector<uint64_t> kernel_starts;
  for (const KernelEvent& k : t.kernels) kernel_starts.push_back(k.start_ns);
  std::sort(kernel_starts.begin(), kernel_starts.end());
  auto kernel_between = [&](uint64_t a, uint64_t b) {
    auto it = std::upper_bound(kernel_starts.begin(), kernel_starts.end(), a);
    return it != kernel_starts.end() && *it < b;
  };
  std::vector<uint64_t> readbacks;
  for (const MemcpyEvent& m : t.memcpys)
    if (m.kind == CopyKind::D2H) readbacks.push_back(m.end_ns);
  std::sort(readbacks.begin(), readbacks.end());
  std::vector<uint64_t> cuts;
  for (uint64_t e : readbacks) {
    if (!cuts.empty() && !kernel_between(cuts.back(), e))
      cuts.back() = e;
    else
      cuts.push_back(e);
  }
  if (cuts.size() >= 3) {
    std::vector<double> d;
    for (size_t i = 0; i + 1 < cuts.size(); ++i) d.push_back(double(cuts[i + 1] - cuts[i]));
    std::vector<double> sorted = d;
    std::sort(sorted.begin(), sorted.end());
    const double limit = th.warmup_factor * sorted[sorted.size() / 2];
    size_t lo = 0, hi = d.size();  // steady steps: [lo, hi)
    while (lo < hi && d[lo] > limit) ++lo;
    while (hi > lo && d[hi - 1] > limit) --hi;
    if (hi - lo >= 2) {
      if (lo > 0) inf.marks.push_back({cuts[0], "warm-up"});
      for (size_t i = lo; i < hi; ++i) inf.marks.push_back({cuts[i], "decode"});
      inf.marks.push_back({cuts[hi], "tail"});
      inf.scope = "decode";
      inf.from = "readbacks";
      return inf;
    }
  }
  // The densest span: GPU operations split where the GPU idles longer than kLongGapUs.
  std::vector<Span> ops;
  for (const KernelEvent& k : t.kernels) ops.push_back({k.start_ns, k.end_ns});
  for (const MemcpyEvent& m : t.memcpys) ops.push_back({m.start_ns, m.end_ns});
  for (const MemsetEvent& m : t.memsets) ops.push_back({m.start_ns, m.end_ns});
  if (ops.empty()) return inf;
  std::sort(ops.begin(), ops.end(), [](const Span& x, const Span& y) { return x.b < y.b; });
  const uint64_t long_gap_ns = uint64_t(kLongGapUs * 1e3);
  Span best{}, cur = ops[0];
  size_t best_n = 0, cur_n = 0;
  for (const Span& o : ops) {
    if (cur_n > 0 && o.b > cur.e && o.b - cur.e > long_gap_ns) {
      if (cur_n > best_n) best = cur, best_n = cur_n;
      cur = o;
      cur_n = 0;
    }
    cur.e = std::max(cur.e, o.e);
    ++cur_n;
  }
  if (cur_n > best_n) best = cur, best_n = cur_n;
  inf.marks = {{best.b, "window"}, {best.e, "tail"}};
  inf.scope = "window";
  inf.from = "window";
  return inf;
}

DoctorReport diagnose_phase(const Trace& trace, const PhaseStats& p, const std::string& steps_from,
                            const DoctorThresholds& th);

}  // namespace

DoctorReport diagnose(const Trace& trace, const TraceAnalysis& a, const DoctorThresholds& th) {
  // Without step markers the whole run mixes loading, warm-up and teardown with the loop: find
  // the loop's steps (or its densest span) and diagnose those instead.
  if (a.phases.empty() && !trace.kernels.empty()) {
    InferredSteps inf = infer_steps(trace, th);
    if (!inf.marks.empty()) {
      Trace w = trace;
      w.steps = std::move(inf.marks);
      const TraceAnalysis wa = analyze(w, 0);
      if (const PhaseStats* p = wa.phase(inf.scope); p && p->kernels > 0)
        return diagnose_phase(w, *p, inf.from, th);
    }
  }
  return diagnose_phase(trace, a.steady(), a.step_source, th);
}

namespace {

DoctorReport diagnose_phase(const Trace& trace, const PhaseStats& p, const std::string& steps_from,
                            const DoctorThresholds& th) {
  const bool decode = p.phase == "decode";
  const bool inferred = steps_from == "readbacks";
  DoctorReport r;
  r.scope = p.phase;
  r.steps_from = steps_from;
  r.n_steps = p.n_steps;
  r.step_us = p.n_steps > 1 ? p.median_step_us : p.per_step(p.wall_us);
  const double step = r.step_us > 0 ? r.step_us : p.per_step(p.wall_us);
  const char* per = decode && !inferred ? "token" : "step";
  const std::string scope_name = decode ? "decode step" : (p.phase == "all" ? "run" : p.phase);

  auto add = [&](Finding f) {
    f.severity = std::max(f.severity, severity_for(f.saved_us_per_step, step, th));
    r.findings.push_back(std::move(f));
  };

  // What the reader runs to measure a fix: fathom's engine (-m MODEL), or the profiled program.
  const bool engine = trace.source == "engine";
  const std::string profile_cmd = engine ? "`fathom profile -m MODEL`" : "`fathom profile -- CMD`";
  const std::string doctor_cmd = engine ? "`fathom doctor -m MODEL`" : "`fathom doctor -- CMD`";
  const std::string step_time = engine ? "the decode ms/token of `fathom bench -m MODEL --baseline before.json`"
                                       : "the median step (or the program's own step timer)";
  // "the median step must fall by up to 30.0 us (from 500.0 us)": the estimate as a pass mark.
  auto must_fall = [&](double saved) {
    return str_printf("%s must fall by up to %.1f us (from %.1f us per %s)", step_time.c_str(), saved, step, per);
  };
  std::map<std::string, PlanHint> hints;  // by rule

  if (p.kernels == 0) {
    Finding f;
    f.rule = "no-kernels";
    f.title = str_printf("no kernels recorded in the %s", scope_name.c_str());
    f.evidence.push_back(str_printf("%lld steps, %.1f us of wall time", (long long)p.n_steps, p.wall_us));
    f.fix = "check that the program used the GPU while profiled (or that CUPTI could attach)";
    f.why = "without kernel records there is no GPU time to attribute, so no rule can name a bottleneck";
    f.failure_modes = "CUPTI cannot attach while another profiler (nsys, ncu) holds it, or when the driver is older "
                      "than the CUDA runtime the injection library was built with; a program that runs its GPU work "
                      "in a child process is not followed";
    f.how_to_test = profile_cmd + " must list kernels in the phase (kernels > 0 in the window line)";
    r.findings.push_back(f);
    finish_report(r, hints, engine, step);
    return r;
  }

  const double kernels_ps = p.per_step(double(p.kernels));
  const double gap_ps = p.per_step(p.gap_us);
  const double busy_ps = p.per_step(p.busy_us);
  const double wall_ps = p.per_step(p.wall_us);
  const double graphs_ps = p.per_step(double(p.graph_launches));
  const HostWait hw = host_wait(trace, phase_steps(trace, p.phase));
  const double stall_ps = p.per_step(hw.stall_us);

  // ---- sync/transfer-bound: the host blocked while the GPU has no kernel to run ----
  // Upper bound: the stall would vanish if every transfer were asynchronous and overlapped with
  // kernels, and the host waited only for compute.
  if (wall_ps > 0 && 100.0 * stall_ps / wall_ps > th.idle_pct) {
    Finding f;
    f.rule = "sync-bound";
    f.title = str_printf("sync/transfer-bound: the host waits %.1f%% of each %s in synchronizing calls while the GPU "
                         "has no kernel to run (%.1f us: %.1f us of copies, %.1f us idle)",
                         100.0 * stall_ps / wall_ps, per, stall_ps, p.per_step(hw.stall_copy_us),
                         p.per_step(hw.stall_idle_us));
    std::string calls;
    for (const auto& [name, n] : hw.calls)
      calls += str_printf("%s%s %.2f", calls.empty() ? "" : ", ", name.c_str(), p.per_step(double(n)));
    std::string blocked = str_printf("host blocked %.1f us per %s of %.1f us", p.per_step(hw.blocked_us), per, wall_ps);
    if (!calls.empty()) blocked += str_printf(" (calls per %s: %s)", per, calls.c_str());
    f.evidence.push_back(blocked);
    f.evidence.push_back(str_printf("GPU per %s: kernels %.1f us, copies %.1f us (H2D %s, D2H %s)", per,
                                    p.per_step(p.kernel_us), p.per_step(p.copy_us),
                                    bytes_str(p.per_step(p.h2d_bytes)).c_str(),
                                    bytes_str(p.per_step(p.d2h_bytes)).c_str()));
    if (hw.pageable_us > 0)
      f.evidence.push_back(str_printf("%.1f us of the wait per %s is inside calls that copy pageable memory "
                                      "(staged by the driver through a pinned buffer)",
                                      p.per_step(hw.pageable_us), per));
    f.fix = "make the transfers asynchronous: pinned host buffers (cudaMallocHost, or cudaHostRegister at load), "
            "cudaMemcpyAsync on the compute stream, one synchronization per step to read the result; keep data "
            "that the next step needs on the GPU, and overlap what must cross with kernels (double buffering)";
    f.saved_us_per_step = stall_ps;
    f.why = str_printf("a synchronous or pageable copy holds the host until its bytes have crossed, and a sync until "
                       "the GPU drains, so nothing is queued behind them: the GPU copies or idles (%.1f us and %.1f "
                       "us per %s) while the host waits; with pinned buffers and cudaMemcpyAsync the call returns at "
                       "once, the host keeps enqueueing, and the copies overlap with kernels or leave the step",
                       p.per_step(hw.stall_copy_us), p.per_step(hw.stall_idle_us), per);
    f.failure_modes = str_printf("the copies still take %.1f us of GPU time per %s: when the next kernel needs their "
                                 "data, async alone hides only the host's part (overlap needs double buffering on a "
                                 "second stream); pinning large buffers costs load time and host RAM that cannot be "
                                 "swapped; a buffer freed and reallocated each step loses its pinning; a host read of "
                                 "the result now needs an event or stream sync first, and reading without it is a "
                                 "race",
                                 p.per_step(p.copy_us), per);
    f.how_to_test = profile_cmd + str_printf(" before and after: the blocking calls per %s (cudaMemcpy, "
                                             "cudaDeviceSynchronize) must drop and syncs/st reach 1; ", per) +
                    must_fall(stall_ps) + "; " + doctor_cmd + " must no longer report sync-bound";
    hints[f.rule] = {{"pinned", "async-copies", "syncs"},
                     engine ? "src/cuda/engine.cpp (the step's input copies, readback and stream synchronization)"
                            : "the loop's host buffers (cudaMallocHost or cudaHostRegister once at load; PyTorch: "
                              "pin_memory() and .to(device, non_blocking=True)) and its copy calls (cudaMemcpyAsync "
                              "on the compute stream, one stream or event sync per step)",
                     "syncs/st and the host's blocked time per step"};
    add(f);
  }

  // ---- launch-bound: idle GPU between the kernels of a step ----
  if (p.gap_pct > th.idle_pct) {
    // Gaps far longer than a launch: the host (framework dispatch, Python) issues kernels more
    // slowly than the GPU runs them, and a graph replays them without it.
    const bool cpu = graphs_ps < 0.5 && p.median_gap_us > th.cpu_gap_us;
    Finding f;
    f.rule = "launch-bound";
    f.title = str_printf("%s: GPU idle %.1f%% of the %s between kernels (%s kernels/%s, median gap %.1f us)%s",
                         cpu ? "launch/CPU-bound" : "launch-bound", p.gap_pct, scope_name.c_str(),
                         commas(kernels_ps).c_str(), per, p.median_gap_us,
                         cpu ? ": the host issues kernels more slowly than the GPU runs them" : "");
    f.evidence.push_back(str_printf("idle between kernels: %.1f us per %s of %.1f us", gap_ps, per, wall_ps));
    f.evidence.push_back(str_printf("kernels per %s: %.1f, launched by %.1f launch calls and %.2f graph launches "
                             "(%.1f us of host time in them)",
                             per, kernels_ps, p.per_step(double(p.launch_calls)), graphs_ps,
                             p.per_step(p.launch_us)));
    if (cpu)
      f.evidence.push_back(str_printf("host time per kernel %.1f us (the %s over its kernels) against %.1f us of GPU "
                                      "time per kernel",
                                      kernels_ps > 0 ? wall_ps / kernels_ps : 0.0, per,
                                      p.kernels > 0 ? p.kernel_us / double(p.kernels) : 0.0));
    if (cpu) {
      f.fix = "take the host out of the per-kernel path: capture the step in a CUDA graph (in PyTorch "
              "torch.compile(mode=\"reduce-overhead\") or torch.cuda.CUDAGraph) so it replays with one launch, "
              "and fuse the small ops so there are fewer to issue";
    } else if (graphs_ps < 0.5) {
      f.fix = "capture the decode step in a CUDA graph (one cudaGraphLaunch per token instead of one launch "
              "per kernel), then fuse small elementwise kernels";
    } else {
      f.fix = str_printf("the step already replays a graph, so the gaps are the per-kernel cost inside it: fuse "
                  "kernels (norm into the next matmul, RoPE into the KV write, GLU into the down "
                  "projection's input) to cut the %.0f kernels per %s",
                  kernels_ps, per);
    }
    f.saved_us_per_step = gap_ps;
    const bool fuse = graphs_ps >= 0.5;
    std::vector<std::string> top_names;
    for (size_t i = 0; i < p.top_kernels.size() && i < 4; ++i) top_names.push_back(p.top_kernels[i].name);
    if (!fuse) {
      f.why = cpu ? str_printf("the gaps (median %.1f us) are far longer than a launch: the host's own work per op "
                               "(framework dispatch, Python) paces the GPU; a CUDA graph replays the recorded "
                               "kernels from the GPU's queue without running that host code, so the %.1f us of "
                               "idle per %s shrinks to the graph's per-node cost (about 1 us)",
                               p.median_gap_us, gap_ps, per)
                  : str_printf("each launch costs the host 2-5 us (H100/H200) and the GPU idles whenever a kernel "
                               "is shorter than that (median gap %.1f us); one cudaGraphLaunch submits the whole "
                               "step and the GPU runs kernel after kernel, so the %.1f us of idle per %s shrinks "
                               "to the graph's per-node cost",
                               p.median_gap_us, gap_ps, per);
      f.failure_modes = "shapes or pointers that change per step (a growing KV length, a new batch size, buffers "
                        "reallocated per step) force a re-capture or a graph per shape, unless the kernels read the "
                        "length from device memory; host-side work inside the step (a CPU sampler, .item(), a sync, "
                        "an allocation) is not captured: it breaks the capture or stays on the critical path; "
                        "capture after warm-up (cuBLAS and autotuners allocate on first call); instantiating a graph "
                        "costs milliseconds, so re-capturing every step loses more than it wins";
    } else {
      f.why = str_printf("the step already replays a graph, so each of its %.0f kernels still costs a drain and a "
                         "ramp-up of the SMs plus the graph's per-node latency; a fused kernel does the work of "
                         "several in one launch and keeps the intermediate in registers instead of a DRAM round trip",
                         kernels_ps);
      f.failure_modes = "a fused kernel holds more registers and shared memory and can lose occupancy (check "
                        "blk/SM in the kernel efficiency table); fusing a reduction (norm) into a matmul repeats it "
                        "per block; every fused kernel needs its own CPU-reference test, and a fused path must keep "
                        "the unfused one for the shapes it does not cover";
    }
    f.how_to_test = profile_cmd + str_printf(" before and after: %sidle-gap%% must fall from %.1f%% toward a few "
                                             "%%; ",
                                             fuse ? "kern/step must drop, " : "graph/st must read 1.00, ",
                                             p.gap_pct) +
                    must_fall(gap_ps) + "; " + (engine ? "`fathom check -m MODEL` for the tokens" :
                                                         "the program's outputs must not change");
    if (fuse)
      hints[f.rule] = {{"fusion"},
                       kernels_where(top_names, engine, "the framework's fusion (torch.compile) or a custom kernel"),
                       "kern/step and idle-gap%"};
    else
      hints[f.rule] = {{"graph"},
                       engine ? "src/cuda/engine.cpp (the decode step's CUDA graph capture and replay)"
                              : "the step's launches: cudaStreamBeginCapture / cudaGraphInstantiate / cudaGraphLaunch "
                                "around one step (PyTorch: torch.compile(mode=\"reduce-overhead\") or "
                                "torch.cuda.CUDAGraph)",
                       "graph/st, idle-gap% and med-gap us"};
    add(f);
  }

  // ---- host overhead: the GPU idle outside kernels (between steps, before the first launch) ----
  {
    // Time in allocations is the allocation rule's to claim, and GPU idle time while the host sits
    // in a blocking call (pageable staging, a sync after the copies) the sync-bound rule's: neither
    // is counted twice.
    const double blocked_idle_ps = p.per_step(hw.stall_idle_us);
    const double outside_ps =
        std::max(0.0, wall_ps - busy_ps - gap_ps - p.per_step(p.alloc_us) - blocked_idle_ps);
    const double outside_pct = wall_ps > 0 ? 100.0 * outside_ps / wall_ps : 0;
    if (outside_pct > th.idle_pct) {
      Finding f;
      f.rule = "host-overhead";
      f.title = decode ? str_printf("host-bound: the GPU waits %.1f%% of each %s for the host (%.1f us outside the "
                             "step's kernels)",
                             outside_pct, per, outside_ps)
                       : str_printf("host-bound: the GPU is idle %.1f%% of the %s outside kernels (%.1f us; %lld gaps over "
                             "%.0f us)",
                             outside_pct, scope_name.c_str(), outside_ps, (long long)p.long_gaps, kLongGapUs);
      f.evidence.push_back(str_printf("GPU busy %.1f us of a %.1f us %s (%.1f%%); idle between kernels %.1f us", busy_ps,
                               wall_ps, per, p.busy_pct, gap_ps));
      f.evidence.push_back(str_printf("host syncs %.2f per %s, %.1f us waited", p.per_step(double(p.host_syncs)), per,
                               p.per_step(p.host_sync_us)));
      if (blocked_idle_ps > 0)
        f.evidence.push_back(str_printf("not counted: %.1f us per %s of GPU idle time while the host sat in blocking "
                                        "calls", blocked_idle_ps, per));
      f.fix = decode ? "shorten the host's turn between steps: sample on the GPU, keep detokenization and logging "
                       "off the critical path, and enqueue step i+1 before reading step i's token where the "
                       "sampler allows"
                     : "the run is mostly host work (loading, I/O, set-up) around the GPU's: for per-token figures "
                       "profile the engine itself (fathom profile -m MODEL), which marks each token step";
      f.saved_us_per_step = outside_ps;
      f.why = decode ? str_printf("the GPU finishes its kernels and waits %.1f us per %s for the host to sample, "
                                  "detokenize and launch the next step; sampling on the GPU and enqueueing step i+1 "
                                  "before reading step i's token run the host's turn while the GPU works",
                                  outside_ps, per)
                     : "the idle time lies outside the GPU's work (loading, I/O, set-up): a per-token profile "
                       "separates the loop from it, and only the loop's idle time is worth removing";
      f.failure_modes = decode ? "enqueueing ahead needs the next input on the device (the sampler writes the id "
                                 "the embedding reads); stop tokens are then seen a step late (one wasted step); "
                                 "logging or detokenizing on another thread must keep the output in order; a host "
                                 "turn made of Python dispatch only shrinks with a graph (launch-bound)"
                               : "host work that is really per token (a Python sampler) stays hidden in a "
                                 "whole-run window: profile with step markers to see it";
      f.how_to_test = profile_cmd + str_printf(": busy%% must rise from %.1f%% and the median step approach the "
                                               "GPU busy time (%.1f us); ",
                                               p.busy_pct, busy_ps) +
                      must_fall(outside_ps);
      hints[f.rule] = {{"host-turn"},
                       engine ? "src/cuda/engine.cpp and src/cuda/sampling.cu (the host's turn between steps: "
                                "sampling, readback, the next launch)"
                              : "the host loop between steps (sampling, detokenization, logging, the next launch)",
                       "busy% and the median step"};
      add(f);
    }
  }

  // ---- bandwidth: weight bytes per token against the measured read ceiling ----
  // Decode reads every weight once per token, nearly all of it in the matmul kernels, so their time
  // per token against weight bytes / read ceiling is the kernels' bandwidth. Without recognisable
  // matmul kernels the GPU-busy time of the step stands in for them.
  if (decode && trace.weight_bytes > 0 && trace.read_gbps > 0 && step > 0) {
    const double W = trace.weight_bytes;
    const double ideal_us = W / (trace.read_gbps * 1e9) * 1e6;
    const double step_gbps = W / (step * 1e-6) / 1e9;
    double matmul_us = 0;
    std::string matmul_names;
    std::vector<std::string> matmul_kernels;
    for (const KernelStat& k : p.top_kernels) {
      if (!is_matmul_kernel(k.name)) continue;
      matmul_us += k.total_us;
      matmul_kernels.push_back(k.name);
      if (matmul_names.size() < 120) matmul_names += (matmul_names.empty() ? "" : ", ") + k.name;
    }
    const double matmul_ps = p.per_step(matmul_us);
    const bool by_kernels = matmul_ps > 0;
    const double work_us = by_kernels ? matmul_ps : busy_ps;  // the time that moves the weights
    const double gbps = work_us > 0 ? W / (work_us * 1e-6) / 1e9 : 0;
    const double pct = 100.0 * gbps / trace.read_gbps;
    Finding f;
    f.rule = "bandwidth";
    f.evidence.push_back(str_printf("weights %s per token; measured read ceiling %.0f GB/s, so at least %.1f us per token",
                             bytes_str(W).c_str(), trace.read_gbps, ideal_us));
    if (by_kernels)
      f.evidence.push_back(str_printf("matmul kernels (%s): %.1f us per token = %.0f GB/s = %.1f%% of the ceiling",
                               matmul_names.c_str(), matmul_ps, gbps, pct));
    f.evidence.push_back(str_printf("GPU busy %.1f us per token = %.0f GB/s; whole step %.1f us = %.0f GB/s = %.1f%%",
                             busy_ps, busy_ps > 0 ? W / (busy_ps * 1e-6) / 1e9 : 0.0, step, step_gbps,
                             100.0 * step_gbps / trace.read_gbps));
    const char* what = by_kernels ? "matmul kernels" : "decode kernels";
    if (pct < th.bandwidth_pct) {
      f.title = str_printf("memory-bound %s at %.0f GB/s = %.1f%% of measured bandwidth (%s of weights, %.1f us per token)",
                    what, gbps, pct, bytes_str(W).c_str(), work_us);
      // Only kernel time: idle time is the launch-bound / host findings' to claim.
      f.saved_us_per_step = std::max(0.0, work_us - ideal_us);
      f.fix = "the kernels read the weights below the ceiling: tune the GEMV kernels first (wider loads, more "
              "bytes in flight per SM, enough blocks for every SM, no second pass over the weights); compare "
              "each with `fathom bench` GB/s";
    } else {
      f.title = str_printf("%s at %.1f%% of measured bandwidth (%.0f GB/s): near the limit for %s of weights", what, pct,
                    gbps, bytes_str(W).c_str());
      f.fix = "little left in the kernels: fewer bytes per token (a smaller quant type) or more tokens per "
              "weight read (batching, speculative decoding)";
    }
    if (pct < th.bandwidth_pct) {
      f.why = str_printf("decode reads every weight byte once per token, so the %s cannot beat %.1f us (%s at %.0f "
                         "GB/s); at %.1f%% of that rate they are latency-bound: too few bytes in flight per SM to "
                         "keep DRAM busy; wider loads, more independent loads per thread and a grid that fills "
                         "every SM raise the bytes in flight until the measured ceiling sets the time",
                         what, ideal_us, bytes_str(W).c_str(), trace.read_gbps, pct);
      f.failure_modes = "wider loads need aligned rows and a tail path for row lengths that are not a multiple of "
                        "the vector width; splitting a row over blocks needs a cross-block reduction (a second pass "
                        "or atomics) that can cost what it saves on small matrices; more accumulators per thread "
                        "raise registers and can lower occupancy or spill; the win differs per quant type and "
                        "matrix shape, so one shape's speedup does not carry over";
      f.how_to_test = (engine ? "`fathom bench -m MODEL --baseline before.json`: decode GB/s must rise toward " +
                                    str_printf("%.0f GB/s; ", trace.read_gbps)
                              : std::string()) +
                      profile_cmd + str_printf(": the matmul kernels' %%read in the kernel efficiency table must rise "
                                               "from %.1f%%; ",
                                               pct) +
                      must_fall(f.saved_us_per_step) +
                      (engine ? "; `fathom check -m MODEL` and `ctest -L gpu` (GEMV against the CPU reference)" : "");
    } else {
      f.why = str_printf("the %s read the weights at %.1f%% of the measured ceiling: the time per token is set by "
                         "the %s read, so only fewer bytes per token or more tokens per read shorten it",
                         what, pct, bytes_str(W).c_str());
      f.failure_modes = "a smaller quant type changes the output (check accuracy, not just speed); batching raises "
                        "throughput, not the latency of one stream; speculative decoding pays only when the draft's "
                        "tokens are accepted often enough";
      f.how_to_test = (engine ? std::string("`fathom bench -m MODEL --baseline before.json` with the new type or "
                                            "batch: tok/s must rise; ")
                              : std::string()) +
                      profile_cmd + ": the weight bytes per token over the step; " +
                      (engine ? "`fathom check -m MODEL` for accuracy" : "the program's accuracy check");
    }
    hints[f.rule] = {{"matmul-bandwidth"},
                     kernels_where(matmul_kernels, engine, "the matmul library (cuBLASLt heuristics, a GEMV kernel "
                                                           "for one token) or the framework's quantized matmul"),
                     "the matmul kernels' GB/s and %read"};
    if (matmul_kernels.empty())
      hints[f.rule].where = engine ? "src/cuda/matmul_gemv*.cu (the decode GEMV kernels)"
                                   : "the framework's matmul backend for one token";
    add(f);
  }

  // ---- host syncs per token ----
  {
    const double syncs_ps = p.per_step(double(p.host_syncs));
    const double expected = decode ? th.expected_syncs : 0;
    if (decode && syncs_ps > expected + kPerStepSlack) {
      Finding f;
      f.rule = "host-syncs";
      f.title = str_printf("host syncs per %s: %.2f (expected %.0f)", per, syncs_ps, expected);
      f.evidence.push_back(str_printf("%lld host synchronizations in %lld steps, %.1f us per %s spent waiting",
                               (long long)p.host_syncs, (long long)p.n_steps, p.per_step(p.host_sync_us), per));
      f.fix = "one synchronization per step, to read the sampled id: use cudaMemcpyAsync on the engine's stream "
              "instead of cudaMemcpy, and drop cudaDeviceSynchronize/cudaStreamSynchronize inside the step";
      // Each extra sync drains the GPU; the host then pays a launch latency to refill it.
      f.saved_us_per_step = (syncs_ps - expected) * th.sync_cost_us;
      f.why = str_printf("each extra synchronization (%.2f per %s) empties the GPU's queue: the host wakes only "
                         "after the last kernel and the next one starts a launch latency later; with one sync per "
                         "step, to read the sampled id, the queue stays full for the rest of the step (the estimate "
                         "assumes %.0f us per extra sync)",
                         syncs_ps - expected, per, th.sync_cost_us);
      f.failure_modes = "a sync that ordered a host read (a buffer read after an async copy, a host free) becomes a "
                        "race: replace it with an event on the stream, not with nothing; syncs hidden in other calls "
                        "(cudaMemcpy to pageable memory, cudaFree, PyTorch .item()/.cpu()/print) do not look like "
                        "syncs in the code; with several streams a device-wide sync may be the only ordering";
      f.how_to_test = profile_cmd + str_printf(": syncs/st must read %.2f; ", expected) + must_fall(f.saved_us_per_step) +
                      "; " + (engine ? "`fathom check -m MODEL`" : "the program's outputs") +
                      " must not change (a missing sync shows as wrong or flaky output)";
      hints[f.rule] = {{"syncs"},
                       engine ? "src/cuda/engine.cpp (the step's synchronizations)"
                              : "the synchronizing calls in the loop (cudaDeviceSynchronize, cudaStreamSynchronize, "
                                "synchronous cudaMemcpy; PyTorch: .item(), .cpu(), printing a tensor)",
                       "syncs/st"};
      add(f);
    }
  }

  // ---- allocations in the decode loop ----
  if (p.allocs > 0) {
    const double allocs_ps = p.per_step(double(p.allocs));
    Finding f;
    f.rule = "allocations";
    f.title = decode ? str_printf("allocations in the decode loop: %.2f per %s (expected 0)", allocs_ps, per)
                     : str_printf("%lld allocation calls in the %s (%.1f us)", (long long)p.allocs, scope_name.c_str(),
                           p.alloc_us);
    f.evidence.push_back(str_printf("%lld cudaMalloc/cudaFree-family calls, %.1f us per %s in them", (long long)p.allocs,
                             p.per_step(p.alloc_us), per));
    f.fix = decode ? "allocate at load: size the workspace for the largest batch once and reuse it (an arena "
                     "reset per step); cudaFree also synchronizes the device"
                   : "fine at load; inside a loop, allocate once at load and reuse (cudaFree also synchronizes "
                     "the device)";
    f.saved_us_per_step = p.per_step(p.alloc_us);
    if (decode) f.severity = Severity::LOW;  // never info in the decode loop: expected is 0
    f.why = "cudaMalloc takes a driver lock and maps memory, and cudaFree synchronizes the device, so each stalls "
            "the step; a workspace sized at load turns the per-step allocation into a pointer bump";
    f.failure_modes = str_printf("sizing for the largest batch and context takes memory the KV cache could use; a "
                                 "caching allocator (PyTorch's) still calls cudaMalloc when a shape grows per step "
                                 "(a KV cache grown by concatenation): pre-allocate it; at %.2f calls per %s this "
                                 "may be a one-off (a first-call set-up) rather than a habit of the loop",
                                 allocs_ps, per);
    f.how_to_test = profile_cmd + ": alloc/st must read 0.00 in the decode row; " + must_fall(f.saved_us_per_step);
    hints[f.rule] = {{"allocations"},
                     engine ? "src/cuda/arena.cpp and src/cuda/engine.cpp (workspace sized at load)"
                            : "the loop's cudaMalloc/cudaFree (PyTorch: tensors created per step; allocate once, "
                              "write with out=)",
                     "alloc/st"};
    add(f);
  }

  // ---- copies per token beyond the token ids in and the sampled id out ----
  // By count (each small copy costs a launch and often a sync) or by bytes (logits read back for a
  // host-side sampler, activations shuttled through the host): the step's inputs are a few ids.
  if (decode) {
    const double h2d_ps = p.per_step(double(p.h2d)), d2h_ps = p.per_step(double(p.d2h));
    const double excess = std::max(0.0, h2d_ps - th.expected_h2d) + std::max(0.0, d2h_ps - th.expected_d2h);
    const double bytes_ps = p.per_step(p.h2d_bytes + p.d2h_bytes);
    const double excess_bytes = std::max(0.0, bytes_ps - th.expected_copy_bytes);
    if (excess > kPerStepSlack || excess_bytes > 0) {
      const int64_t copies = p.h2d + p.d2h + p.d2d + p.other_copies;
      const double mean_copy_us = copies > 0 ? p.copy_us / double(copies) : 0;
      const double copy_ps = p.per_step(p.copy_us);
      Finding f;
      f.rule = "copies";
      if (excess > kPerStepSlack)
        f.title = str_printf("H2D/D2H copies per %s beyond token ids: %.2f extra (%.2f H2D, %.2f D2H; expected <= %.0f "
                             "and %.0f)",
                             per, excess, h2d_ps, d2h_ps, th.expected_h2d, th.expected_d2h);
      else
        f.title = str_printf("H2D/D2H transfers of %s per %s beyond token ids (%.2f H2D, %.2f D2H copies; expected "
                             "<= %s)",
                             bytes_str(bytes_ps).c_str(), per, h2d_ps, d2h_ps,
                             bytes_str(th.expected_copy_bytes).c_str());
      f.evidence.push_back(str_printf("per %s: H2D %s, D2H %s, D2D %.2f copies (%s)", per,
                               bytes_str(p.per_step(p.h2d_bytes)).c_str(), bytes_str(p.per_step(p.d2h_bytes)).c_str(),
                               p.per_step(double(p.d2d)), bytes_str(p.per_step(p.d2d_bytes)).c_str()));
      f.evidence.push_back(str_printf("mean copy %.1f us; copies take %.1f us of the GPU's time per %s (%.1f%% of it)",
                                      mean_copy_us, copy_ps, per, wall_ps > 0 ? 100.0 * copy_ps / wall_ps : 0.0));
      f.fix = "keep step inputs on the device (positions and KV slots can be computed there) and read back only "
              "the sampled ids; gather the remaining small inputs into one pinned buffer and one copy";
      // Count: each extra copy's time plus part of a sync; bytes: the copy time of the excess bytes.
      f.saved_us_per_step = std::max(excess * (mean_copy_us + th.sync_cost_us * 0.2),
                                     bytes_ps > 0 ? copy_ps * excess_bytes / bytes_ps : 0.0);
      f.why = str_printf("each copy pays a DMA set-up and the PCIe time of its bytes (mean %.1f us here), and a "
                         "synchronous one a drain of the GPU; inputs computed on the device (positions, KV slots) "
                         "and a sampler on the GPU never cross, so %s per %s and its copy time leave the step",
                         mean_copy_us, bytes_str(std::max(excess_bytes, 0.0)).c_str(), per);
      f.failure_modes = "computing inputs on the device adds small kernels (a launch each unless they join the "
                        "graph or fuse into an existing kernel); data the host truly needs (logits for a host "
                        "sampler, stop-string checks) must still come back: shrink it (top-k ids, not all logits) "
                        "rather than remove it; gathering inputs into one buffer changes every consumer's layout";
      f.how_to_test = profile_cmd + str_printf(": H2D/st and D2H/st must fall to <= %.0f and %.0f and the copy bytes "
                                               "per %s to a few kB; ",
                                               th.expected_h2d, th.expected_d2h, per) +
                      must_fall(f.saved_us_per_step);
      hints[f.rule] = {{"device-resident"},
                       engine ? "src/cuda/engine.cpp (the step's inputs and readback)"
                              : "the data the loop sends and reads back each step (keep it in device tensors; sample "
                                "on the GPU; read back only the ids)",
                       "H2D/st, D2H/st and copy bytes per step"};
      add(f);
    }
  }

  // ---- pageable host memory in transfers ----
  // Estimated from the time the copies take: the host's wait inside the calls that move pageable
  // memory (staging included) when the trace has the runtime calls, else the copies' GPU time.
  if (p.pageable_copies > 0) {
    Finding f;
    f.rule = "pageable";
    f.title = str_printf("%lld copies use pageable host memory (%.2f per %s)", (long long)p.pageable_copies,
                  p.per_step(double(p.pageable_copies)), per);
    f.evidence.push_back("a pageable copy is staged through a driver buffer and is synchronous to the host");
    f.evidence.push_back(str_printf("their copies take %.1f us of GPU time per %s; the host waits %.1f us per %s "
                                    "inside their calls with no kernel to run",
                                    p.per_step(hw.pageable_copy_us), per, p.per_step(hw.pageable_us), per));
    f.fix = "use pinned buffers (cudaMallocHost or cudaHostRegister at load) for every transfer in the loop";
    f.saved_us_per_step = p.per_step(hw.pageable_us > 0 ? hw.pageable_us : hw.pageable_copy_us);
    f.why = "the driver copies pageable memory in chunks through a pinned staging buffer (a CPU memcpy, then a DMA, "
            "one after the other) and cannot return before the last chunk; from pinned memory the DMA engine reads "
            "the host buffer directly at the link's rate and the copy can be asynchronous";
    f.failure_modes = str_printf("pinning takes load time and host RAM that can no longer be swapped (pinning too "
                                 "much starves the OS); a buffer reallocated per step (a growing std::vector, a new "
                                 "tensor) must be pinned once and reused, not re-registered each step; the copies' "
                                 "own %.1f us of GPU time per %s stays unless they are also overlapped or removed",
                                 p.per_step(hw.pageable_copy_us), per);
    f.how_to_test = doctor_cmd + str_printf(": the pageable finding (%.2f copies per %s) must disappear; ",
                                            p.per_step(double(p.pageable_copies)), per) +
                    profile_cmd + ": the mean copy time must drop (pinned copies run at the full link rate); " +
                    must_fall(f.saved_us_per_step);
    hints[f.rule] = {{"pinned"},
                     engine ? "src/cuda/engine.cpp (the host buffers of the step's copies)"
                            : "the host buffers of the loop's copies (cudaMallocHost, or cudaHostRegister once at "
                              "load; PyTorch: pin_memory())",
                     "pageable copies per step and the mean copy time"};
    add(f);
  }

  // ---- compute-bound: kernels near the tensor-core flop ceiling take most of the kernel time ----
  if (trace.bf16_tflops > 0 && p.kernel_us > 0) {
    std::vector<const KernelStat*> hot;
    double hot_us = 0, floor_us = 0;
    for (const KernelStat& k : p.top_kernels) {
      if (!k.has_cost || k.pct_flops < th.compute_pct) continue;
      hot.push_back(&k);
      hot_us += k.total_us;
      floor_us += k.flops / (trace.bf16_tflops * 1e12) * 1e6;
    }
    const double share = 100.0 * hot_us / p.kernel_us;
    if (!hot.empty() && share >= th.compute_share_pct) {
      Finding f;
      f.rule = "compute-bound";
      f.title = str_printf("compute-bound: %.1f%% of kernel time in kernels at >= %.0f%% of the measured %.0f TFLOP/s bf16 "
                           "ceiling (%s at %.1f%%)",
                           share, th.compute_pct, trace.bf16_tflops, hot[0]->name.c_str(), hot[0]->pct_flops);
      for (size_t i = 0; i < hot.size() && i < 3; ++i) {
        const KernelStat& k = *hot[i];
        f.evidence.push_back(str_printf("%s: %.1f TFLOP/s = %.1f%% of the bf16 ceiling, %.1f%% of kernel time, "
                                        "%.1f flop/byte, %.1f us per %s",
                                        k.name.c_str(), k.tflops, k.pct_flops, k.pct_gpu,
                                        k.bytes > 0 ? k.flops / k.bytes : 0.0, p.per_step(k.total_us), per));
      }
      f.evidence.push_back(str_printf("at the ceiling they would take %.1f us per %s instead of %.1f",
                                      p.per_step(floor_us), per, p.per_step(hot_us)));
      f.fix = "the tensor cores are nearly saturated: do fewer flops (fp8 tensor cores, about twice the bf16 rate "
              "on Hopper; skip masked tiles of causal attention) or overlap the memory-bound kernels with them; "
              "kernel tuning has little left";
      f.saved_us_per_step = p.per_step(std::max(0.0, hot_us - floor_us));
      std::vector<std::string> hot_names;
      for (const KernelStat* k : hot) hot_names.push_back(k->name);
      f.why = str_printf("these kernels already run near the tensor cores' measured rate, so their %.1f us per %s "
                         "is mostly the flops themselves: only fewer flops (fp8 at about twice the bf16 rate, "
                         "skipping masked tiles) or overlapping other work with them shortens the step",
                         p.per_step(hot_us), per);
      f.failure_modes = "fp8 loses precision (needs per-tensor or per-row scales and an accuracy check); skipping "
                        "masked tiles pays only for causal attention over long sequences; overlap needs independent "
                        "work on another stream and can slow both kernels if they share the SMs";
      f.how_to_test = profile_cmd + ": the named kernels' us/call and the step time must fall; their %bf16 stays "
                                    "high (it measures the ceiling, not the work); " +
                      must_fall(f.saved_us_per_step) + "; " +
                      (engine ? "`fathom check -m MODEL` for accuracy" : "the program's accuracy check");
      hints[f.rule] = {{"fewer-flops"},
                       kernels_where(hot_names, engine, "the GEMM/attention library's precision and kernel choice"),
                       "the hot kernels' us/call"};
      add(f);
    }
  }

  // ---- occupancy: registers or shared memory cap the blocks per SM of a slow, large kernel ----
  if (trace.read_gbps > 0 && p.kernel_us > 0) {
    std::vector<const KernelStat*> capped;
    double saved_us = 0;
    for (const KernelStat& k : p.top_kernels) {
      const Occupancy& o = k.occupancy;
      const bool resource = o.limiter == OccupancyLimiter::REGISTERS || o.limiter == OccupancyLimiter::SHARED_MEMORY;
      if (!k.has_cost || k.bytes <= 0 || o.blocks_per_sm <= 0 || !resource) continue;
      if (k.pct_gpu < th.occupancy_kernel_pct || o.pct >= th.occupancy_pct || k.pct_bw >= th.bandwidth_pct) continue;
      if (k.count > 0 && k.bytes / double(k.count) < th.occupancy_min_call_bytes) continue;
      if (trace.bf16_tflops > 0 && k.pct_flops >= th.compute_pct) continue;
      capped.push_back(&k);
      saved_us += std::max(0.0, k.total_us - k.bytes / (trace.read_gbps * 1e9) * 1e6);
    }
    if (!capped.empty()) {
      const KernelStat& k0 = *capped[0];
      Finding f;
      f.rule = "occupancy";
      f.title = str_printf("occupancy-limited: %s holds %d blocks/SM (%.0f%% theoretical occupancy, capped by %s) "
                           "and reads at %.0f GB/s = %.1f%% of the ceiling",
                           k0.name.c_str(), k0.occupancy.blocks_per_sm, k0.occupancy.pct,
                           occupancy_limiter_name(k0.occupancy.limiter), k0.gbps, k0.pct_bw);
      for (size_t i = 0; i < capped.size() && i < 3; ++i) {
        const KernelStat& k = *capped[i];
        const Occupancy& o = k.occupancy;
        f.evidence.push_back(str_printf("%s: block %d threads, %d registers/thread, %d B shared memory -> %d blocks/SM "
                                        "(limits: warps %d, blocks %d, registers %d, smem %d), %.1f%% occupancy, "
                                        "%.2f waves; %.0f GB/s = %.1f%% of %.0f GB/s; %.1f%% of kernel time",
                                        k.name.c_str(), k.block[0] * k.block[1] * k.block[2], k.registers, k.smem,
                                        o.blocks_per_sm, o.limit_warps, o.limit_blocks, o.limit_regs, o.limit_smem,
                                        o.pct, k.waves, k.gbps, k.pct_bw, trace.read_gbps, k.pct_gpu));
      }
      f.fix = k0.occupancy.limiter == OccupancyLimiter::REGISTERS
                  ? "too few warps in flight to cover DRAM latency: cap the registers (__launch_bounds__ with a "
                    "minimum of blocks per SM, or fewer accumulators per thread) or keep more bytes in flight per "
                    "thread (wider, independent loads) so fewer warps suffice"
                  : "too few warps in flight to cover DRAM latency: shrink the shared-memory tile or pipeline "
                    "stages per block, or keep more bytes in flight per thread (wider, independent loads)";
      f.saved_us_per_step = p.per_step(saved_us);
      const bool regs = k0.occupancy.limiter == OccupancyLimiter::REGISTERS;
      f.why = str_printf("a memory-bound kernel needs bytes in flight = bandwidth x DRAM latency; with %d blocks/SM "
                         "(%.0f%% occupancy) too few warps issue loads, so %s reads at %.0f GB/s instead of %.0f; "
                         "freeing the %s that caps the blocks, or more independent loads per warp, puts more bytes "
                         "in flight",
                         k0.occupancy.blocks_per_sm, k0.occupancy.pct, short_kernel(k0.name).c_str(), k0.gbps,
                         trace.read_gbps, regs ? "registers" : "shared memory");
      f.failure_modes = regs ? "capping registers (__launch_bounds__ with a minimum of blocks, -maxrregcount) can "
                               "spill to local memory, whose traffic can cost more than the occupancy gained; more "
                               "warps do not help when the grid has too few blocks (waves < 1) or the kernel waits "
                               "on its own reduction"
                             : "a smaller tile or fewer pipeline stages means more passes and less reuse per load; "
                               "more warps do not help when the grid has too few blocks (waves < 1) or the kernel "
                               "waits on its own reduction";
      f.how_to_test = profile_cmd + str_printf(": in the kernel efficiency table %s's blk/SM and occ%% must rise from "
                                               "%d and %.0f%%, its %%read from %.1f%%; ",
                                               short_kernel(k0.name).c_str(), k0.occupancy.blocks_per_sm,
                                               k0.occupancy.pct, k0.pct_bw) +
                      (regs ? "compile with -Xptxas -v and check 0 bytes of spill stores; " : "") +
                      must_fall(f.saved_us_per_step) + "; " +
                      (engine ? "`ctest -L gpu` (the kernel against its CPU reference)" : "the program's outputs");
      hints[f.rule] = {{"occupancy:" + k0.name},
                       kernels_where({k0.name}, engine, "its launch bounds, register cap or tile size in the library "
                                                        "that provides it"),
                       "blk/SM, occ% and %read of " + short_kernel(k0.name)};
      add(f);
    }
  }

  // ---- layout / algorithm: reformat kernels and unfused softmax (bytes moved for little work) ----
  if (p.kernel_us > 0) {
    double reformat_us = 0, softmax_us = 0, moved_bytes = 0;
    std::vector<const KernelStat*> ks;
    for (const KernelStat& k : p.top_kernels) {
      const bool reformat = is_reformat_kernel(k), softmax = is_unfused_softmax(k);
      if (!reformat && !softmax) continue;
      (reformat ? reformat_us : softmax_us) += k.total_us;
      if (k.has_cost) moved_bytes += k.bytes;
      ks.push_back(&k);
    }
    const double share = 100.0 * (reformat_us + softmax_us) / p.kernel_us;
    if (share > th.layout_pct) {
      Finding f;
      f.rule = "layout";
      f.title = str_printf("layout/algorithm-limited: %.1f%% of kernel time moves data for little work "
                           "(%.1f us per %s in reformat/transpose kernels, %.1f us in unfused softmax)",
                           share, p.per_step(reformat_us), per, p.per_step(softmax_us));
      for (size_t i = 0; i < ks.size() && i < 4; ++i) {
        const KernelStat& k = *ks[i];
        std::string e = str_printf("%s (%s): %.1f%% of kernel time, %.1f calls and %.1f us per %s", k.name.c_str(),
                                   is_unfused_softmax(k) ? "softmax over a materialized score matrix" : "reformat",
                                   k.pct_gpu, p.per_step(double(k.count)), p.per_step(k.total_us), per);
        if (k.has_cost)
          e += str_printf(", %s per %s at %.2f flop/byte", bytes_str(p.per_step(k.bytes)).c_str(), per,
                          k.bytes > 0 ? k.flops / k.bytes : 0.0);
        f.evidence.push_back(e);
      }
      if (moved_bytes > 0 && trace.weight_bytes > 0)
        f.evidence.push_back(str_printf("they move %s per %s, %.1f%% of the weight bytes", bytes_str(p.per_step(moved_bytes)).c_str(),
                                        per, 100.0 * p.per_step(moved_bytes) / trace.weight_bytes));
      f.fix = softmax_us > reformat_us
                  ? "fuse attention (FlashAttention-style: scores stay in registers/shared memory, no score matrix "
                    "in DRAM); the softmax kernel and the score matrix's write and read disappear"
                  : "store tensors in the layout their consumer reads (pre-transposed weights, K/V written in the "
                    "attention kernel's layout) or fuse the reformat into the producer's epilogue";
      f.saved_us_per_step = p.per_step(reformat_us + softmax_us);
      std::vector<std::string> layout_names;
      for (const KernelStat* k : ks) layout_names.push_back(k->name);
      f.why = softmax_us > reformat_us
                  ? "an unfused softmax writes the score matrix to DRAM and reads it back twice (softmax, then the "
                    "second matmul); fused attention computes the softmax online in registers and shared memory, "
                    "so that traffic and the kernel disappear"
                  : str_printf("the reformat kernels read and write their bytes again (%.1f us per %s) for no "
                               "arithmetic; storing tensors in the layout their consumer reads, or writing that "
                               "layout from the producer's epilogue, removes the round trip",
                               p.per_step(reformat_us), per);
      f.failure_modes = softmax_us > reformat_us
                            ? "fused attention kernels cover a set of head dims, masks and dtypes: the others fall "
                              "back; the online softmax reorders the arithmetic, so results differ within a "
                              "tolerance, not bitwise"
                            : "a pre-transposed weight layout must be produced at load for every consumer (and by "
                              "the quantizer); fusing a reformat into an epilogue lengthens the producer and can "
                              "cost it occupancy; a reformat that feeds a library call (cuBLAS wants a layout) may "
                              "be the cheaper option";
      f.how_to_test = profile_cmd + str_printf(": the reformat/softmax kernels must leave the top kernels, or fall "
                                               "below %.0f%% of kernel time (now %.1f%%); ",
                                               th.layout_pct, share) +
                      must_fall(f.saved_us_per_step) + "; " +
                      (engine ? "`fathom check -m MODEL` for the tokens" : "the program's outputs within tolerance");
      hints[f.rule] = {{softmax_us > reformat_us ? "fused-attention" : "layout"},
                       kernels_where(layout_names, engine,
                                     softmax_us > reformat_us
                                         ? "the framework's attention (PyTorch: F.scaled_dot_product_attention, a "
                                           "FlashAttention backend)"
                                         : "the framework op that produces it (PyTorch: .contiguous(), .transpose(), "
                                           "torch.cat, .to(dtype) in the step; torch.compile fuses many)"),
                       "the reformat and softmax kernels' share of kernel time"};
      add(f);
    }
  }

  // ---- where kernel work should start ----
  if (!p.top_kernels.empty()) {
    const KernelStat& k = p.top_kernels[0];
    Finding f;
    f.rule = "top-kernel";
    f.title = str_printf("largest kernel: %s, %.1f%% of %s kernel time (%.1f calls/%s, mean %.2f us)", k.name.c_str(),
                  k.pct_gpu, decode ? "decode" : "profiled", p.per_step(double(k.count)), per, k.mean_us);
    for (size_t i = 1; i < p.top_kernels.size() && i < 3; ++i)
      f.evidence.push_back(str_printf("next: %s, %.1f%%", p.top_kernels[i].name.c_str(), p.top_kernels[i].pct_gpu));
    f.evidence.push_back(str_printf("grid %dx%dx%d, block %dx%dx%d, %d registers, %d B shared memory", k.grid[0], k.grid[1],
                             k.grid[2], k.block[0], k.block[1], k.block[2], k.registers, k.smem));
    if (k.occupancy.blocks_per_sm > 0)
      f.evidence.push_back(str_printf("theoretical occupancy %.1f%% (%d blocks/SM, limited by %s), %.2f waves",
                                      k.occupancy.pct, k.occupancy.blocks_per_sm,
                                      occupancy_limiter_name(k.occupancy.limiter), k.waves));
    if (k.has_cost)
      f.evidence.push_back(str_printf("achieved %.0f GB/s (%.1f%% of the read ceiling), %.2f TFLOP/s (%.1f%% of bf16)",
                                      k.gbps, k.pct_bw, k.tflops, k.pct_flops));
    f.fix = k.pct_gpu > th.top_kernel_pct
                ? "optimise this kernel first: measure its GB/s or TFLOP/s against the ceilings (fathom bench, ncu)"
                : "kernel time is spread over many kernels: fusion pays more than tuning one";
    f.why = k.pct_gpu > th.top_kernel_pct
                ? str_printf("%s takes %.1f%% of the kernel time, so a speedup of it shortens the kernel time by "
                             "that share (Amdahl): the place where kernel work pays first",
                             short_kernel(k.name).c_str(), k.pct_gpu)
                : str_printf("the largest kernel takes only %.1f%% of kernel time, so tuning it gives at most that; "
                             "fusing neighbours removes a launch and a DRAM round trip per fused pair",
                             k.pct_gpu);
    f.failure_modes = "a kernel already at its ceiling (its GB/s or TFLOP/s against the measured ones) has little "
                      "left; a micro-benchmark speedup can vanish in the model when the shapes there are smaller "
                      "(fewer waves) or the benchmark runs with a warm L2 (flush it between repetitions)";
    f.how_to_test = profile_cmd + str_printf(": %s's mean us/call (now %.2f) and share of kernel time must fall; ",
                                             short_kernel(k.name).c_str(), k.mean_us) +
                    (engine ? "`fathom bench -m MODEL --baseline before.json` must not regress; `ctest -L gpu` for "
                              "the kernel's correctness"
                            : "ncu on the kernel for the limiting unit");
    hints[f.rule] = {{"kernel:" + k.name},
                     kernels_where({k.name}, engine, "the library or framework op that launches it"),
                     "the top kernel's us/call"};
    add(f);
  }

  if (trace.dropped_records > 0) {
    Finding f;
    f.rule = "incomplete";
    f.title = str_printf("CUPTI dropped %llu records: counts are low", (unsigned long long)trace.dropped_records);
    f.fix = "profile fewer steps (-n)";
    f.why = "CUPTI's activity buffers filled faster than they were drained, so kernels, copies and syncs are "
            "missing: every per-step count above is low";
    f.failure_modes = "fewer steps can miss an event that recurs every N steps (a KV cache growth, a periodic "
                      "log flush); the first steps are warm-up and must not be the only ones profiled";
    f.how_to_test = profile_cmd + " with a smaller -n: the CUPTI dropped-records warning must be gone";
    r.findings.push_back(f);
  }

  std::stable_sort(r.findings.begin(), r.findings.end(), [](const Finding& x, const Finding& y) {
    if (x.saved_us_per_step != y.saved_us_per_step) return x.saved_us_per_step > y.saved_us_per_step;
    return int(x.severity) > int(y.severity);
  });
  finish_report(r, hints, engine, step);
  return r;
}

}  // namespace

std::string format_doctor(const DoctorReport& r) {
  std::string s;
  const bool inferred = r.steps_from == "readbacks";
  const bool decode = r.scope == "decode" && !inferred;  // token steps the program marked itself
  if (decode)
    s += str_printf("fathom doctor: decode phase, %.1f us per token\n", r.step_us);
  else if (inferred)
    s += str_printf("fathom doctor: decode-like loop, %.1f us per step (median of %lld steps, each ending at a "
                    "device-to-host readback: the trace has no step markers)\n",
                    r.step_us, (long long)r.n_steps);
  else if (r.steps_from == "window")
    s += str_printf("fathom doctor: steady window of %.2f ms (the longest run of GPU work without a gap over "
                    "%.0f us: the trace has no step markers nor per-step readbacks)\n",
                    r.step_us / 1e3, kLongGapUs);
  else
    s += str_printf("fathom doctor: %s (%s), %.2f ms\n", r.scope == "all" ? "whole run" : r.scope.c_str(),
             r.scope == "all" ? "no token-step markers" : "no decode phase", r.step_us / 1e3);
  const Finding* first = nullptr;
  for (const Finding& f : r.findings)
    if (f.saved_us_per_step > 0) {
      first = &f;
      break;
    }
  if (first)
    s += "verdict: " + first->title + "\n  -> " + first->fix + "\n";
  else
    s += "verdict: no waste above the thresholds found\n";
  s += "\n## Findings\n";
  int i = 0;
  for (const Finding& f : r.findings) {
    s += str_printf("\n%d. [%s] %s\n", ++i, severity_name(f.severity), f.title.c_str());
    for (const std::string& e : f.evidence) s += "     evidence: " + e + "\n";
    if (!f.fix.empty()) s += "     fix: " + f.fix + "\n";
    if (!f.why.empty()) s += "     why: " + f.why + "\n";
    if (!f.failure_modes.empty()) s += "     failure modes: " + f.failure_modes + "\n";
    if (!f.how_to_test.empty()) s += "     test: " + f.how_to_test + "\n";
    if (f.saved_us_per_step > 0)
      s += str_printf("     saves: up to %.1f us per %s (%.1f%%; impact %s)\n", f.saved_us_per_step,
                      decode ? "token" : "step", r.step_us > 0 ? 100.0 * f.saved_us_per_step / r.step_us : 0,
                      severity_name(f.severity));
  }
  s += "\n## Patch plan\n\n";
  if (r.patch_plan.empty()) s += "no change indicated: no finding claims a saving\n";
  i = 0;
  for (const PatchStep& p : r.patch_plan) {
    s += str_printf("%d. %s\n", ++i, p.change.c_str());
    s += "   where: " + p.where + "\n";
    s += "   expected: " + p.expected + "\n";
  }
  s += "\n## Verification checklist\n\n";
  for (const std::string& c : r.checklist) s += "- [ ] " + c + "\n";
  return s;
}

std::string doctor_to_json(const DoctorReport& r, int indent) {
  nlohmann::json j;
  j["scope"] = r.scope;
  j["steps_from"] = r.steps_from;
  j["n_steps"] = r.n_steps;
  j["step_us"] = r.step_us;
  j["findings"] = nlohmann::json::array();
  for (const Finding& f : r.findings)
    j["findings"].push_back({{"rule", f.rule}, {"severity", severity_name(f.severity)}, {"title", f.title},
                             {"evidence", f.evidence}, {"fix", f.fix}, {"why", f.why},
                             {"failure_modes", f.failure_modes}, {"how_to_test", f.how_to_test},
                             {"saved_us_per_step", f.saved_us_per_step}});
  j["patch_plan"] = nlohmann::json::array();
  for (const PatchStep& p : r.patch_plan)
    j["patch_plan"].push_back({{"rules", p.rules}, {"change", p.change}, {"where", p.where},
                               {"saved_us_per_step", p.saved_us_per_step}, {"expected", p.expected}});
  j["checklist"] = r.checklist;
  return j.dump(indent);
}

}  // namespace fathom
