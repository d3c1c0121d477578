// fathom doctor's rules on synthetic decode traces: each test builds the waste one rule looks for,
// with numbers chosen so the expected evidence can be worked out by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fathom/doctor.h"
#include "fathom/error.h"
#include "fathom/profiler.h"

namespace fathom {
namespace {

// One decode step, repeated. Times in ns. Layout of a step starting at T:
//   [T, T+lead)             host: API calls; H2D copies of 100 ns each from T+10
//   kernels                 `kernels` x kernel_ns on stream 1, gap_ns apart, from T+lead
//   after the last kernel   D2H copies of 100 ns each, then the host sync (covers them)
//   [.., +tail)             host turn; the next step starts
struct StepSpec {
  int kernels = 100;
  uint64_t kernel_ns = 5000;
  uint64_t gap_ns = 0;
  uint64_t lead_ns = 1000;
  uint64_t tail_ns = 1000;
  int syncs = 1;
  int h2d = 1;
  int d2h = 1;
  int allocs = 0;             // cudaMalloc calls of 20 us each, in the lead
  bool graph = true;          // one cudaGraphLaunch; else one cudaLaunchKernel per kernel
  bool pageable = false;
  // Kernel k of a step is names[k % names.size()], launched as grid x block with these resources.
  std::vector<std::string> names = {"void gemv_q4k_kernel(GemvParams)", "void rms_norm_kernel<float>(NormParams)"};
  int grid = 1, block = 1, registers = 0, smem = 0;
};

constexpr uint64_t kAllocNs = 20000;

Trace decode_trace(const StepSpec& s, int n_steps = 8) {
  Trace t;
  t.source = "engine";
  uint64_t now = 1000000;
  t.begin_ns = now;
  // A prefill step, so the decode phase is picked as the scope.
  t.steps.push_back({now, "prefill"});
  KernelEvent pk;
  pk.name = "prefill_gemm_kernel";
  pk.start_ns = now + 1000;
  pk.end_ns = now + 100000;
  t.kernels.push_back(pk);
  now += 200000;
  for (int step = 0; step < n_steps; ++step) {
    t.steps.push_back({now, "decode"});
    uint64_t host = now + 10;
    for (int i = 0; i < s.h2d; ++i) {
      t.memcpys.push_back(MemcpyEvent{CopyKind::H2D, 16, host, host + 100, 1, s.pageable});
      host += 100;
    }
    uint64_t lead = s.lead_ns;
    for (int i = 0; i < s.allocs; ++i) {
      t.api.push_back({"cudaMalloc", now + lead, now + lead + kAllocNs});
      lead += kAllocNs;
    }
    if (s.graph) t.api.push_back({"cudaGraphLaunch", now + lead - 5, now + lead - 1});
    uint64_t cur = now + lead;
    for (int k = 0; k < s.kernels; ++k) {
      if (!s.graph) t.api.push_back({"cudaLaunchKernel", cur - 5, cur - 1});
      KernelEvent e;
      e.name = s.names[size_t(k) % s.names.size()];
      e.grid[0] = s.grid;
      e.block[0] = s.block;
      e.registers = s.registers;
      e.dynamic_smem = s.smem;
      e.start_ns = cur;
      e.end_ns = cur + s.kernel_ns;
      e.stream = 1;
      t.kernels.push_back(e);
      cur = e.end_ns + (k + 1 < s.kernels ? s.gap_ns : 0);
    }
    for (int i = 0; i < s.d2h; ++i) {
      t.memcpys.push_back(MemcpyEvent{CopyKind::D2H, 4, cur, cur + 100, 1, s.pageable});
      cur += 100;
    }
    for (int i = 0; i < s.syncs; ++i) t.syncs.push_back(SyncEvent{SyncKind::STREAM, now + lead, cur, 1});
    now = cur + s.tail_ns;
  }
  t.end_ns = now;
  return t;
}

DoctorReport run(const Trace& t, const DoctorThresholds& th = {}) { return diagnose(t, analyze(t), th); }

const Finding* find(const DoctorReport& r, const std::string& rule) {
  for (const Finding& f : r.findings)
    if (f.rule == rule) return &f;
  return nullptr;
}

std::string dump(const DoctorReport& r) { return format_doctor(r); }

// Every finding explains itself; the plan starts with the top saving finding and states its
// estimate; the checklist has a bench baseline guard and a correctness check; the JSON carries it all.
void expect_actionable(const DoctorReport& r) {
  ASSERT_FALSE(r.findings.empty());
  for (const Finding& f : r.findings) {
    EXPECT_FALSE(f.why.empty()) << f.rule;
    EXPECT_FALSE(f.failure_modes.empty()) << f.rule;
    EXPECT_FALSE(f.how_to_test.empty()) << f.rule;
  }
  const Finding* top = nullptr;
  for (const Finding& f : r.findings)
    if (f.saved_us_per_step > 0) {
      top = &f;
      break;
    }
  if (top) {
    ASSERT_FALSE(r.patch_plan.empty()) << dump(r);
    const PatchStep& first = r.patch_plan.front();
    ASSERT_FALSE(first.rules.empty());
    EXPECT_EQ(first.rules[0], top->rule) << dump(r);
    EXPECT_EQ(first.change, top->fix);
    EXPECT_FALSE(first.where.empty());
    EXPECT_DOUBLE_EQ(first.saved_us_per_step, top->saved_us_per_step);
    const std::string saving = str_printf("%.1f us", top->saved_us_per_step);
    EXPECT_NE(first.expected.find(saving), std::string::npos) << first.expected;
    for (size_t i = 1; i < r.patch_plan.size(); ++i)
      EXPECT_LE(r.patch_plan[i].saved_us_per_step, r.patch_plan[i - 1].saved_us_per_step);
  } else {
    EXPECT_TRUE(r.patch_plan.empty()) << dump(r);
  }
  auto checklist_has = [&](const std::string& a, const std::string& b) {
    return std::any_of(r.checklist.begin(), r.checklist.end(), [&](const std::string& c) {
      return c.find(a) != std::string::npos && c.find(b) != std::string::npos;
    });
  };
  EXPECT_TRUE(checklist_has("fathom bench", "--baseline before.json")) << dump(r);
  EXPECT_TRUE(checklist_has("correctness", "fathom check")) << dump(r);
  EXPECT_TRUE(checklist_has("fathom doctor", "again")) << dump(r);

  const std::string md = dump(r);
  EXPECT_NE(md.find("     why: "), std::string::npos);
  EXPECT_NE(md.find("     failure modes: "), std::string::npos);
  EXPECT_NE(md.find("     test: "), std::string::npos);
  EXPECT_NE(md.find("\n## Patch plan\n"), std::string::npos);
  EXPECT_NE(md.find("\n## Verification checklist\n"), std::string::npos);

  const nlohmann::json j = nlohmann::json::parse(doctor_to_json(r));
  ASSERT_EQ(j["findings"].size(), r.findings.size());
  for (size_t i = 0; i < r.findings.size(); ++i) {
    EXPECT_EQ(j["findings"][i]["why"], r.findings[i].why);
    EXPECT_EQ(j["findings"][i]["failure_modes"], r.findings[i].failure_modes);
    EXPECT_EQ(j["findings"][i]["how_to_test"], r.findings[i].how_to_test);
  }
  ASSERT_TRUE(j["patch_plan"].is_array());
  ASSERT_EQ(j["patch_plan"].size(), r.patch_plan.size());
  if (!r.patch_plan.empty()) {
    EXPECT_EQ(j["patch_plan"][0]["rules"][0], r.patch_plan[0].rules[0]);
    EXPECT_EQ(j["patch_plan"][0]["where"], r.patch_plan[0].where);
    EXPECT_EQ(j["patch_plan"][0]["expected"], r.patch_plan[0].expected);
  }
  ASSERT_TRUE(j["checklist"].is_array());
  EXPECT_EQ(j["checklist"].size(), r.checklist.size());
}

TEST(Doctor, HealthyDecodeHasNoWaste) {
  const DoctorReport r = run(decode_trace(StepSpec{}));
  EXPECT_EQ(r.scope, "decode");
  // 1 us lead + 100 x 5 us + 0.1 us D2H + 1 us tail.
  EXPECT_NEAR(r.step_us, 502.1, 1e-6);
  for (const Finding& f : r.findings) EXPECT_EQ(f.saved_us_per_step, 0) << dump(r);
  EXPECT_EQ(find(r, "launch-bound"), nullptr) << dump(r);
  EXPECT_EQ(find(r, "host-syncs"), nullptr) << dump(r);
  EXPECT_EQ(find(r, "allocations"), nullptr) << dump(r);
  EXPECT_EQ(find(r, "copies"), nullptr) << dump(r);
  const Finding* top = find(r, "top-kernel");
  ASSERT_NE(top, nullptr) << dump(r);
  EXPECT_EQ(top->severity, Severity::INFO);
  EXPECT_NE(dump(r).find("verdict: no waste"), std::string::npos) << dump(r);
}

TEST(Doctor, LaunchBoundWithoutGraphs) {
  StepSpec s;
  s.kernel_ns = 2000;
  s.gap_ns = 3000;
  s.graph = false;
  const DoctorReport r = run(decode_trace(s));
  // Step: 1 + 100 x 2 + 99 x 3 + 0.1 + 1 = 499.1 us, of which 297 us idle between kernels and
  // 0.89 us between the H2D copy and the first kernel.
  ASSERT_FALSE(r.findings.empty());
  const Finding& f = r.findings.front();
  EXPECT_EQ(f.rule, "launch-bound") << dump(r);
  EXPECT_EQ(f.severity, Severity::HIGH);
  EXPECT_NEAR(f.saved_us_per_step, 297.89, 1e-6);
  EXPECT_NE(f.title.find("59.7%"), std::string::npos) << f.title;
  EXPECT_NE(f.title.find("100 kernels/token"), std::string::npos) << f.title;
  EXPECT_NE(f.title.find("median gap 3.0 us"), std::string::npos) << f.title;
  EXPECT_NE(f.fix.find("CUDA graph"), std::string::npos) << f.fix;
  EXPECT_NE(dump(r).find("verdict: launch-bound"), std::string::npos) << dump(r);
}

TEST(Doctor, LaunchBoundWithGraphsSuggestsFusion) {
  StepSpec s;
  s.kernel_ns = 2000;
  s.gap_ns = 1500;
  const DoctorReport r = run(decode_trace(s));
  const Finding* f = find(r, "launch-bound");
  ASSERT_NE(f, nullptr) << dump(r);
  EXPECT_NE(f->fix.find("fuse"), std::string::npos) << f->fix;
  EXPECT_EQ(f->fix.find("capture the decode step"), std::string::npos) << f->fix;
}

TEST(Doctor, SmallGapsAreNotLaunchBound) {
  StepSpec s;
  s.gap_ns = 200;  // 19.8 + 0.89 us of 521.9: 4.0% < 10%
  const DoctorReport r = run(decode_trace(s));
  EXPECT_EQ(find(r, "launch-bound"), nullptr) << dump(r);
  DoctorThresholds th;
  th.idle_pct = 3;
  EXPECT_NE(find(run(decode_trace(s), th), "launch-bound"), nullptr);
}

TEST(Doctor, HostOverheadBetweenSteps) {
  StepSpec s;
  s.tail_ns = 200000;  // 200 us of host work per token after the sync
  const DoctorReport r = run(decode_trace(s));
  const Finding* f = find(r, "host-overhead");
  ASSERT_NE(f, nullptr) << dump(r);
  // Outside the busy intervals and the gaps: the 200 us tail and 0.01 us of the lead (1 us minus
  // 0.1 us of H2D copy and the 0.89 us gap from it to the first kernel).
  EXPECT_NEAR(f->saved_us_per_step, 200.01, 1e-6);
  EXPECT_EQ(r.findings.front().rule, "host-overhead") << dump(r);
  expect_actionable(r);
}

TEST(Doctor, ExtraHostSyncs) {
  StepSpec s;
  s.syncs = 3;
  const DoctorReport r = run(decode_trace(s));
  const Finding* f = find(r, "host-syncs");
  ASSERT_NE(f, nullptr) << dump(r);
  EXPECT_NE(f->title.find("3.00 (expected 1)"), std::string::npos) << f->title;
  EXPECT_NEAR(f->saved_us_per_step, 2 * DoctorThresholds{}.sync_cost_us, 1e-9);
  EXPECT_EQ(f->severity, Severity::MEDIUM);  // 20 us of 502 = 4%
}

TEST(Doctor, AllocationsInTheDecodeLoop) {
  StepSpec s;
  s.allocs = 2;
  const DoctorReport r = run(decode_trace(s));
  const Finding* f = find(r, "allocations");
  ASSERT_NE(f, nullptr) << dump(r);
  EXPECT_NE(f->title.find("2.00 per token (expected 0)"), std::string::npos) << f->title;
  EXPECT_NEAR(f->saved_us_per_step, 40.0, 1e-9);
  EXPECT_NE(f->fix.find("allocate at load"), std::string::npos);
}

TEST(Doctor, ACheapAllocationIsStillReported) {
  StepSpec s;
  s.allocs = 1;
  Trace t = decode_trace(s);
  for (ApiEvent& a : t.api)
    if (a.name == "cudaMalloc") a.end_ns = a.start_ns + 1;  // 1 ns: no measurable saving
  const DoctorReport r = run(t);
  const Finding* f = find(r, "allocations");
  ASSERT_NE(f, nullptr);
  EXPECT_GE(int(f->severity), int(Severity::LOW));
}

TEST(Doctor, CopiesBeyondTokenIds) {
  StepSpec s;
  s.h2d = 4;
  s.d2h = 2;
  const DoctorReport r = run(decode_trace(s));
  const Finding* f = find(r, "copies");
  ASSERT_NE(f, nullptr) << dump(r);
  // Expected at most 2 H2D and 1 D2H: 2 + 1 extra.
  EXPECT_NE(f->title.find("3.00 extra"), std::string::npos) << f->title;
  EXPECT_GT(f->saved_us_per_step, 0);
  EXPECT_EQ(find(run(decode_trace(StepSpec{})), "copies"), nullptr);
}

TEST(Doctor, PageableTransfers) {
  StepSpec s;
  s.pageable = true;
  const DoctorReport r = run(decode_trace(s));
  const Finding* f = find(r, "pageable");
  ASSERT_NE(f, nullptr);
  EXPECT_NE(f->title.find("16 copies"), std::string::npos) << f->title;  // (1 H2D + 1 D2H) x 8 steps
  EXPECT_NE(f->fix.find("pinned"), std::string::npos);
}

TEST(Doctor, BandwidthOfTheMatmulKernels) {
  // Half the kernels are gemv: 50 x 5 us = 250 us per token reading the weights.
  Trace t = decode_trace(StepSpec{});
  t.weight_bytes = 0.5e9;  // at 4000 GB/s: at least 125 us
  t.read_gbps = 4000;
  const DoctorReport r = run(t);
  const Finding* f = find(r, "bandwidth");
  ASSERT_NE(f, nullptr) << dump(r);
  EXPECT_NE(f->title.find("memory-bound matmul kernels at 2000 GB/s = 50.0%"), std::string::npos) << f->title;
  EXPECT_NEAR(f->saved_us_per_step, 250.0 - 125.0, 1e-6);
  EXPECT_EQ(f->severity, Severity::HIGH);
  EXPECT_EQ(r.findings.front().rule, "bandwidth");

  t.weight_bytes = 0.9e9;  // 225 us of 250: 90%, near the limit
  const DoctorReport r2 = run(t);
  const Finding* g = find(r2, "bandwidth");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->saved_us_per_step, 0);
  EXPECT_NE(g->title.find("near the limit"), std::string::npos) << g->title;

