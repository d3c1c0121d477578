// fathom doctor's rules: plain arithmetic over a TraceAnalysis. Every estimate of time saved is an
// upper bound per token step (what the step would lose if the named waste went to zero), so the
// ranking says where to look first, not what a fix will certainly give.
#include "fathom/doctor.h"

#include <algorithm>
#include <cctype>
#include <cstdarg>
#include <cstdio>
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

}  // namespace

DoctorReport diagnose(const Trace& trace, const TraceAnalysis& a, const DoctorThresholds& th) {
  const PhaseStats& p = a.steady();
  const bool decode = p.phase == "decode";
  DoctorReport r;
  r.scope = p.phase;
  r.step_us = p.n_steps > 1 ? p.median_step_us : p.per_step(p.wall_us);
  const double step = r.step_us > 0 ? r.step_us : p.per_step(p.wall_us);
  const char* per = decode ? "token" : "step";
  const std::string scope_name = decode ? "decode step" : (p.phase == "all" ? "run" : p.phase + " step");

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

  // ---- launch-bound: idle GPU between the kernels of a step ----
  if (p.gap_pct > th.idle_pct) {
    Finding f;
    f.rule = "launch-bound";
    f.title = str_printf("launch-bound: GPU idle %.1f%% of the %s between kernels (%s kernels/%s, median gap %.1f us)",
                  p.gap_pct, scope_name.c_str(), commas(kernels_ps).c_str(), per, p.median_gap_us);
    f.evidence.push_back(str_printf("idle between kernels: %.1f us per %s of %.1f us", gap_ps, per, wall_ps));
    f.evidence.push_back(str_printf("kernels per %s: %.1f, launched by %.1f launch calls and %.2f graph launches "
                             "(%.1f us of host time in them)",
                             per, kernels_ps, p.per_step(double(p.launch_calls)), graphs_ps,
                             p.per_step(p.launch_us)));
    if (graphs_ps < 0.5) {
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
    // Time in allocations is the allocation rule's to claim, not counted twice.
    const double outside_ps = std::max(0.0, wall_ps - busy_ps - gap_ps - p.per_step(p.alloc_us));
    const double outside_pct = wall_ps > 0 ? 100.0 * outside_ps / wall_ps : 0;
    if (outside_pct > th.idle_pct) {
      Finding f;
      f.rule = "host-overhead";
      f.title = decode ? str_printf("host-bound: the GPU waits %.1f%% of each token for the host (%.1f us outside the "
                             "step's kernels)",
                             outside_pct, outside_ps)
                       : str_printf("host-bound: the GPU is idle %.1f%% of the %s outside kernels (%.1f us; %lld gaps over "
                             "%.0f us)",
                             outside_pct, scope_name.c_str(), outside_ps, (long long)p.long_gaps, kLongGapUs);
      f.evidence.push_back(str_printf("GPU busy %.1f us of a %.1f us %s (%.1f%%); idle between kernels %.1f us", busy_ps,
                               wall_ps, per, p.busy_pct, gap_ps));
      f.evidence.push_back(str_printf("host syncs %.2f per %s, %.1f us waited", p.per_step(double(p.host_syncs)), per,
                               p.per_step(p.host_sync_us)));
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
      f.title = str_printf("host syncs per token: %.2f (expected %.0f)", syncs_ps, expected);
      f.evidence.push_back(str_printf("%lld host synchronizations in %lld steps, %.1f us per token spent waiting",
                               (long long)p.host_syncs, (long long)p.n_steps, p.per_step(p.host_sync_us)));
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
    f.title = decode ? str_printf("allocations in the decode loop: %.2f per token (expected 0)", allocs_ps)
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
  if (decode) {
    const double h2d_ps = p.per_step(double(p.h2d)), d2h_ps = p.per_step(double(p.d2h));
    const double excess = std::max(0.0, h2d_ps - th.expected_h2d) + std::max(0.0, d2h_ps - th.expected_d2h);
    if (excess > kPerStepSlack) {
      const int64_t copies = p.h2d + p.d2h + p.d2d + p.other_copies;
      const double mean_copy_us = copies > 0 ? p.copy_us / double(copies) : 0;
      Finding f;
      f.rule = "copies";
      f.title = str_printf("H2D/D2H copies per token beyond token ids: %.2f extra (%.2f H2D, %.2f D2H; expected <= %.0f and "
                    "%.0f)",
                    excess, h2d_ps, d2h_ps, th.expected_h2d, th.expected_d2h);
      f.evidence.push_back(str_printf("per token: H2D %s, D2H %s, D2D %.2f copies (%s)",
                               bytes_str(p.per_step(p.h2d_bytes)).c_str(), bytes_str(p.per_step(p.d2h_bytes)).c_str(),
                               p.per_step(double(p.d2d)), bytes_str(p.per_step(p.d2d_bytes)).c_str()));
      f.evidence.push_back(str_printf("mean copy %.1f us", mean_copy_us));
      f.fix = "keep step inputs on the device (positions and KV slots can be computed there) and read back only "
              "the sampled ids; gather the remaining small inputs into one pinned buffer and one copy";
      f.saved_us_per_step = excess * (mean_copy_us + th.sync_cost_us * 0.2);
      add(f);
    }
  }

  // ---- pageable host memory in transfers ----
  if (p.pageable_copies > 0) {
    Finding f;
    f.rule = "pageable";
    f.title = str_printf("%lld copies use pageable host memory (%.2f per %s)", (long long)p.pageable_copies,
                  p.per_step(double(p.pageable_copies)), per);
    f.evidence.push_back("a pageable copy is staged through a driver buffer and is synchronous to the host");
    f.fix = "use pinned buffers (cudaMallocHost or cudaHostRegister at load) for every transfer in the loop";
    f.saved_us_per_step = p.per_step(double(p.pageable_copies)) * th.sync_cost_us;
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

std::string format_doctor(const DoctorReport& r) {
  std::string s;
  const bool decode = r.scope == "decode";
  if (decode)
    s += str_printf("fathom doctor: decode phase, %.1f us per token\n", r.step_us);
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
  j["step_us"] = r.step_us;
  j["findings"] = nlohmann::json::array();
  for (const Finding& f : r.findings)
    j["findings"].push_back({{"rule", f.rule}, {"severity", severity_name(f.severity)}, {"title", f.title},
                             {"evidence", f.evidence}, {"fix", f.fix}, {"saved_us_per_step", f.saved_us_per_step}});
  return j.dump(indent);
}

}  // namespace fathom
