// fathom doctor: names the bottleneck of a profiled run with evidence and ranks the fixes.
//
// Plain rules over a TraceAnalysis (profiler.h) and the thresholds below; no GPU needed, so every
// rule is unit-tested on synthetic traces. Each finding carries the numbers it rests on and an
// estimate of the time per token (step) a fix would give back; findings are ranked by that.
//
// The rules look at the steady phase: decode when the trace has step markers (NVTX ranges or the
// profiler's marks). Without markers the steps are inferred: one per device-to-host readback (a
// decode loop reads its sampled token back every step), leading and trailing steps over 4x the
// median dropped as warm-up and tail; a trace without readbacks is cut to its densest span of GPU
// work (no idle gap over kLongGapUs), so loading and teardown do not drown the loop.
//   sync-bound     the host waits in synchronizing calls (syncs, synchronous or pageable copies)
//                  while the GPU has no kernel left to run: sync/transfer-bound
//   launch-bound   GPU idle between kernels is a large share of the step (launch/CPU-bound when
//                  the gaps are far longer than a launch: the host issues kernels too slowly)
//   host-overhead  the GPU waits for the host between steps (its time in blocking calls excluded)
//   bandwidth      decode step far below weight bytes / measured read bandwidth
//   host-syncs     more host synchronizations per token than the one that reads the sampled id
//   allocations    cudaMalloc/cudaFree (or host-pinned allocations) inside the decode loop
//   copies         H2D/D2H copies per token beyond the token-id input and the sampled-id output,
//                  by count or by bytes
//   pageable       copies from or to pageable host memory (staged by the driver, and synchronous)
//   compute-bound  kernels near the measured bf16 tensor-core ceiling take most of the kernel time
//                  (needs launch-cost hints: fathom's own kernels)
//   occupancy      a large kernel far below the read ceiling whose registers or shared memory cap
//                  its blocks per SM (theoretical occupancy; needs hints and device limits)
//   layout         reformat/transpose/copy kernels and unfused softmax over a materialized score
//                  matrix: time spent moving bytes that a fused or re-laid-out kernel would not
//   top-kernel     the kernel that dominates GPU time (where kernel work should start)
//
// Every finding also says why its fix works (the mechanism that removes the measured cost), how
// the fix can fail to pay, and the measurement that proves it. The report ends with a patch plan
// (the findings that save time, largest first, those one change covers merged into its step) and
// a verification checklist (bench baseline, profile counters, correctness, doctor again).
#pragma once

#include <string>
#include <vector>

#include "fathom/profiler.h"

namespace fathom {

enum class Severity { INFO, LOW, MEDIUM, HIGH };
const char* severity_name(Severity s);  // "info" "low" "medium" "high"

struct Finding {
  std::string rule;            // "launch-bound", "bandwidth", "host-syncs", ...
  Severity severity = Severity::INFO;
  std::string title;           // one line: the bottleneck and its main number
  std::vector<std::string> evidence;  // the measured numbers behind it
  std::string fix;             // what to change
  std::string why;             // the mechanism by which the fix removes the measured cost
  std::string failure_modes;   // what can go wrong, or make the fix not pay
  std::string how_to_test;     // the measurement that proves it: commands and what must move
  double saved_us_per_step = 0;       // estimated time a fix gives back per token step
};

// One step of the patch plan: a change, where to make it, and what it should give back.
struct PatchStep {
  std::vector<std::string> rules;  // findings it addresses: the one it comes from, then those it covers
  std::string change;              // what to change (the first finding's fix)
  std::string where;               // fathom: files under src/; another program: the API or framework setting
  double saved_us_per_step = 0;    // the first finding's estimate (covered findings overlap it: not added)
  std::string expected;            // the estimate in words: "up to 894.5 us per token (94.5% of the step; high)"
};

struct DoctorThresholds {
  double idle_pct = 10;            // launch-bound above this GPU idle share of the step
  double bandwidth_pct = 70;       // bandwidth finding below this share of the read ceiling
  double expected_syncs = 1;       // per decode step: reading the sampled id
  double expected_h2d = 2;         // per decode step: token/position inputs (+ a block-table refresh)
  double expected_d2h = 1;         // per decode step: the sampled id
  double top_kernel_pct = 30;      // top-kernel finding above this share of kernel time
  double compute_pct = 60;         // a kernel at or above this % of the bf16 ceiling is compute-bound
  double compute_share_pct = 50;   // compute-bound when such kernels take this share of kernel time
  double occupancy_pct = 50;       // occupancy finding below this theoretical occupancy...
  double occupancy_kernel_pct = 5; // ...for kernels with at least this share of kernel time
  double occupancy_min_call_bytes = 2e6;  // ...moving at least this per call (smaller kernels are
                                          // latency-bound whatever their occupancy)
  double layout_pct = 10;          // layout finding above this share of kernel time in reformats
  double expected_copy_bytes = 65536;  // per decode step, H2D + D2H: ids, positions, a block table
  // Median gap between kernels above which the host, not the launch itself, sets the pace: a bare
  // cudaLaunchKernel costs 2-5 us of host time (H100/H200), a PyTorch eager op 10-30 us.
  double cpu_gap_us = 10;
  // Without step markers: leading/trailing inferred steps longer than this x the median are
  // warm-up (first-call autotuning, allocations) or tail, not the loop.
  double warmup_factor = 4;
  // Cost of an extra host sync beyond its own wait: the GPU drains and the host must relaunch,
  // about one launch latency plus the reaction time. An assumption, not a measurement.
  double sync_cost_us = 10;
  // Severity from the share of the step a fix would save.
  double high_pct = 10, medium_pct = 3;
};

struct DoctorReport {
  std::string scope;               // the phase the rules looked at ("decode", "window", "all")
  // Where the steps came from: "nvtx" or "markers" (the trace's), "readbacks" (inferred: one step
  // per device-to-host readback), "window" (no steps: the densest span of GPU work), "" (none).
  std::string steps_from;
  int64_t n_steps = 0;             // steps in the scope
  double step_us = 0;              // median step time of that phase (wall per step without markers)
  std::vector<Finding> findings;   // ranked: most time saved first, then by severity
  std::vector<PatchStep> patch_plan;    // ordered: the findings that save time, largest first
  std::vector<std::string> checklist;   // commands to run before and after, and what they must show
};

DoctorReport diagnose(const Trace& trace, const TraceAnalysis& analysis,
                      const DoctorThresholds& th = {});

// Markdown: a one-line verdict naming the first finding, the numbered findings (evidence, fix,
// why, failure modes, test, saving), "## Patch plan" and "## Verification checklist".
std::string format_doctor(const DoctorReport& r);
std::string doctor_to_json(const DoctorReport& r, int indent = 2);

}  // namespace fathom
