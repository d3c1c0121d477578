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
// concatenations), by name: the "layout" rule's reformats. An embedding gather is a real op.
bool is_reformat_kernel(const KernelStat& k) {
  std::string n = k.name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (n.find("embedding") != std::string::npos || n.find("get_rows") != std::string::npos) return false;
  for (const char* key : {"transpose", "permute", "contiguous", "copy", "cpy", "convert", "cat_array", "catarray",
                          "concat", "reformat", "layout"})
    if (n.find(key) != std::string::npos) return true;
  return false;
}

// A softmax that is its own kernel: the scores went to memory between the two matmuls.
bool is_unfused_softmax(const KernelStat& k) {
  std::string n = k.name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  const bool softmax = n.find("softmax") != std::string::npos || n.find("soft_max") != std::string::npos;
  const bool fused = n.find("flash") != std::string::npos || n.find("fmha") != std::string::npos ||
                     n.find("attention") != std::string::npos || n.find("attn") != std::string::npos;
  return softmax && !fused;
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

// The window analyze() uses: as recorded, else the span of the events (end exclusive).
Span trace_window(const Trace& t) {
  uint64_t lo = UINT64_MAX, hi = 0;
  auto see = [&](uint64_t s, uint64_t e) {
    lo = std::min(lo, s);
    hi = std::max(hi, e);
  };
  for (const auto& k : t.kernels) see(k.start_ns, k.end_ns);
  for (const auto& m : t.memcpys) see(m.start_ns, m.end_ns);
  for (const auto& m : t.memsets) see(m.start_ns, m.end_ns);
  for (const auto& s : t.syncs) see(s.start_ns, s.end_ns);
  for (const auto& a : t.api) see(a.start_ns, a.end_ns);
  for (const auto& s : t.steps) see(s.t_ns, s.t_ns);
  for (const auto& r : t.ranges) see(r.start_ns, r.end_ns);
  const uint64_t begin = t.begin_ns ? t.begin_ns : (lo == UINT64_MAX ? 0 : lo);
  return {begin, std::max(t.end_ns, hi == 0 ? begin : hi + 1)};
}

// The steps of `phase` as analyze() cuts them: each from its mark to the next (the whole window
// for "all").
std::vector<Span> phase_steps(const Trace& t, const std::string& phase) {
  const Span w = trace_window(t);
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

  if (p.kernels == 0) {
    Finding f;
    f.rule = "no-kernels";
    f.title = str_printf("no kernels recorded in the %s", scope_name.c_str());
    f.evidence.push_back(str_printf("%lld steps, %.1f us of wall time", (long long)p.n_steps, p.wall_us));
    f.fix = "check that the program used the GPU while profiled (or that CUPTI could attach)";
    r.findings.push_back(f);
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
    for (const KernelStat& k : p.top_kernels) {
      if (!is_matmul_kernel(k.name)) continue;
      matmul_us += k.total_us;
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
    add(f);
  }

  if (trace.dropped_records > 0) {
    Finding f;
    f.rule = "incomplete";
    f.title = str_printf("CUPTI dropped %llu records: counts are low", (unsigned long long)trace.dropped_records);
    f.fix = "profile fewer steps (-n)";
    r.findings.push_back(f);
  }

  std::stable_sort(r.findings.begin(), r.findings.end(), [](const Finding& x, const Finding& y) {
    if (x.saved_us_per_step != y.saved_us_per_step) return x.saved_us_per_step > y.saved_us_per_step;
    return int(x.severity) > int(y.severity);
  });
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
  int i = 0;
  for (const Finding& f : r.findings) {
    s += str_printf("\n%d. [%s] %s\n", ++i, severity_name(f.severity), f.title.c_str());
    for (const std::string& e : f.evidence) s += "     evidence: " + e + "\n";
    if (!f.fix.empty()) s += "     fix: " + f.fix + "\n";
    if (f.saved_us_per_step > 0)
      s += str_printf("     saves: up to %.1f us per %s (%.1f%%)\n", f.saved_us_per_step, decode ? "token" : "step",
               r.step_us > 0 ? 100.0 * f.saved_us_per_step / r.step_us : 0);
  }
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
                             {"evidence", f.evidence}, {"fix", f.fix}, {"saved_us_per_step", f.saved_us_per_step}});
  return j.dump(indent);
}

}  // namespace fathom
