// fathom's profiler: what the GPU did, in plain structs, and the numbers the optimization loop
// looks at first (top kernels, idle gaps between kernels, syncs / copies / allocations per token).
//
//   Profiler   records through the CUPTI Activity API (CUDA builds only): kernels, memcpys,
//              memsets, host synchronizations, the runtime API calls that matter for an inference
//              loop, NVTX ranges (CUPTI_ACTIVITY_KIND_MARKER, with NVTX_INJECTION64_PATH pointing
//              at libcupti), and host-side step markers (mark_step) that split the run into token
//              steps.
//   Trace      the recorded events: plain C++, JSON-serialisable, built by hand in tests.
//   analyze()  pure C++ over a Trace: per phase ("prefill", "decode", ...) and for the whole run.
//
// Time base: every timestamp is CUPTI's (cuptiGetTimestamp, ns), so GPU activity and host
// markers share one clock. A synthetic trace may use any origin.
//
// Steps: fathom's engine wraps every prefill and decode call in an NVTX range named "prefill" or
// "decode step N" (N: the token's position); any program may do the same (any NVTX domain). When
// a trace holds such ranges they define the steps (each from its range's start to the next one's);
// otherwise the Profiler's mark_step markers do.
//
// Step attribution: an event belongs to the step whose [mark, next mark) interval holds its
// start. Kernels are attributed by GPU start time, which is right when each step ends with a host
// sync (fathom's engine reads the sampled id back every step); a program that runs ahead of the
// host would have its GPU work counted in a later step.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fathom/model.h"

