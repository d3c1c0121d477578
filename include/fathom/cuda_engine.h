// The CUDA engine: one object per loaded model that owns every GPU resource the model needs.
//
//   weights   one device arena holding the GGUF data section as-is (Q4_K stays Q4_K);
//   KV cache  fp16, paged: blocks of `kv_block_size` tokens, a block table per sequence
//             (fathom::KvBlockAllocator on the host, mirrored into a device buffer);
//   workspace activations for at most `max_batch` decode tokens or `ubatch` prefill tokens,
//             sized at load, reset between steps, never reallocated;
//   streams, cuBLASLt handle + workspace, and the captured CUDA graphs of the decode step.
//
// Two engines in one process share nothing; destroying one frees all it took. After load, a decode
// step moves only token ids in and sampled ids out (no cudaMalloc, no other copy, no sync besides
// reading the sampled id). Without CUDA in the build, or without a device, the constructor throws
// a fathom::Error that says so.
//
// This header needs no CUDA headers: the device state lives behind a pointer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fathom/generate.h"
#include "fathom/model.h"

namespace fathom {

struct CudaEngineOptions {
  int device = 0;
  // Tokens of KV cache per sequence. 0: as many as fit in the free device memory after the
  // weights and the workspace (keeping `reserve_bytes` free), capped at the model's context.
  int64_t n_ctx = 0;
  int max_batch = 1;            // sequences decoded together (decode_batch)
  int kv_block_size = 16;       // tokens per KV block
  int64_t ubatch = 0;           // prefill tokens per forward chunk; 0 = auto (<= 512)
  size_t reserve_bytes = size_t(512) << 20;  // device memory left free when sizing the KV cache
  bool use_graphs = true;       // capture the decode step in a CUDA graph
  bool verbose = false;         // print the memory breakdown and load speed to stderr
  // NVTX range "layer N" around each layer's kernels (fathom profile --layer-ranges). Host-side
  // markers: they bracket the launches, so they time layers only without graphs (a captured
  // graph replays with no per-layer markers).
  bool nvtx_layers = false;
  bool progress = true;         // progress bar on stderr while uploading files over 1 GB
  // Nonzero: fill the weights with random blocks generated on the device from this seed instead
  // of reading the file (fathom bench --synthetic: full-size shapes without a file).
  uint64_t synthetic_seed = 0;
};

// Device memory the engine took, bytes.
struct CudaMemoryReport {
  size_t weights = 0;           // the weight arena
  size_t kv_cache = 0;          // K and V for every layer, all blocks
  size_t workspace = 0;         // activations + cuBLASLt workspace + small buffers
  size_t free_before = 0;       // cudaMemGetInfo before load
  size_t free_after = 0;        // and after
  size_t total = 0;             // device total
  int64_t kv_tokens = 0;        // n_blocks * block_size
  int64_t n_ctx = 0;            // per sequence
  int64_t ubatch = 0;
  std::string describe() const; // multi-line breakdown, as printed with -v
};

// A snapshot of one activation during a traced eval (check mode), copied back after the op.
struct CudaTraceEntry {
  int64_t layer = -1;           // -1 before the first block, n_layer after the last
  std::string op;               // op boundary name, as the CPU reference's hook (CpuHook) names it
  int64_t n_tokens = 0;
  int64_t n = 0;
  std::vector<float> values;    // (n_tokens, n) row-major: every token of the last prompt chunk
  bool all_finite = true;       // no NaN/Inf in values
  const float* last_row() const { return values.data() + (n_tokens - 1) * n; }
};
using CudaTraceFn = std::function<void(const CudaTraceEntry&)>;

// True when this build has CUDA and a device is usable; otherwise false with the reason.
bool cuda_engine_available(std::string* why = nullptr);

class CudaEngine final : public Engine {
 public:
  // Uploads the weights and sizes everything. Throws fathom::Error on an unsupported weight type
  // or architecture, or when the device lacks memory (naming needed and free bytes).
  // `model` must outlive the engine only until the constructor returns (weights are copied).
  CudaEngine(const Model& model, const CudaEngineOptions& options = {});
  ~CudaEngine() override;
  CudaEngine(const CudaEngine&) = delete;
  CudaEngine& operator=(const CudaEngine&) = delete;

  // ---- Engine interface (one sequence, slot 0) ------------------------------------------------
  const char* name() const override { return "cuda"; }
  int64_t n_vocab() const override;
  int64_t n_ctx() const override;
  int64_t n_past() const override;
  // logits_last may be nullptr (no copy back).
  void eval(const int32_t* tokens, int64_t n, float* logits_last) override;
  void truncate(int64_t n) override;

  // Greedy on the GPU: evaluates tokens like eval() and returns argmax of the last token's logits
  // (lowest id on a tie). Only the id is copied back.
  int32_t eval_greedy(const int32_t* tokens, int64_t n);

  // Sampling on the GPU (top-k, temperature, top-p, min-p; launch_sample): evaluates tokens like
  // eval() and draws the next token from the last token's logits; only the id is copied back.
  // Seeded per engine and sequence: the same seed and tokens give the same draws. temp <= 0 is
  // greedy. Repetition/frequency/presence penalties need the host sampler (eval() + Sampler) and
  // are refused with a fathom::Error.
  int32_t eval_sample(const int32_t* tokens, int64_t n, const SamplerParams& params);

  // ---- several sequences ----------------------------------------------------------------------
  // Slot 0 is the Engine-interface sequence and always exists. Throws naming max_batch when full.
  int32_t add_sequence();
  void remove_sequence(int32_t seq);
  int64_t seq_len(int32_t seq) const;
  // Prefill/decode of one sequence; logits_last (n_vocab) may be nullptr. Returns the argmax.
  int32_t eval_seq(int32_t seq, const int32_t* tokens, int64_t n, float* logits_last);
  // One decode step of n sequences: tokens[i] is appended to seqs[i]; out_ids[i] gets the argmax
  // of its logits; logits (n, n_vocab) is filled when not nullptr. Replays a captured graph.
  void decode_batch(const int32_t* seqs, const int32_t* tokens, int n, int32_t* out_ids,
                    float* logits = nullptr);

  // ---- diagnostics ----------------------------------------------------------------------------
  // While fn is set, evals run without graphs and call fn at each op boundary with the op's output
  // (copied back synchronously; only the last chunk of a long prompt is reported). With
  // softmax_sums, each layer's attention is run a second time against a V cache of ones, so its
  // output is the softmax row sum of every (token, head) (reported as op "softmax_row_sum";
  // 1 for a query that sees any key). An empty fn turns tracing off.
  void set_trace(CudaTraceFn fn, bool softmax_sums = false);
  // Device time of the last eval / eval_seq / eval_greedy / eval_sample / decode_batch call, from
  // events recorded on the engine's stream around its work (milliseconds).
  double last_gpu_ms() const;
  const CudaMemoryReport& memory() const;
  const ModelConfig& config() const;
  std::string device_name() const;

 private:
  int32_t eval_seq_untimed(int32_t seq, const int32_t* tokens, int64_t n, float* logits_last);
  int32_t eval_sample_untimed(const int32_t* tokens, int64_t n, const SamplerParams& sp);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fathom