  t.read_gbps = 0;  // no ceiling in the trace: no bandwidth claim
  EXPECT_EQ(find(run(t), "bandwidth"), nullptr);
  expect_actionable(r);
}

TEST(Doctor, BandwidthFromBusyTimeWithoutMatmulKernels) {
  Trace t = decode_trace(StepSpec{});
  for (KernelEvent& k : t.kernels) k.name = "fused_layer_kernel";
  t.weight_bytes = 1e9;  // 1 GB over 500.2 us of GPU busy time = 1999 GB/s
  t.read_gbps = 4000;
  const DoctorReport r = run(t);
  const Finding* f = find(r, "bandwidth");
  ASSERT_NE(f, nullptr) << dump(r);
  EXPECT_NE(f->title.find("memory-bound decode kernels at 1999 GB/s = 50.0%"), std::string::npos) << f->title;
  EXPECT_NEAR(f->saved_us_per_step, 500.2 - 250.0, 1e-6);
}

TEST(Doctor, FindingsAreRankedByTimeSaved) {
  StepSpec s;
  s.kernel_ns = 2000;
  s.gap_ns = 3000;   // 297 us
  s.allocs = 2;      // 40 us
  s.syncs = 3;       // 20 us
  const DoctorReport r = run(decode_trace(s));
  ASSERT_GE(r.findings.size(), 3u) << dump(r);
  for (size_t i = 1; i < r.findings.size(); ++i)
    EXPECT_GE(r.findings[i - 1].saved_us_per_step, r.findings[i].saved_us_per_step) << dump(r);
  EXPECT_EQ(r.findings[0].rule, "launch-bound");
  EXPECT_EQ(r.findings[1].rule, "allocations");
  EXPECT_EQ(r.findings[2].rule, "host-syncs");
  expect_actionable(r);
}

// Every event that starts at or after `from` moves `by` ns later (the host doing something else).
void shift_after(Trace& t, uint64_t from, uint64_t by) {
  auto move = [&](uint64_t& s, uint64_t& e) {
    if (s >= from) s += by, e += by;
  };
  for (KernelEvent& k : t.kernels) move(k.start_ns, k.end_ns);
  for (MemcpyEvent& m : t.memcpys) move(m.start_ns, m.end_ns);
  for (SyncEvent& y : t.syncs) move(y.start_ns, y.end_ns);
  for (ApiEvent& a : t.api) move(a.start_ns, a.end_ns);
  t.end_ns += by;
}

// Ends of the trace's device-to-host copies, in order.
std::vector<uint64_t> readback_ends(const Trace& t) {
  std::vector<uint64_t> e;
  for (const MemcpyEvent& m : t.memcpys)
    if (m.kind == CopyKind::D2H) e.push_back(m.end_ns);
  std::sort(e.begin(), e.end());
  return e;
}

TEST(Doctor, TraceWithoutMarkersInfersStepsFromReadbacks) {
  StepSpec s;
  s.kernel_ns = 2000;
  s.gap_ns = 3000;
  s.syncs = 3;
  s.graph = false;
  Trace t = decode_trace(s);
  t.steps.clear();
  const DoctorReport r = run(t);
  // 8 readbacks cut 7 steps; the prefill and the first step's launches come before the first.
  EXPECT_EQ(r.scope, "decode");
  EXPECT_EQ(r.steps_from, "readbacks");
  EXPECT_EQ(r.n_steps, 7);
  EXPECT_NEAR(r.step_us, 499.1, 1e-6);  // as with the markers: readback to readback is one period
  const Finding* syncs = find(r, "host-syncs");
  ASSERT_NE(syncs, nullptr) << dump(r);
  EXPECT_NE(syncs->title.find("host syncs per step: 3.00 (expected 1)"), std::string::npos) << syncs->title;
  const Finding* launch = find(r, "launch-bound");
  ASSERT_NE(launch, nullptr) << dump(r);
  EXPECT_NEAR(launch->saved_us_per_step, 297.89, 1e-6);  // as with the markers (LaunchBoundWithoutGraphs)
  EXPECT_NE(dump(r).find("decode-like loop, 499.1 us per step (median of 7 steps"), std::string::npos) << dump(r);
  EXPECT_NE(dump(r).find("saves: up to 297.9 us per step"), std::string::npos) << dump(r);
}

TEST(Doctor, InferredStepsLeaveOutWarmUpAndTail) {
  StepSpec s;
  s.kernel_ns = 2000;
  s.gap_ns = 3000;
  s.graph = false;
  Trace t = decode_trace(s);
  t.steps.clear();
  // 5 ms of host work in the first step after a readback (first-call set-up) and in the last.
  shift_after(t, readback_ends(t)[0], 5000000);
  shift_after(t, readback_ends(t)[6], 5000000);
  const DoctorReport r = run(t);
  EXPECT_EQ(r.steps_from, "readbacks");
  EXPECT_EQ(r.n_steps, 5);
  EXPECT_NEAR(r.step_us, 499.1, 1e-6);
  EXPECT_EQ(find(r, "host-overhead"), nullptr) << dump(r);  // the 5 ms turns are not in the loop
  EXPECT_EQ(r.findings.front().rule, "launch-bound") << dump(r);
}

TEST(Doctor, WithoutReadbacksTheDensestSpanOfGpuWork) {
  StepSpec s;
  s.kernel_ns = 2000;
  s.gap_ns = 3000;
  s.graph = false;
  s.d2h = 0;
  Trace t = decode_trace(s);
  t.steps.clear();
  // Teardown 20 ms after the loop: a whole-run analysis would call the run host-bound.
  KernelEvent k;
  k.name = "teardown_kernel";
  k.start_ns = t.end_ns + 20000000;
  k.end_ns = k.start_ns + 5000;
  t.kernels.push_back(k);
  t.end_ns = k.end_ns + 1000;
  const DoctorReport r = run(t);
  EXPECT_EQ(r.scope, "window");
  EXPECT_EQ(r.steps_from, "window");
  // From the prefill kernel's start (1.001 ms) to the last loop kernel's end: step 7 starts at
  // 1.2 ms + 7 x 499 us and its last kernel ends 498 us later.
  EXPECT_NEAR(r.step_us, 5191.0 - 1001.0, 1e-6);
  EXPECT_EQ(find(r, "host-overhead"), nullptr) << dump(r);
  EXPECT_NE(find(r, "launch-bound"), nullptr) << dump(r);
  EXPECT_NE(dump(r).find("steady window of 4.19 ms"), std::string::npos) << dump(r);
  // The whole run without inference would have been host-bound.
  EXPECT_GT(analyze(t).overall.long_gaps, 0);
}

// A loop that moves its data through the host with synchronous copies of pageable memory, like
// tools/pageable_copy_loop.cu. Step markers ("decode"); per step from T, in us:
//   cudaMemcpy H2D          [T, T+300): the host stages 100 us, the GPU copies [T+100, T+300)
//   4 kernels of 5 us       [T+310, T+330), launched in [T+300, T+310)
//   cudaDeviceSynchronize   [T+310, T+335): 5 us after the last kernel with nothing to run
//   cudaMemcpy D2H          [T+335, T+635): the GPU copies [T+335, T+535), the host unstages 100 us
//   next step               T+640
Trace sync_loop_trace(int n_steps = 8) {
  constexpr uint64_t kUs = 1000, kBytes = 4194304;
  Trace t;
  t.source = "inject";
  uint64_t T = 1000000;
  t.begin_ns = T;
  for (int step = 0; step < n_steps; ++step, T += 640 * kUs) {
    t.steps.push_back({T, "decode"});
    t.api.push_back({"cudaMemcpy", T, T + 300 * kUs});
    t.memcpys.push_back(MemcpyEvent{CopyKind::H2D, kBytes, T + 100 * kUs, T + 300 * kUs, 7, true});
    for (int k = 0; k < 4; ++k) {
      t.api.push_back({"cudaLaunchKernel", T + (300 + 2 * k) * kUs, T + (301 + 2 * k) * kUs});
      KernelEvent e;
      e.name = "void scale_kernel(float*, int, float)";
      e.start_ns = T + (310 + 5 * k) * kUs;
      e.end_ns = e.start_ns + 5 * kUs;
      e.stream = 7;
      t.kernels.push_back(e);
    }
    t.api.push_back({"cudaDeviceSynchronize", T + 310 * kUs, T + 335 * kUs});
    t.api.push_back({"cudaMemcpy", T + 335 * kUs, T + 635 * kUs});
    t.memcpys.push_back(MemcpyEvent{CopyKind::D2H, kBytes, T + 335 * kUs, T + 535 * kUs, 7, true});
  }
  t.end_ns = T;
  return t;
}

TEST(Doctor, SyncTransferBoundLoop) {
  const DoctorReport r = run(sync_loop_trace());
  ASSERT_FALSE(r.findings.empty());
  EXPECT_NEAR(r.step_us, 640.0, 1e-6);
  // The host waits with no kernel to run: 300 (H2D call) + 5 (sync) + 300 (D2H call) = 605 us,
  // of which 400 us the GPU copies and 205 us it idles (staging, the sync's tail, unstaging).
  const Finding& f = r.findings.front();
  EXPECT_EQ(f.rule, "sync-bound") << dump(r);
  EXPECT_NEAR(f.saved_us_per_step, 605.0, 1e-6);
  EXPECT_NE(f.title.find("94.5% of each token"), std::string::npos) << f.title;
  EXPECT_NE(f.title.find("605.0 us: 400.0 us of copies, 205.0 us idle"), std::string::npos) << f.title;
  EXPECT_NE(f.evidence[0].find("cudaDeviceSynchronize 1.00, cudaMemcpy 2.00"), std::string::npos) << f.evidence[0];
  EXPECT_NE(dump(r).find("verdict: sync/transfer-bound"), std::string::npos) << dump(r);
  // Pageable copies: the 600 us the host spends in their calls.
  const Finding* pageable = find(r, "pageable");
  ASSERT_NE(pageable, nullptr) << dump(r);
  EXPECT_NEAR(pageable->saved_us_per_step, 600.0, 1e-6);
  // 8 MiB per token crosses the bus: the copy time of all but the expected 64 KiB.
  const Finding* copies = find(r, "copies");
  ASSERT_NE(copies, nullptr) << dump(r);
  EXPECT_NE(copies->title.find("8.39 MB per token"), std::string::npos) << copies->title;
  EXPECT_NEAR(copies->saved_us_per_step, 400.0 * (8388608.0 - 65536.0) / 8388608.0, 1e-6);
  // 2 cudaMemcpy + 1 cudaDeviceSynchronize per token.
  const Finding* syncs = find(r, "host-syncs");
  ASSERT_NE(syncs, nullptr) << dump(r);
  EXPECT_NE(syncs->title.find("3.00 (expected 1)"), std::string::npos) << syncs->title;
  // The GPU's idle time outside the copies is the host inside them, not a slow host turn.
  EXPECT_EQ(find(r, "host-overhead"), nullptr) << dump(r);
  EXPECT_EQ(find(r, "launch-bound"), nullptr) << dump(r);
  ASSERT_GE(r.findings.size(), 4u);
  EXPECT_EQ(r.findings[1].rule, "pageable");
  EXPECT_EQ(r.findings[2].rule, "copies");
  EXPECT_EQ(r.findings[3].rule, "host-syncs");
}

TEST(Doctor, WaitingForKernelsIsNotSyncBound) {
  // The healthy decode step: the host blocks in the sync for the whole step while the kernels run.
  StepSpec s;
  s.syncs = 1;
  const DoctorReport r = run(decode_trace(s));
  EXPECT_EQ(find(r, "sync-bound"), nullptr) << dump(r);
}

TEST(Doctor, NoKernels) {
  Trace t;
  t.begin_ns = 1;
  t.end_ns = 1000;
  const DoctorReport r = run(t);
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_EQ(r.findings[0].rule, "no-kernels");
}

TEST(Doctor, JsonHasEveryFinding) {
  StepSpec s;
  s.syncs = 2;
  const DoctorReport r = run(decode_trace(s));
  const nlohmann::json j = nlohmann::json::parse(doctor_to_json(r));
  EXPECT_EQ(j["scope"], "decode");
  EXPECT_EQ(j["steps_from"], "markers");
  EXPECT_EQ(j["n_steps"], 8);
  ASSERT_EQ(j["findings"].size(), r.findings.size());
  EXPECT_EQ(j["findings"][0]["rule"], r.findings[0].rule);
  EXPECT_EQ(j["findings"][0]["severity"], severity_name(r.findings[0].severity));
}

// ---- compute-bound, occupancy-limited, layout/algorithm-limited ------------------------------

DeviceLimits h100_limits() {
  DeviceLimits d;
  d.cc_major = 9;
  d.sm_count = 132;
  d.max_threads_per_sm = 2048;
  d.max_blocks_per_sm = 32;
  d.regs_per_sm = 65536;
  d.regs_per_block = 65536;
  d.smem_per_sm = 233472;
  d.smem_per_block_optin = 232448;
  d.reserved_smem_per_block = 1024;
  return d;
}

TEST(Doctor, ComputeBoundTensorCoreKernels) {
  // Per step: 75 wgmma GEMMs of 5 us, each 4 GFLOP (800 TFLOP/s = 80% of a 1000 TFLOP/s
  // ceiling) and 4 MB, and 25 norms of 5 us without hints.
  StepSpec s;
  s.names = {"void gemm_bf16_wgmma_kernel(GemmParams)", "void gemm_bf16_wgmma_kernel(GemmParams)",
             "void gemm_bf16_wgmma_kernel(GemmParams)", "void rms_norm_kernel<float>(NormParams)"};
  Trace t = decode_trace(s);
  t.bf16_tflops = 1000;
  t.costs = {KernelCost{"gemm_bf16_wgmma_kernel", 10, 10, 10 * 4e6, 10 * 4e9}};
  const DoctorReport r = run(t);
  const Finding* f = find(r, "compute-bound");
  ASSERT_NE(f, nullptr) << dump(r);
  EXPECT_NE(f->title.find("75.0% of kernel time"), std::string::npos) << f->title;
  EXPECT_NE(f->title.find("gemm_bf16_wgmma_kernel at 80.0%"), std::string::npos) << f->title;
  ASSERT_GE(f->evidence.size(), 2u);
  EXPECT_NE(f->evidence[0].find("800.0 TFLOP/s = 80.0% of the bf16 ceiling"), std::string::npos) << f->evidence[0];
  EXPECT_NE(f->evidence[0].find("1000.0 flop/byte"), std::string::npos) << f->evidence[0];
  // At the ceiling the 75 x 4 GFLOP take 300 us instead of 375: 75 us per token to gain at most.
  EXPECT_NE(f->evidence.back().find("300.0 us per token instead of 375.0"), std::string::npos) << f->evidence.back();
  EXPECT_NEAR(f->saved_us_per_step, 75.0, 1e-6);
  EXPECT_EQ(f->severity, Severity::HIGH);  // 75 of a 502.1 us step
  // Far below the ceiling: not compute-bound.
  t.bf16_tflops = 4000;
  EXPECT_EQ(find(run(t), "compute-bound"), nullptr);
  expect_actionable(r);
}

TEST(Doctor, OccupancyLimitedByRegisters) {
  // 50 GEMVs per step of 256 threads x 128 registers: 2 blocks (16 warps) per SM = 25%
  // occupancy; 5 MB in 5 us = 1000 GB/s = 25% of a 4000 GB/s ceiling.
  StepSpec s;
  s.grid = 264;
  s.block = 256;
  s.registers = 128;
  Trace t = decode_trace(s);
  t.read_gbps = 4000;
  t.limits = h100_limits();
  t.costs = {KernelCost{"gemv_q4k_kernel", 4, 4, 4 * 5e6, 4 * 1e7}};
  const DoctorReport r = run(t);
  const Finding* f = find(r, "occupancy");
  ASSERT_NE(f, nullptr) << dump(r);
  EXPECT_NE(f->title.find("gemv_q4k_kernel holds 2 blocks/SM (25% theoretical occupancy, capped by registers)"),
            std::string::npos)
      << f->title;
  EXPECT_NE(f->title.find("1000 GB/s = 25.0% of the ceiling"), std::string::npos) << f->title;
  ASSERT_EQ(f->evidence.size(), 1u);
  EXPECT_NE(f->evidence[0].find("block 256 threads, 128 registers/thread, 0 B shared memory -> 2 blocks/SM "
                                "(limits: warps 8, blocks 32, registers 2, smem 228), 25.0% occupancy, 1.00 waves"),
            std::string::npos)
      << f->evidence[0];
  // Each GEMV: 5 us against 5 MB / 4000 GB/s = 1.25 us; 50 per token.
  EXPECT_NEAR(f->saved_us_per_step, 50 * 3.75, 1e-6);
  EXPECT_NE(f->fix.find("registers"), std::string::npos);

  // The same kernel moving 0.5 MB per call: too small for occupancy to be what limits it (a tiny
  // model's GEMVs read KBs and are latency-bound): no finding.
  Trace small = t;
  small.costs = {KernelCost{"gemv_q4k_kernel", 4, 4, 4 * 5e5, 4 * 1e6}};
  EXPECT_EQ(find(run(small), "occupancy"), nullptr) << dump(run(small));

  // 32 registers: 8 blocks, the warp limit binds, 100%: no finding.
  s.registers = 32;
  Trace ok = decode_trace(s);
  ok.read_gbps = 4000;
  ok.limits = h100_limits();
  ok.costs = t.costs;
  EXPECT_EQ(find(run(ok), "occupancy"), nullptr);
  // Without a hint the bandwidth is unknown: no finding either.
  t.costs.clear();
  EXPECT_EQ(find(run(t), "occupancy"), nullptr);
  expect_actionable(r);
}

TEST(Doctor, OccupancyLimitedBySharedMemory) {
  StepSpec s;
  s.grid = 132;
  s.block = 128;
  s.smem = 100000;  // + 1 KiB reserve -> 103,424 B: 2 blocks of 4 warps = 12.5%
  Trace t = decode_trace(s);
  t.read_gbps = 4000;
  t.limits = h100_limits();
  t.costs = {KernelCost{"gemv_q4k_kernel", 1, 1, 5e6, 0}};
  const DoctorReport r = run(t);
  const Finding* f = find(r, "occupancy");
  ASSERT_NE(f, nullptr) << dump(r);
  EXPECT_NE(f->title.find("2 blocks/SM (12% theoretical occupancy, capped by smem)"), std::string::npos) << f->title;
  EXPECT_NE(f->evidence[0].find("0.50 waves"), std::string::npos) << f->evidence[0];
  EXPECT_NE(f->fix.find("shared-memory tile"), std::string::npos);
  expect_actionable(r);
}

TEST(Doctor, LayoutReformatsAndUnfusedSoftmax) {
  // Per step of 100 kernels of 5 us: 25 GEMVs, 25 transposes, 50 softmaxes over score matrices.
  StepSpec s;
  s.names = {"void gemv_q4k_kernel(GemvParams)", "void transpose_kernel<float>(float const*, float*, int, int)",
             "void softmax_kernel(float*, int)", "void softmax_kernel(float*, int)"};
  Trace t = decode_trace(s);
  t.weight_bytes = 1e8;
  t.costs = {KernelCost{"transpose_kernel<float>", 2, 2, 2 * 2e6, 0}};
  const DoctorReport r = run(t);
  const Finding* f = find(r, "layout");
  ASSERT_NE(f, nullptr) << dump(r);
  EXPECT_NE(f->title.find("75.0% of kernel time moves data for little work (125.0 us per token in "
                          "reformat/transpose kernels, 250.0 us in unfused softmax)"),
            std::string::npos)
      << f->title;
  bool softmax_ev = false, transpose_ev = false, bytes_ev = false;
  for (const std::string& e : f->evidence) {
    softmax_ev |= e.find("softmax_kernel (softmax over a materialized score matrix): 50.0% of kernel time, 50.0 "
                         "calls and 250.0 us per token") != std::string::npos;
    transpose_ev |= e.find("transpose_kernel<float> (reformat): 25.0% of kernel time, 25.0 calls and 125.0 us per "
                           "token, 50.00 MB per token at 0.00 flop/byte") != std::string::npos;
    bytes_ev |= e.find("they move 50.00 MB per token, 50.0% of the weight bytes") != std::string::npos;
  }
  EXPECT_TRUE(softmax_ev) << dump(r);
  EXPECT_TRUE(transpose_ev) << dump(r);
  EXPECT_TRUE(bytes_ev) << dump(r);
  EXPECT_NEAR(f->saved_us_per_step, 375.0, 1e-6);
  EXPECT_NE(f->fix.find("FlashAttention"), std::string::npos);
  EXPECT_EQ(r.findings.front().rule, "layout") << dump(r);
  expect_actionable(r);
}

TEST(Doctor, FusedAttentionAndEmbeddingAreNotLayout) {
  StepSpec s;
  s.names = {"void gemv_q4k_kernel(GemvParams)", "void flash_attn_softmax_kernel(AttnParams)",
             "void embedding_copy_kernel(EmbParams)"};
  const DoctorReport r = run(decode_trace(s));
  EXPECT_EQ(find(r, "layout"), nullptr) << dump(r);
}

}  // namespace
}  // namespace fathom