namespace fathom {

struct KernelEvent {
  std::string name;            // demangled
  uint64_t start_ns = 0, end_ns = 0;
  uint32_t stream = 0;
  int32_t grid[3] = {1, 1, 1};
  int32_t block[3] = {1, 1, 1};
  int32_t registers = 0;       // per thread
  int32_t static_smem = 0;     // bytes per block
  int32_t dynamic_smem = 0;    // bytes per block
  uint32_t graph_id = 0;       // non-zero when launched as a node of a CUDA graph
  uint32_t correlation = 0;    // CUPTI correlation id of the launching API call (0: unknown)
};

enum class CopyKind { H2D, D2H, D2D, H2H, OTHER };
const char* copy_kind_name(CopyKind k);  // "H2D" ...

struct MemcpyEvent {
  CopyKind kind = CopyKind::OTHER;
  uint64_t bytes = 0;
  uint64_t start_ns = 0, end_ns = 0;
  uint32_t stream = 0;
  bool pageable = false;       // the host side is pageable memory (a staged, slower copy)
};

struct MemsetEvent {
  uint64_t bytes = 0;
  uint64_t start_ns = 0, end_ns = 0;
  uint32_t stream = 0;
};

enum class SyncKind { EVENT, STREAM_WAIT_EVENT, STREAM, CONTEXT, OTHER };
const char* sync_kind_name(SyncKind k);  // "event" "stream_wait_event" "stream" "context" "other"

// A synchronization (CUPTI_ACTIVITY_KIND_SYNCHRONIZATION). Host timestamps: how long the host
// waited. STREAM_WAIT_EVENT is a device-side dependency and does not block the host.
struct SyncEvent {
  SyncKind kind = SyncKind::OTHER;
  uint64_t start_ns = 0, end_ns = 0;
  uint32_t stream = 0;
  bool blocks_host() const { return kind != SyncKind::STREAM_WAIT_EVENT; }
};

// A runtime API call of interest (host timestamps). `name` without CUPTI's version suffix:
// "cudaMalloc", "cudaStreamSynchronize", "cudaGraphLaunch", "cudaLaunchKernel", "cudaMemcpy".
struct ApiEvent {
  std::string name;
  uint64_t start_ns = 0, end_ns = 0;
  uint32_t correlation = 0;    // matches KernelEvent::correlation of the kernels it launched
};

// An NVTX range (push/pop or start/end), host timestamps. `domain` is empty for the default one.
struct RangeEvent {
  std::string name;
  std::string domain;
  uint64_t start_ns = 0, end_ns = 0;
};

// Launch-cost hints of one kernel (fathom's own launchers, src/cuda/pdl.cuh launch_cost_hint),
// summed over the launches noted during the profiled decode steps. Only the means per launch are
// meaningful: a step captured into a CUDA graph notes its launches once more at capture, and a
// replayed graph notes none, so per-step figures come from the kernel records' counts. Noted
// during decode steps, they are applied to the phases whose name starts with "decode"; those
// noted during the prefill (Trace::prefill_costs, the prefill's own shapes) to the prefill.
struct KernelCost {
  std::string name;            // kernel_display_name of the demangled name
  int64_t launches = 0;        // launches noted
  int64_t hinted = 0;          // of them with a hint (bytes or flops > 0)
  double bytes = 0, flops = 0; // summed over the hinted launches
  double bytes_per_launch() const { return hinted > 0 ? bytes / double(hinted) : 0; }
  double flops_per_launch() const { return hinted > 0 ? flops / double(hinted) : 0; }
};

// The limits theoretical occupancy needs (cudaDeviceProp, or CUPTI's device record). 0: unknown.
struct DeviceLimits {
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  int warp_size = 32;
  int max_threads_per_sm = 0;
  int max_blocks_per_sm = 0;
  int regs_per_sm = 0;
  int regs_per_block = 0;
  int smem_per_sm = 0;             // bytes, the largest shared-memory carveout
  int smem_per_block_optin = 0;    // bytes, the most one block may opt in to
  int reserved_smem_per_block = 0; // bytes the driver reserves per block (1 KiB on sm_80+)
  bool known() const { return max_threads_per_sm > 0 && regs_per_sm > 0 && smem_per_sm > 0 && warp_size > 0; }
};

// What caps the blocks per SM. NONE: the launch cannot run (too many registers/threads/smem).
enum class OccupancyLimiter { WARPS, BLOCKS, REGISTERS, SHARED_MEMORY, NONE };
const char* occupancy_limiter_name(OccupancyLimiter l);  // "warps" "blocks" "registers" "smem" "none"

struct Occupancy {
  int blocks_per_sm = 0;       // resident blocks per SM (the minimum of the four limits)
  int warps_per_sm = 0;        // blocks_per_sm * warps per block
  double pct = 0;              // warps_per_sm over the SM's maximum, percent
  OccupancyLimiter limiter = OccupancyLimiter::NONE;
  int limit_warps = 0, limit_blocks = 0, limit_regs = 0, limit_smem = 0;  // blocks per SM each allows
};

// Theoretical occupancy of a launch, the CUDA occupancy calculator's formula (cuda_occupancy.h,
// sm_70 and later): registers are allocated per warp in units of 256 and split over 4 SM
// sub-partitions; shared memory per block is static + dynamic + the driver's reserve, rounded up
// to 128 bytes; the SM's carveout is the largest. Unknown limits give an all-zero result.
Occupancy theoretical_occupancy(const DeviceLimits& d, int threads_per_block, int registers_per_thread,
                                int smem_per_block);

// The start of a token step (host time). The step runs until the next marker or the trace end.
struct StepMark {
  uint64_t t_ns = 0;
  std::string phase;  // "prefill", "decode", "decode-first" (the step that captures the graph)
};

struct Trace {
  // What was profiled (any may be empty / 0).
  std::string source;          // "engine" (fathom profile -m) or "inject" (fathom profile -- CMD)
  std::string device;          // GPU name
  std::string model;           // model path, or the command line
  int64_t n_prompt = 0;        // prompt tokens (engine mode)
  int64_t n_decode = 0;        // decode steps (engine mode)
  double weight_bytes = 0;     // bytes a decode step must read at least once (the weights)
  double read_gbps = 0;        // measured streaming-read ceiling of the GPU (gpu_info.h); 0: unknown
  double bf16_tflops = 0;      // measured bf16 tensor-core GEMM ceiling (gpu_info.h); 0: unknown
  DeviceLimits limits;         // for theoretical occupancy; unknown (zeros) in old traces
  uint64_t begin_ns = 0, end_ns = 0;   // the profiled window
  uint64_t dropped_records = 0;        // CUPTI records lost (buffers full): the figures undercount

  std::vector<KernelEvent> kernels;
  std::vector<MemcpyEvent> memcpys;
  std::vector<MemsetEvent> memsets;
  std::vector<SyncEvent> syncs;
  std::vector<ApiEvent> api;
  std::vector<StepMark> steps;
  std::vector<RangeEvent> ranges;
  std::vector<KernelCost> costs;   // fathom's launch-cost hints (engine mode), by kernel name
  std::vector<KernelCost> prefill_costs;  // the same, noted during the prefill (JSON "prefill_costs")
};

// JSON: {"source":..., "kernels":[{...}], ...}; every field above, named as in the structs.
std::string trace_to_json(const Trace& t, int indent = -1);
// Throws fathom::Error naming the first missing or mistyped field.
Trace trace_from_json(const std::string& text);
// A file written by `fathom profile --json` ({"trace":..., "summary":...}), by the injection
// library (a bare trace) or by trace_to_json. Throws naming the file on I/O or parse errors.
Trace read_trace_file(const std::string& path);

// ---- analysis ---------------------------------------------------------------------------------

// What a kernel does, from its name: cuBLAS/cuBLASLt/CUTLASS, FlashAttention/FlashInfer, ggml,
// PyTorch and fathom's own kernels (src/cuda/*.cu). The first family that matches wins, in this
// order: sampling, attention, GEMM/GEMV, quant/dequant, norm, copy/memset, elementwise, other
// (so "flash::...cutlass..." is attention, "dequantize_mul_mat_vec" a GEMV).
enum class KernelCategory { SAMPLING, ATTENTION, GEMM, QUANT, NORM, COPY, ELEMENTWISE, OTHER };
constexpr int kNumKernelCategories = 8;
const char* kernel_category_name(KernelCategory c);  // "sampling" "attention" "gemm" "quant" ...
KernelCategory classify_kernel(const std::string& name);  // demangled name, with or without params

// Kernels that only move or re-lay-out data, by name (case-insensitive): transposes, permutes,
// contiguous copies, dtype conversions, concatenations, cuBLAS/cuBLASLt reformat and layout
// kernels; an embedding gather is a real op. The doctor's "layout" rule and the profile's prefill
// section both use it.
bool is_layout_kernel(const std::string& name);
// cuBLAS's separate split-K reduction pass ("splitKreduce_kernel"): a second trip through memory
// for a GEMM's partial sums. Flagged next to the layout kernels in the prefill section.
bool is_splitk_reduce_kernel(const std::string& name);

struct CategoryStat {
  KernelCategory category = KernelCategory::OTHER;
  int64_t count = 0;
  double total_us = 0;
  double pct_kernel = 0;       // of the kernel time of the same scope
};

struct KernelStat {
  std::string name;            // demangled, parameter list dropped (kernel_display_name)
  int64_t count = 0;
  double total_us = 0, mean_us = 0, min_us = 0, max_us = 0;
  double pct_gpu = 0;          // of the kernel time of the same scope
  int32_t grid[3] = {1, 1, 1}, block[3] = {1, 1, 1};   // of the first launch
  int32_t registers = 0, smem = 0;                     // of the first launch (static + dynamic)
  KernelCategory category = KernelCategory::OTHER;
  // From the trace's launch-cost hints (KernelCost): bytes and flops of every call in the scope
  // (per-launch mean x count). has_cost false: no hint, the figures below stay 0.
  bool has_cost = false;
  double bytes = 0, flops = 0;
  double gbps = 0, tflops = 0;         // achieved: bytes / total time, flops / total time
  double pct_bw = 0, pct_flops = 0;    // of the trace's read_gbps / bf16_tflops ceilings (0: unknown)
  // Theoretical occupancy of the first launch (trace's DeviceLimits; zeros when unknown) and how
  // many full waves of blocks its grid makes over the SMs.
  Occupancy occupancy;
  double waves = 0;
};

// Per NVTX range name (a trailing number becomes "N": "decode step 12" -> "decode step N"): what
// happened inside the ranges, per range. API calls (launches, syncs, allocations) belong to the
// range holding their host start; kernels to the range holding their launching API call (CUPTI
// correlation id), else, like copies, to the one holding their GPU start.
struct RangeStat {
  std::string name;
  int64_t count = 0;
  double total_us = 0, mean_us = 0;    // host duration
  int64_t kernels = 0;
  double kernel_us = 0;
  int64_t launch_calls = 0, graph_launches = 0, host_syncs = 0, allocs = 0;
  int64_t copies = 0;
  double copy_bytes = 0;
  double bytes = 0;                    // hinted bytes of the range's kernels (KernelCost)
  double per_range(double v) const { return count > 0 ? v / double(count) : 0; }
};

// Longest idle time between two kernels of a stream that still counts as a launch gap, us.
constexpr double kLongGapUs = 1000;

// Figures of one scope (a phase, or the whole run). "Per step" divides by n_steps.
struct PhaseStats {
  std::string phase;
  int64_t n_steps = 0;
  double wall_us = 0;          // summed step durations (whole run: end - begin)
  double median_step_us = 0;
  double kernel_us = 0;        // summed kernel durations (overlapping kernels count twice)
  double busy_us = 0;          // union of kernel, memcpy and memset intervals, clipped to the steps
  double busy_pct = 0;         // busy_us / wall_us * 100
  int64_t kernels = 0;
  // Idle time between consecutive operations (kernels, copies, memsets) of one stream, inside a
  // step: the launch overhead the GPU sees. The host's turn between steps is not a gap.
  double gap_us = 0;
  double gap_pct = 0;          // gap_us / wall_us * 100
  double median_gap_us = 0;
  // Gaps longer than kLongGapUs are the host doing something else (file I/O, tokenization, a
  // wait), not launch overhead: counted here instead of in gap_us.
  int64_t long_gaps = 0;
  double long_gap_us = 0;
  int64_t host_syncs = 0;      // syncs that block the host + blocking cudaMemcpy/cudaMemset calls
  double host_sync_us = 0;     // time the host spent in them
  int64_t h2d = 0, d2h = 0, d2d = 0, other_copies = 0, pageable_copies = 0;
  double h2d_bytes = 0, d2h_bytes = 0, d2d_bytes = 0;
  double copy_us = 0;          // summed memcpy durations
  int64_t memsets = 0;
  int64_t allocs = 0;          // cudaMalloc/cudaFree/cudaMallocHost/cudaHostAlloc/cudaFreeHost/...Async
  double alloc_us = 0;         // host time spent in them
  int64_t graph_launches = 0;  // cudaGraphLaunch calls
  int64_t launch_calls = 0;    // kernel launch API calls (cudaLaunchKernel and friends)
  double launch_us = 0;        // host time in launch calls and cudaGraphLaunch
  // Kernels with launch-cost hints (decode phases of engine traces), every kernel of the scope.
  double hinted_bytes = 0, hinted_flops = 0, hinted_us = 0;
  std::vector<KernelStat> top_kernels;  // by total time, descending
  std::vector<CategoryStat> categories; // categories with kernels, by total time, descending