// ---- real traces (H200, scripts/device_profile_check2.sh) ------------------------------------

namespace fathom {
namespace {

DoctorReport run_file(const std::string& name) {
  const Trace t = read_trace_file(std::string(FATHOM_TEST_DATA_DIR) + "/traces/" + name);
  return diagnose(t, analyze(t, 0));  // as `fathom doctor --trace` calls it
}

// tools/pageable_copy_loop.cu (32 steps of 4 MiB each way through pageable std::vectors, NVTX
// step ranges) under the injection library: the host spends its step inside cudaMemcpy (staging
// and copying) and cudaDeviceSynchronize.
TEST(DoctorRealTrace, PageableLoopIsSyncTransferBound) {
  const DoctorReport r = run_file("h200_pageable_loop.json");
  EXPECT_EQ(r.scope, "decode");
  EXPECT_EQ(r.steps_from, "nvtx");
  EXPECT_EQ(r.n_steps, 31);
  EXPECT_NEAR(r.step_us, 946.2, 0.05);
  ASSERT_FALSE(r.findings.empty());
  const Finding& f = r.findings.front();
  EXPECT_EQ(f.rule, "sync-bound") << dump(r);
  EXPECT_NE(f.title.find("sync/transfer-bound: the host waits 91.6% of each token"), std::string::npos) << f.title;
  EXPECT_NEAR(f.saved_us_per_step, 894.5, 0.05);
  const Finding* pageable = find(r, "pageable");
  ASSERT_NE(pageable, nullptr) << dump(r);
  EXPECT_NE(pageable->title.find("62 copies use pageable host memory (2.00 per token)"), std::string::npos);
  EXPECT_NEAR(pageable->saved_us_per_step, 886.4, 0.05);
  const Finding* copies = find(r, "copies");
  ASSERT_NE(copies, nullptr) << dump(r);
  EXPECT_NE(copies->title.find("8.39 MB per token"), std::string::npos) << copies->title;
  const Finding* syncs = find(r, "host-syncs");
  ASSERT_NE(syncs, nullptr) << dump(r);
  EXPECT_NE(syncs->title.find("4.00 (expected 1)"), std::string::npos) << syncs->title;
  EXPECT_EQ(find(r, "host-overhead"), nullptr) << dump(r);
  EXPECT_EQ(r.findings[1].rule, "pageable") << dump(r);
  EXPECT_EQ(r.findings[2].rule, "copies") << dump(r);
}

// A PyTorch eager decode-like loop (tests/data/traces: the 48-step loop of
// scripts/device_profile_check2.sh) under the injection library. Its NVTX ranges did not reach
// the trace, so the steps are inferred from the .item() readbacks. Fixture reduced from the
// 1.8 MB trace: runtime calls other than launches, copies, syncs and allocations dropped, kernel
// parameter lists dropped and names cut at 120 characters, timestamps rebased.
TEST(DoctorRealTrace, TorchEagerLoopIsLaunchCpuBound) {
  const DoctorReport r = run_file("h200_torch_eager_loop.json");
  EXPECT_EQ(r.scope, "decode");
  EXPECT_EQ(r.steps_from, "readbacks");
  // 48 readbacks: 47 steps, the first (18.5 ms: cuBLAS set-up for new shapes) left out.
  EXPECT_EQ(r.n_steps, 46);
  EXPECT_NEAR(r.step_us, 492.0, 0.05);
  ASSERT_FALSE(r.findings.empty());
  const Finding& f = r.findings.front();
  EXPECT_EQ(f.rule, "launch-bound") << dump(r);
  EXPECT_NE(f.title.find("launch/CPU-bound: GPU idle 67.5% of the decode step between kernels (22 kernels/step, "
                         "median gap 18.5 us)"),
            std::string::npos)
      << f.title;
  EXPECT_NEAR(f.saved_us_per_step, 430.6, 0.05);
  EXPECT_NE(f.fix.find("CUDA graph"), std::string::npos);
  EXPECT_EQ(find(r, "sync-bound"), nullptr) << dump(r);
  EXPECT_EQ(find(r, "host-syncs"), nullptr) << dump(r);  // one .item() per step
  EXPECT_NE(find(r, "layout"), nullptr) << dump(r);      // cat, contiguous, dtype copies
  // The whole run, as doctor read it before: mostly loading and teardown.
  const Trace t = read_trace_file(std::string(FATHOM_TEST_DATA_DIR) + "/traces/h200_torch_eager_loop.json");
  EXPECT_LT(analyze(t, 0).overall.busy_pct, 1.0);
}

// ---- why / failure modes / how to test, the patch plan and the checklist ---------------------

TEST(DoctorPlan, RealTracesAreActionable) {
  for (const char* name : {"h200_pageable_loop.json", "h200_torch_eager_loop.json"}) {
    SCOPED_TRACE(name);
    expect_actionable(run_file(name));
  }
}

// The pageable loop: one step (async copies from pinned buffers) covers the pageable and host-sync
// findings, whose estimates overlap it; the copies and the allocation are steps of their own. A
// foreign program: "where" names the API, not fathom's files.
TEST(DoctorPlan, PageableLoopMergesTheTransferFixes) {
  const DoctorReport r = run_file("h200_pageable_loop.json");
  ASSERT_EQ(r.patch_plan.size(), 3u) << dump(r);
  EXPECT_EQ(r.patch_plan[0].rules, (std::vector<std::string>{"sync-bound", "pageable", "host-syncs"}));
  EXPECT_NE(r.patch_plan[0].expected.find("up to 894.5 us per token (94.5% of the 946.2 us step; high)"),
            std::string::npos)
      << r.patch_plan[0].expected;
  EXPECT_NE(r.patch_plan[0].where.find("cudaHostRegister"), std::string::npos);
  EXPECT_EQ(r.patch_plan[0].where.find("src/"), std::string::npos);
  EXPECT_EQ(r.patch_plan[1].rules, (std::vector<std::string>{"copies"}));
  EXPECT_EQ(r.patch_plan[2].rules, (std::vector<std::string>{"allocations"}));
  const Finding* sync = find(r, "sync-bound");
  ASSERT_NE(sync, nullptr);
  EXPECT_NE(sync->how_to_test.find("fathom profile -- CMD"), std::string::npos) << sync->how_to_test;
  EXPECT_NE(sync->how_to_test.find("894.5 us"), std::string::npos) << sync->how_to_test;
  EXPECT_NE(sync->failure_modes.find("pinning large buffers"), std::string::npos);
}

TEST(DoctorPlan, TorchEagerLoopPlanStartsWithAGraph) {
  const DoctorReport r = run_file("h200_torch_eager_loop.json");
  ASSERT_FALSE(r.patch_plan.empty());
  EXPECT_EQ(r.patch_plan[0].rules[0], "launch-bound");
  EXPECT_NE(r.patch_plan[0].where.find("torch.compile"), std::string::npos) << r.patch_plan[0].where;
  const Finding* f = find(r, "launch-bound");
  ASSERT_NE(f, nullptr);
  EXPECT_NE(f->failure_modes.find("re-capture"), std::string::npos) << f->failure_modes;
  EXPECT_NE(f->failure_modes.find("not captured"), std::string::npos) << f->failure_modes;
}

// Synthetic engine traces: fathom's own kernels map to their files under src/cuda/; the checklist
// uses the engine's commands.
TEST(DoctorPlan, SyntheticEngineTracesAreActionable) {
  StepSpec launch;
  launch.kernel_ns = 2000;
  launch.gap_ns = 3000;
  launch.graph = false;
  StepSpec syncs;
  syncs.syncs = 3;
  syncs.allocs = 2;
  syncs.h2d = 4;
  StepSpec pageable;
  pageable.pageable = true;
  for (const StepSpec& s : {StepSpec{}, launch, syncs, pageable}) expect_actionable(run(decode_trace(s)));

  const DoctorReport r = run(decode_trace(launch));
  ASSERT_FALSE(r.patch_plan.empty());
  EXPECT_EQ(r.patch_plan[0].rules[0], "launch-bound") << dump(r);
  EXPECT_NE(r.patch_plan[0].where.find("src/cuda/engine.cpp"), std::string::npos) << r.patch_plan[0].where;
  EXPECT_TRUE(std::any_of(r.checklist.begin(), r.checklist.end(), [](const std::string& c) {
    return c.rfind("after each step: `fathom bench -m MODEL --baseline before.json`", 0) == 0;
  })) << dump(r);
  const Finding* f = find(r, "launch-bound");
  ASSERT_NE(f, nullptr);
  EXPECT_NE(f->how_to_test.find("graph/st must read 1.00"), std::string::npos) << f->how_to_test;
}

TEST(DoctorPlan, FusionStepNamesFathomsKernelFiles) {
  StepSpec s;
  s.kernel_ns = 2000;
  s.gap_ns = 3000;  // a graph, yet gaps: fuse
  s.names = {"void gemv_q8_kernel<4>(GemvQ8Params)", "void rms_norm_kernel<float>(NormParams)"};
  const DoctorReport r = run(decode_trace(s));
  ASSERT_FALSE(r.patch_plan.empty()) << dump(r);
  EXPECT_EQ(r.patch_plan[0].rules[0], "launch-bound") << dump(r);
  EXPECT_NE(r.patch_plan[0].where.find("src/cuda/matmul_gemv_q8.cu"), std::string::npos) << r.patch_plan[0].where;
  EXPECT_NE(r.patch_plan[0].where.find("src/cuda/rms_norm.cu"), std::string::npos) << r.patch_plan[0].where;
  expect_actionable(r);
}

TEST(DoctorPlan, NoKernelsExplainsItself) {
  Trace none;
  none.begin_ns = 1;
  none.end_ns = 1000;
  const DoctorReport r = run(none);
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_FALSE(r.findings[0].why.empty());
  EXPECT_FALSE(r.findings[0].failure_modes.empty());
  EXPECT_FALSE(r.findings[0].how_to_test.empty());
  EXPECT_TRUE(r.patch_plan.empty());
  EXPECT_FALSE(r.checklist.empty());
}

}  // namespace
}  // namespace fathom