  double per_step(double v) const { return n_steps > 0 ? v / double(n_steps) : 0; }
};

// The prefill section: present when the trace has an NVTX range named "prefill" (fathom's engine
// wraps every prefill call in one). Its scope is the "prefill" phase: each prefill range's start
// to the next step range's start (or the window's end), kernels by GPU start, as in the phases.
struct PrefillStats {
  bool present = false;
  int64_t ranges = 0;          // "prefill" ranges
  int64_t tokens = 0;          // Trace::n_prompt (0: unknown, e.g. a traced program)
  double wall_us = 0;          // summed host durations of the prefill ranges
  double tokens_per_s = 0;     // tokens / wall_us (0 when tokens is unknown)
  int64_t kernels = 0;
  double kernel_us = 0;        // summed kernel durations
  double busy_us = 0;          // union of kernel, memcpy and memset intervals
  // GPU idle between the prefill's operations (kernels, copies, memsets, any stream): from its
  // first operation's start to its last one's end, per range, the time nothing ran. Idle
  // stretches over kLongGapUs are host work (e.g. building GEMM plans on a first pass): counted
  // in idle_us and again in long_idle_*.
  double gpu_span_us = 0;
  double idle_us = 0;
  int64_t idle_gaps = 0;       // idle stretches (> 0 ns)
  double median_idle_us = 0, max_idle_us = 0;
  int64_t long_idle_gaps = 0;
  double long_idle_us = 0;
  // Kernels with launch-cost hints noted during the prefill (Trace::prefill_costs).
  double hinted_bytes = 0, hinted_flops = 0, hinted_us = 0;
  // Every kernel of the prefill by name, by total time, descending (not cut to top_n); pct_gpu is
  // the share of the prefill's kernel time; the hints give gbps / tflops where they exist.
  std::vector<KernelStat> kernel_list;
  // Layout-change kernels (is_layout_kernel) and split-K reductions among them, by total time.
  std::vector<KernelStat> layout_kernels;
  double layout_us = 0;
  double layout_pct = 0;       // of the prefill's kernel time
};

struct TraceAnalysis {
  // Phase "all": the whole window as one interval; with markers n_steps is their number and
  // median_step_us the mean step (wall / n_steps), else n_steps = 1.
  PhaseStats overall;
  std::vector<PhaseStats> phases;   // in order of first appearance; empty without markers
  const PhaseStats* phase(const std::string& name) const;  // nullptr when absent
  std::string step_source;          // "nvtx" (fathom-named NVTX ranges), "markers" or "" (none)
  std::vector<RangeStat> ranges;    // by total host time, descending; empty without NVTX ranges
  PrefillStats prefill;             // present only with an NVTX range "prefill"
  // The decode phase when present (fathom engine traces), else the whole run.
  const PhaseStats& steady() const;
};

// `top_n` kernels per scope (0: all).
TraceAnalysis analyze(const Trace& t, size_t top_n = 15);

// The window a trace covers, [begin_ns, end_ns): as recorded (Trace::begin_ns / end_ns), else the
// span of its events (the end one past the last event's end). analyze() and the doctor use it.
struct TraceWindow {
  uint64_t begin_ns = 0, end_ns = 0;
};
TraceWindow trace_window(const Trace& t);

// Step markers from NVTX ranges named "prefill", "decode", "decode step N" (any domain): one per
// range, at its start; the first decode range after a prefill (or the first of all) is phase
// "decode-first", like the engine profile's graph-capturing step. Empty when none match.
std::vector<StepMark> step_marks_from_ranges(const std::vector<RangeEvent>& ranges);

// Drops the parameter list and a leading "void " from a demangled name:
// "void gemv_kernel<(GgmlType)12>(GemvParams)" -> "gemv_kernel<(GgmlType)12>".
std::string kernel_display_name(const std::string& demangled);

// The human report: per phase, then the top kernels table of the steady phase; last, with a
// "prefill" NVTX range, the prefill section (tok/s, every kernel, GPU idle, layout kernels).
std::string format_report(const Trace& t, const TraceAnalysis& a);
// {"phases":[...], "overall":{...}}: the numbers of format_report; "prefill":{...} only when the
// trace has a "prefill" NVTX range.
std::string analysis_to_json(const TraceAnalysis& a, int indent = 2);

// The Chrome Trace Event format (Perfetto, chrome://tracing): {"traceEvents":[...]}. One "X"
// event per kernel, memcpy and memset (pid 0 = the GPU, tid = stream), one per host runtime API
// call (pid 1, tid 1) and per step (pid 1, tid 0, named by phase); "M" events name the processes
// and threads. ts/dur in us from the start of the window.
std::string trace_to_chrome_json(const Trace& t, int indent = -1);

// ---- recording (CUDA builds) ----------------------------------------------------------------

// CUPTI's activity buffers and callbacks are process-wide, so at most one Profiler records at a
// time (a second start() throws). Without CUDA in the build, start() throws "built without CUDA".
class Profiler {
 public:
  Profiler();
  ~Profiler();  // stops if still recording
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  // Also records NVTX ranges; NVTX calls reach CUPTI only when NVTX_INJECTION64_PATH names
  // libcupti before the process's first NVTX call (enable_nvtx_injection below).
  void start();
  // Marks the start of a token step of `phase` at the current host time.
  void mark_step(const std::string& phase);
  // Flushes CUPTI's buffers and stops recording.
  void stop();
  // The recorded trace (moves it out; call after stop()).
  Trace take();

  // True when this build can record; otherwise false with the reason.
  static bool available(std::string* why = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The path of the CUPTI library this process loaded ("" without CUPTI).
std::string cupti_library_path();
// Sets NVTX_INJECTION64_PATH to cupti_library_path() unless it is already set, so NVTX ranges
// reach CUPTI. Must run before the process's first NVTX call. Returns the value in effect.
std::string enable_nvtx_injection();

// Bytes a decode step reads at least once: every tensor, except that an untied token embedding
// is only gathered one row per token (so it counts one row).
double decode_weight_bytes(const Model& model);

// `fathom profile -m`: loads a CUDA engine, then records the prefill of `prompt` (one step) and
// `n_decode` greedy decode steps (the first one, which captures the CUDA graph, as phase
// "decode-first"). Fills the trace's metadata; measures (or reads cached) GPU ceilings when
// `ceilings` is set. Throws without CUDA or without a device.
struct EngineProfileOptions {
  int n_decode = 32;
  bool use_graphs = true;
  bool ceilings = true;
  bool verbose = false;
  uint64_t synthetic_seed = 0;  // != 0: a synthetic model (include/fathom/synthetic.h), weights filled on the GPU
  bool layer_ranges = false;    // NVTX "layer N" ranges inside each step (meaningful with use_graphs off)
};
Trace profile_engine(const Model& model, const std::string& model_path,
                     const std::vector<int32_t>& prompt, const EngineProfileOptions& opt);

}  // namespace fathom
