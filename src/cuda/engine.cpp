// The CUDA engine: load (plan memory, upload weights), the forward pass over the kernels of
// src/cuda/ops.cuh, the paged KV cache, and the decode step as a replayed CUDA graph.
//
// Per layer, the same steps as the CPU reference (src/cpu/cpu_model.cpp), with two fusions:
//   h = rms_norm(x [+= pending residual]) * attn_norm   (gemma3's post-FFN output is added here)
//   q,k,v = h @ W^T (+bias);  q,k = per-head rms_norm (qwen3, gemma3)
//   rope(q,k) and k,v -> paged fp16 cache           (one launch_rope_kv)
//   att = attention(q, cache)
//   gemma3: a = rms_norm(att @ Wo^T) * post_attn_norm, then x += a fused into the FFN norm
//   else:   x += att @ Wo^T (the matmul's residual)
//   h = rms_norm(x) * ffn_norm;  g = glu(h @ Wg^T, h @ Wu^T)
//   gemma3: f = rms_norm(g @ Wd^T) * post_ffn_norm, added to x by the next norm
//   else:   x += g @ Wd^T
// then h = rms_norm(x) * output_norm, logits = h @ Wout^T (softcap), argmax/sample on the GPU.
//
// Activations are fp32 (n_rows, width) in one workspace arena planned at load for
// rows = max(ubatch, max_batch). A prompt is evaluated in chunks of `ubatch` tokens.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <map>

#include "cuda/arena.h"
#include "cuda/cuda_check.cuh"
#include "cuda/matmul_gemv_f16.cuh"
#include "cuda/matmul_gemv_q8.cuh"
#include "cuda/matmul_mma_q8.cuh"
#include "cuda/ops.cuh"
#include "cuda/prefill_plan.h"
#include "cuda/synthetic.cuh"
#include "diag/nvtx_range.h"
#include "fathom/cpu_ops.h"
#include "fathom/cuda_engine.h"
#include "fathom/error.h"
#include "fathom/kv_blocks.h"
#include "fathom/quant.h"

namespace fathom {

using namespace fathom::cuda;

namespace {

// Matmuls of 2..16 tokens (decode batches, short prefill chunks) of the types it handles go to
// the tensor-core kernel (matmul_mma_q8.cu). Measured on the H200 (docs/perf/mma_q8.md), synthetic
// llama3-8b Q4_K_M: batch 2/4/8 452/883/1166 tok/s against 401/533/606 on the dp4a GEMV; batch 1
// stays on the GEMV (faster at 1 token on most shapes); at 32 tokens the int8 kernel lost to the
// dequantized-bf16 cuBLASLt path (2292 against 1922 tok/s), so above 16 tokens only Q4_K comes
// here, through its bf16 variant (mma_q8_bf16: 3559 against 2257 tok/s at batch 32), and only for
// matrices the engine would otherwise dequantize to bf16 (bf16_ok: forward()'s bf16_ok, the
// GemmContext's dequant threshold): the variant's numerics are of that path's class, so smaller
// matrices (tiny models, whose tiled GEMM is more precise) keep theirs. The caller passes the same
// flag as MmaQ8Params::allow_bf16, which decides whether 8..16-token launches take the variant.
// FATHOM_MMQ_MIN_TOKENS / FATHOM_MMQ_MAX_TOKENS move the ends for every type (A/B runs, up to 64),
// FATHOM_MMQ=0 switches the path off.
bool mmq_route(GgmlType type, int64_t n, int64_t cols, bool bf16_ok) {
  auto env = [](const char* name, int64_t dflt) {
    const char* e = std::getenv(name);
    return e && *e ? std::max<int64_t>(1, std::atoll(e)) : dflt;
  };
  static const int64_t min_tokens = env("FATHOM_MMQ_MIN_TOKENS", 2);
  static const int64_t max_tokens = std::min<int64_t>(env("FATHOM_MMQ_MAX_TOKENS", 0), kMmaQ8MaxTokens);
  const int64_t hi = max_tokens > 0 ? max_tokens : bf16_ok && mma_q8_bf16(type, n) ? kMmaQ8MaxTokens : 16;
  return n >= min_tokens && n <= hi && mma_q8_supports(type, n, cols);
}

// FATHOM_GEMV_HALF_GROUPED=0: F16/BF16 decode keeps one GEMV per matrix and the stand-alone
// norm and glu kernels (A/B runs); read per call.
bool half_grouped_enabled() {
  const char* e = std::getenv("FATHOM_GEMV_HALF_GROUPED");
  return !(e && std::strcmp(e, "0") == 0);
}

// Decode attention with the RoPE + KV-cache store fused in (AttentionParams::rope).
// FATHOM_FUSED_ROPE=0 keeps the stand-alone rope kernel (A/B runs, tests); read per call.
bool fused_rope_enabled() {
  const char* e = std::getenv("FATHOM_FUSED_ROPE");
  return !(e && std::strcmp(e, "0") == 0);
}

#define LT_CHECK(expr)                                                                       \
  do {                                                                                       \
    cublasStatus_t s_ = (expr);                                                              \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                                         \
      ::fathom::fail("cuBLASLt error ", static_cast<int>(s_), " in `", #expr, "` at ",      \
                     __FILE__, ":", __LINE__);                                               \
  } while (0)

// A weight matrix on the device, in its GGUF block format.
struct DevMat {
  GgmlType type = GgmlType::F32;
  const void* w = nullptr;
  int64_t rows = 0, cols = 0;
  int64_t ld = 0;  // elements between rows when a column slice of a wider matrix (0: cols)
  explicit operator bool() const { return w != nullptr; }
};

// Rows [r0, r0 + n) of m.
DevMat row_slice(const DevMat& m, int64_t r0, int64_t n) {
  DevMat s = m;
  s.w = static_cast<const uint8_t*>(m.w) + size_t(r0) * ggml_row_bytes(m.type, m.ld > 0 ? m.ld : m.cols);
  s.rows = n;
  return s;
}

// Columns [c0, c0 + n) of m (c0 a multiple of the type's block size): rows keep their stride.
DevMat col_slice(const DevMat& m, int64_t c0, int64_t n) {
  const GgmlTypeTraits& t = ggml_type_traits(m.type);
  DevMat s = m;
  s.w = static_cast<const uint8_t*>(m.w) + size_t(c0 / t.block_elems) * t.block_bytes;
  s.cols = n;
  s.ld = m.ld > 0 ? m.ld : m.cols;
  return s;
}

struct DevLayer {
  DevMat wq, wk, wv, wo, ffn_gate, ffn_up, ffn_down;
  const float* attn_norm = nullptr;       // (n_embd)
  const float* bq = nullptr;              // (q_dim) qwen2
  const float* bk = nullptr;
  const float* bv = nullptr;
  const float* q_norm = nullptr;          // (head_dim)
  const float* k_norm = nullptr;
  const float* post_attn_norm = nullptr;  // gemma3 (n_embd)
  const float* ffn_norm = nullptr;
  const float* post_ffn_norm = nullptr;
  float rope_base = 10000.0f, rope_scale = 1.0f;
  bool rope_factors = false;              // llama3 frequency factors apply to this layer
  int32_t sliding_window = 0;
  void* k_cache = nullptr;                // (n_blocks, n_head_kv, block_size, head_dim) fp16
  void* v_cache = nullptr;
};

// Activation buffers, all in the workspace arena. rows = max(ubatch, max_batch).
struct Activations {
  float* x = nullptr;       // (rows, n_embd) residual stream
  float* h = nullptr;       // (rows, n_embd) normalised input of a block
  float* a = nullptr;       // (rows, n_embd) attention / FFN output before the residual add
  float* q = nullptr;       // (rows, n_head * head_dim); in a half pass (PrefillPlanner::half_pass)
                            // the upper half of h / att's buffer, see forward()
  float* k = nullptr;       // (rows, n_head_kv * head_dim)
  float* v = nullptr;       // (rows, n_head_kv * head_dim)
  float* att = nullptr;     // (rows, n_head * head_dim)
  float* gate = nullptr;    // (rows, ffn_slice): (T, n_ff) whole, or one column slice (T, <= ffn_slice)
  float* up = nullptr;      // (rows, ffn_slice)
  float* logits = nullptr;  // (max_batch, n_vocab)
  void* attn_ws = nullptr;
  size_t attn_ws_bytes = 0;
  void* argmax_ws = nullptr;
  void* gemm_scratch = nullptr;   // x in 16-bit for the cuBLASLt paths
  size_t gemm_scratch_bytes = 0;
  void* gemm_dequant = nullptr;   // bf16 chunk of a quantized weight's rows (GemmContext::dequant)
  size_t gemm_dequant_bytes = 0;
  void* lt_ws = nullptr;
  size_t lt_ws_bytes = 0;
  void* mmq_ws = nullptr;         // split-K partials and tile counters of launch_mma_q8 (zeroed once)
  size_t mmq_ws_bytes = 0;
  float* q_full = nullptr;        // q / a of full passes: their own buffer, right after the dequant scratch
  float* q_half = nullptr;        // q / a of half passes: h + half_rows rows
  uint64_t* rng_counter = nullptr;  // (max_seqs)
  // Step inputs: one header copied host -> device per step (layout below), and block tables.
  int32_t* in = nullptr;          // header: tokens (R) | pos (R) | slots (R) | seq_start (B+1) | kv_len (B)
  int32_t* out_ids = nullptr;     // (max_batch)
  int32_t* batch_table = nullptr; // (max_batch, max_blocks_per_seq) rows of the decoded sequences
  int32_t* seq_table = nullptr;   // (max_seqs, max_blocks_per_seq) mirror of the allocator
};

bool is_matrix_type_ok(GgmlType t) { return matmul_supports(t); }

}  // namespace

// ------------------------------------------------------------------------------------------------

std::string CudaMemoryReport::describe() const {
  return str_cat("  weights    ", format_bytes(weights), "\n", "  KV cache   ",
                 format_bytes(kv_cache), " (", kv_tokens, " tokens, ", n_ctx,
                 " per sequence, fp16)\n", "  workspace  ", format_bytes(workspace),
                 " (prefill chunks of ", ubatch, " tokens; ",
                 weights ? str_cat(int(std::lround(100.0 * workspace / weights)), "% of weights")
                         : std::string("-"),
                 ")\n", "  total      ", format_bytes(weights + kv_cache + workspace), "; free ",
                 format_bytes(free_before), " -> ", format_bytes(free_after), " of ",
                 format_bytes(total), "\n");
}

bool cuda_engine_available(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess || n == 0) {
    cudaGetLastError();
    if (why)
      *why = err != cudaSuccess ? str_cat("no CUDA device (", cudaGetErrorString(err), ")")
                                : std::string("no CUDA device");
    return false;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess || prop.major < 8) {
    cudaGetLastError();
    if (why) *why = str_cat("GPU ", prop.name, " has compute capability ", prop.major, ".",
                            prop.minor, "; fathom needs 8.0 or newer");
    return false;
  }
  return true;
}

// The plan's fields (cfg, opt, n_ctx, ubatch, rows, max_batch, head_dim, ffn_slice, the dequant
// scratch's matrices) and arithmetic live in PrefillPlanner (prefill_plan.h).
struct CudaEngine::Impl : PrefillPlanner {
  CudaMemoryReport mem;
  std::string device_name;
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  GemmContext gemm;
  GemmContext gemm_half;  // half passes: gemm with the dequant scratch over the q / a buffer too

  DeviceArena weights_arena, kv_arena, work_arena;
  PinnedBuffer host_in, host_out;  // step header in; ids out
  InLayout in_layout;

  DevMat tok_embd, output;
  const float* output_norm = nullptr;
  const float* freq_factors = nullptr;  // (n_rot/2) device
  std::vector<DevLayer> layers;
  Activations act;

  std::unique_ptr<KvBlockAllocator> kv;
  std::vector<int64_t> seq_len;        // per slot: tokens in the cache
  uint64_t seq_table_version = ~0ull;  // allocator version the device mirror holds
  uint64_t batch_table_version = ~0ull;
  std::vector<int32_t> batch_table_seqs;

  std::map<int, cudaGraphExec_t> graphs;  // decode step per batch size
  CudaTraceFn trace;
  void* v_ones = nullptr;  // check mode: a layer's V cache full of fp16 1.0 (softmax row sums)
  // Device time of each public call: ev_begin is recorded as it starts, ev_end just before its
  // one synchronisation, so reading the time later needs no extra sync.
  cudaEvent_t ev_begin = nullptr, ev_end = nullptr;
  bool ev_pending = false;
  double last_ms = 0;

  template <typename F>
  auto timed(F&& work) -> decltype(work()) {
    ev_pending = false;
    CUDA_CHECK(cudaEventRecord(ev_begin, stream));
    return work();
  }
  // The end of a timed call's device work; call right before its cudaStreamSynchronize.
  void mark_end() {
    CUDA_CHECK(cudaEventRecord(ev_end, stream));
    ev_pending = true;
  }

  struct DeviceGuard {
    int prev = 0;
    explicit DeviceGuard(int dev) {
      cudaGetDevice(&prev);
      if (prev != dev) CUDA_CHECK(cudaSetDevice(dev));
    }
    ~DeviceGuard() {
      int cur = 0;
      cudaGetDevice(&cur);
      if (cur != prev) cudaSetDevice(prev);
    }
  };

  Impl(const Model& model, const CudaEngineOptions& o);
  ~Impl();
  void load(const Model& model);
  void release();
  void check_supported(const Model& model);
  void upload_weights(const Model& model, size_t data_bytes);
  void upload_file_data(const Model& model, uint8_t* dev, size_t data_bytes);
  size_t decode_attention_workspace() const;
  void alloc_workspace(bool need_lt);

  // Forward of `n_rows` tokens already described by the device step header, for `n_seqs`
  // sequences. table: device block table (n_seqs, max_blocks_per_seq). max_q_len/max_kv_len:
  // host bounds. lm_rows: rows of h to run the LM head on (the last lm_rows rows).
  void forward(int64_t n_rows, int32_t n_seqs, const int32_t* table, int32_t max_q_len,
               int32_t max_kv_len, int64_t lm_rows, bool last_chunk);
  void emit(int64_t layer, const char* op, const float* dev, int64_t n_rows, int64_t n,
            bool last_chunk);
  void upload_seq_table();
  void prefill(int32_t seq, const int32_t* tokens, int64_t n);
  void decode(const int32_t* seqs, const int32_t* tokens, int n);
  void read_logits(int64_t n_rows, float* host);
  void check_tokens(const int32_t* tokens, int64_t n) const;
};

// ---- load -----------------------------------------------------------------------------------

void CudaEngine::Impl::check_supported(const Model& model) {
  const ModelConfig& c = cfg;
  FATHOM_CHECK(c.head_dim_k == c.head_dim_v, "GPU: head_dim_k ", c.head_dim_k,
               " differs from head_dim_v ", c.head_dim_v, "; the CUDA attention needs them equal");
  FATHOM_CHECK(c.head_dim_k == 64 || c.head_dim_k == 128 || c.head_dim_k == 256, "GPU: head_dim ",
               c.head_dim_k, " is not supported by the CUDA attention (64, 128 or 256)");
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const cpu::RopeParams rp = cpu::rope_params_for_layer(c, il, nullptr);
    FATHOM_CHECK(rp.ext_factor == 0.0f && rp.attn_factor == 1.0f,
                 "GPU: YaRN rope scaling (ext_factor ", rp.ext_factor, ", attn_factor ",
                 rp.attn_factor, ") is not supported by the CUDA rope kernel");
  }
  const ModelWeights& w = model.weights;
  auto check_mat = [&](const WeightRef& r, const char* what) {
    if (!r) return;
    FATHOM_CHECK(is_matrix_type_ok(r.type()), "GPU: tensor '", r.info->name, "' (", what,
                 ") has type ", ggml_type_name(r.type()),
                 ", which the CUDA matmul does not support");
  };
  check_mat(w.tok_embd, "token embedding");
  check_mat(w.output, "output");
  for (const LayerWeights& l : w.layers) {
    check_mat(l.wq, "attn_q");
    check_mat(l.wk, "attn_k");
    check_mat(l.wv, "attn_v");
    check_mat(l.wo, "attn_output");
    check_mat(l.ffn_gate, "ffn_gate");
    check_mat(l.ffn_up, "ffn_up");
    check_mat(l.ffn_down, "ffn_down");
  }
}

// Split-K partials of the decode attention: the most any decode launch can ask for, over every
// batch size 1..max_batch and kv length up to n_ctx (the split count is not monotonic in either:
// fewer sequences get more splits, and rounding the split length can drop one).
size_t CudaEngine::Impl::decode_attention_workspace() const {
  AttentionParams ap;
  ap.n_head = int32_t(cfg.n_head);
  ap.n_head_kv = int32_t(cfg.n_head_kv);
  ap.head_dim = int32_t(head_dim);
  ap.max_q_len = 1;
  ap.block_size = opt.kv_block_size;
  size_t best = 0;
  for (int n = 1; n <= max_batch; ++n) {
    ap.n_seqs = n;
    ap.n_tokens = n;
    // Splits hold at least 128 keys, so past 128 * (a few thousand blocks) nothing changes.
    for (int64_t kv_len = 128;; kv_len += 128) {
      ap.max_kv_len = int32_t(std::min(kv_len, n_ctx));
      best = std::max(best, attention_workspace_bytes(ap));
      if (kv_len >= n_ctx || kv_len >= 128 * 4096) break;
    }
  }
  return best;
}

void CudaEngine::Impl::alloc_workspace(bool need_lt) {
  const ModelConfig& c = cfg;
  const int64_t qd = c.n_head * head_dim, kvd = c.n_head_kv * head_dim;
  DeviceArena& A = work_arena;
  const int64_t r = rows;
  // Two pairs share a buffer (plan_workspace): h / att (h is dead from the Q/K/V matmuls until
  // the FFN norm rewrites it after the output projection has read att) and q / a (q is dead
  // after the attention; a is the projection output of models with post-norms and traces).
  const int64_t wide = std::max(c.n_embd, qd);
  act.x = A.alloc_n<float>(r * c.n_embd, "x");
  act.h = A.alloc_n<float>(r * wide, "h, att");
  act.att = act.h;
  act.k = A.alloc_n<float>(r * kvd, "k");
  act.v = A.alloc_n<float>(r * kvd, "v");
  act.gate = A.alloc_n<float>(r * ffn_slice, "gate");
  act.up = A.alloc_n<float>(r * ffn_slice, "up");
  act.logits = A.alloc_n<float>(int64_t(max_batch) * c.n_vocab, "logits");
  act.attn_ws_bytes = decode_attention_workspace();
  act.attn_ws = A.alloc(act.attn_ws_bytes, "attention workspace");
  // The mma_q8 workspace: tile counters (zeroed with the arena below, kept zero by the kernel),
  // then the split-K partials, which share their bytes with the dequant scratch when there is
  // one (plan_workspace says why that is safe).
  act.mmq_ws_bytes = mma_q8_workspace_bytes(std::min<int64_t>(r, kMmaQ8MaxTokens),
                                            std::max({2 * c.n_ff, qd + 2 * kvd, c.n_embd}));
  size_t dq = 0;
  plan_workspace(r, need_lt, &dq);
  act.gemm_dequant_bytes = dq;
  if (dq > 0 && share_mmq_partials) {
    act.mmq_ws = A.alloc(kMmaQ8WorkspaceCounterBytes + std::max(dq, act.mmq_ws_bytes - kMmaQ8WorkspaceCounterBytes),
                         "mma_q8 counters + (dequant chunk | split-K partials)");
    act.gemm_dequant = static_cast<uint8_t*>(act.mmq_ws) + kMmaQ8WorkspaceCounterBytes;
  } else {
    act.mmq_ws = A.alloc(act.mmq_ws_bytes, "mma_q8 split-K workspace");
    if (dq > 0) act.gemm_dequant = A.alloc(dq, "gemm dequant chunk");
  }
  // q / a right after the dequant scratch: a half pass (T <= half_rows) keeps q / a in the upper
  // half of h / att's buffer and dequantizes into the scratch and this buffer together
  // (choose_half_pass_slices).
  act.q_full = A.alloc_n<float>(r * wide, "q, a");
  act.q_half = half_rows > 0 ? act.h + half_rows * wide : act.q_full;
  act.q = act.a = act.q_full;
  if (half_rows > 0) {
    const size_t ext = size_t(reinterpret_cast<uint8_t*>(act.q_full + r * wide) -
                              static_cast<uint8_t*>(act.gemm_dequant));
    FATHOM_CHECK(act.gemm_dequant && ext == half_dequant_bytes && 2 * half_rows <= r,
                 "workspace: the half passes' dequant scratch spans ", ext, " bytes, the plan ",
                 half_dequant_bytes);
  }
  act.argmax_ws = A.alloc(argmax_workspace_bytes(max_batch, c.n_vocab), "argmax workspace");
  if (need_lt) {
    const int64_t max_cols = std::max({c.n_embd, ffn_slice, qd});
    act.gemm_scratch_bytes = size_t(r * max_cols * 2);
    act.gemm_scratch = A.alloc(act.gemm_scratch_bytes, "gemm scratch");
    act.lt_ws_bytes = kLtWorkspace;
    act.lt_ws = A.alloc(act.lt_ws_bytes, "cuBLASLt workspace");
  }
  act.rng_counter = A.alloc_n<uint64_t>(opt.max_batch + 1, "rng counters");
  act.in = A.alloc_n<int32_t>(in_layout.size(), "step inputs");
  act.out_ids = A.alloc_n<int32_t>(max_batch, "sampled ids");
  const int64_t mbps = kv->max_blocks_per_seq();
  act.batch_table = A.alloc_n<int32_t>(max_batch * mbps, "batch block table");
  act.seq_table = A.alloc_n<int32_t>(int64_t(kv->max_seqs()) * mbps, "block tables");
  CUDA_CHECK(cudaMemsetAsync(A.base(), 0, A.used(), stream));
}

// Double-buffered upload of the file's data section: read chunk i into pinned buffer i%2 with
// pread while the copy of chunk i-1 runs; an event per buffer says when it may be refilled.
void CudaEngine::Impl::upload_file_data(const Model& model, uint8_t* dev, size_t data_bytes) {
  const GgufFile& file = *model.file;
  const std::vector<GgufTensorInfo>& tensors = file.tensors();
  // The data section as mapped: tensor i starts at data + info.offset.
  const uint8_t* mapped = tensors[0].data - tensors[0].offset;
  const size_t chunk = std::min<size_t>(size_t(64) << 20, align_up(std::max<size_t>(data_bytes, 1), 4096));
  PinnedBuffer staging[2];
  cudaEvent_t done[2];
  for (int b = 0; b < 2; ++b) {
    staging[b].init(chunk, "weight upload staging");
    CUDA_CHECK(cudaEventCreateWithFlags(&done[b], cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(done[b], stream));
  }
  int fd = ::open(file.path().c_str(), O_RDONLY);
  const bool progress = opt.progress && data_bytes > (size_t(1) << 30);
  const auto t0 = std::chrono::steady_clock::now();
  size_t off = 0;
  int i = 0;
  try {
    while (off < data_bytes) {
      const size_t n = std::min(chunk, data_bytes - off);
      const int b = i & 1;
      CUDA_CHECK(cudaEventSynchronize(done[b]));
      uint8_t* dst = static_cast<uint8_t*>(staging[b].data());
      size_t got = 0;
      if (fd >= 0) {
        while (got < n) {
          const ssize_t r = ::pread(fd, dst + got, n - got, off_t(file.data_offset() + off + got));
          if (r <= 0) break;
          got += size_t(r);
        }
      }
      if (got < n) std::memcpy(dst + got, mapped + off + got, n - got);  // in-memory model
      CUDA_CHECK(cudaMemcpyAsync(dev + off, dst, n, cudaMemcpyHostToDevice, stream));
      CUDA_CHECK(cudaEventRecord(done[b], stream));
      off += n;
      ++i;
      if (progress) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const int w = 30, filled = int(w * double(off) / double(data_bytes));
        std::fprintf(stderr, "\rfathom: uploading weights [%.*s%*s] %.2f / %.2f GB  %.2f GB/s", filled,
                     "==============================", w - filled, "", off / 1e9, data_bytes / 1e9,
                     s > 0 ? off / 1e9 / s : 0.0);
      }
    }
    CUDA_CHECK(cudaStreamSynchronize(stream));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    for (int b = 0; b < 2; ++b) cudaEventDestroy(done[b]);
    throw;
  }
  if (fd >= 0) ::close(fd);
  for (int b = 0; b < 2; ++b) cudaEventDestroy(done[b]);
  if (progress) std::fprintf(stderr, "\n");
  if (opt.verbose) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "fathom: uploaded %s of weights in %.3f s (%.2f GB/s)\n",
                 format_bytes(data_bytes).c_str(), s, s > 0 ? data_bytes / 1e9 / s : 0.0);
  }

}

void CudaEngine::Impl::upload_weights(const Model& model, size_t data_bytes) {
  const GgufFile& file = *model.file;
  const std::vector<GgufTensorInfo>& tensors = file.tensors();
  FATHOM_CHECK(!tensors.empty(), "model file '", file.path(), "' has no tensors");
  uint8_t* dev = static_cast<uint8_t*>(weights_arena.alloc(data_bytes, "GGUF data section"));

  if (opt.synthetic_seed != 0) {
    // Benchmark models: random weights made on the device, nothing read from the host.
    for (size_t i = 0; i < tensors.size(); ++i) {
      const GgufTensorInfo& t = tensors[i];
      launch_fill_synthetic(t.type, dev + t.offset, t.rows(), t.cols(), opt.synthetic_seed * 1000003 + i, stream);
    }
    CUDA_CHECK(cudaStreamSynchronize(stream));
  } else {
    upload_file_data(model, dev, data_bytes);
  }

  // Device views of every tensor. 1-D vectors (norms, biases) must be fp32 for the kernels:
  // other types are dequantized on the host into the extra region after the data section.
  auto mat = [&](const WeightRef& r) {
    DevMat m;
    if (!r) return m;
    m.type = r.type();
    m.w = dev + r.info->offset;
    m.rows = r.rows();
    m.cols = r.cols();
    return m;
  };
  auto vec = [&](const WeightRef& r) -> const float* {
    if (!r) return nullptr;
    if (r.type() == GgmlType::F32) return reinterpret_cast<const float*>(dev + r.info->offset);
    std::vector<float> host(size_t(r.info->n_elements()));
    cpu::dequantize_weight(r, host.data());
    float* d = weights_arena.alloc_n<float>(host.size(), "fp32 vector");
    CUDA_CHECK(cudaMemcpy(d, host.data(), host.size() * 4, cudaMemcpyHostToDevice));
    return d;
  };
  const ModelWeights& w = model.weights;
  tok_embd = mat(w.tok_embd);
  output = w.output ? mat(w.output) : tok_embd;
  output_norm = vec(w.output_norm);
  if (!cfg.rope_freq_factors.empty()) {
    float* d = weights_arena.alloc_n<float>(cfg.rope_freq_factors.size(), "rope freq factors");
    CUDA_CHECK(cudaMemcpy(d, cfg.rope_freq_factors.data(), cfg.rope_freq_factors.size() * 4,
                          cudaMemcpyHostToDevice));
    freq_factors = d;
  }
  layers.resize(size_t(cfg.n_layer));
  for (int64_t il = 0; il < cfg.n_layer; ++il) {
    const LayerWeights& l = w.layers[size_t(il)];
    DevLayer& d = layers[size_t(il)];
    d.wq = mat(l.wq);
    d.wk = mat(l.wk);
    d.wv = mat(l.wv);
    d.wo = mat(l.wo);
    d.ffn_gate = mat(l.ffn_gate);
    d.ffn_up = mat(l.ffn_up);
    d.ffn_down = mat(l.ffn_down);
    d.attn_norm = vec(l.attn_norm);
    d.bq = vec(l.bq);
    d.bk = vec(l.bk);
    d.bv = vec(l.bv);
    d.q_norm = vec(l.q_norm);
    d.k_norm = vec(l.k_norm);
    d.post_attn_norm = vec(l.post_attn_norm);
    d.ffn_norm = vec(l.ffn_norm);
    d.post_ffn_norm = vec(l.post_ffn_norm);
    const cpu::RopeParams rp = cpu::rope_params_for_layer(cfg, il, freq_factors);
    d.rope_base = rp.freq_base;
    d.rope_scale = rp.freq_scale;
    d.rope_factors = rp.freq_factors != nullptr;
    const bool swa = il < int64_t(cfg.layer_is_swa.size()) && cfg.layer_is_swa[size_t(il)];
    d.sliding_window = swa ? int32_t(cfg.sliding_window) : 0;
  }
}

CudaEngine::Impl::Impl(const Model& model, const CudaEngineOptions& o) : PrefillPlanner(model.config, o) {
  try {
    load(model);
  } catch (...) {
    release();  // a failed load (out of memory, bad type, ...) gives back all it took
    throw;
  }
}

void CudaEngine::Impl::load(const Model& model) {
  std::string why;
  FATHOM_CHECK(cuda_engine_available(&why), "cannot start the CUDA engine: ", why);
  int n_dev = 0;
  CUDA_CHECK(cudaGetDeviceCount(&n_dev));
  FATHOM_CHECK(opt.device >= 0 && opt.device < n_dev, "GPU ", opt.device, " does not exist (",
               n_dev, " devices)");
  DeviceGuard guard(opt.device);
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, opt.device));
  device_name = prop.name;
  FATHOM_CHECK(opt.max_batch >= 1, "max_batch must be at least 1, got ", opt.max_batch);
  FATHOM_CHECK(opt.kv_block_size >= 1 && opt.kv_block_size <= 1024, "KV block size ",
               opt.kv_block_size, " is outside 1..1024");
  FATHOM_CHECK(cfg.n_layer == int64_t(model.weights.layers.size()), "model has ",
               model.weights.layers.size(), " layers of weights but n_layer ", cfg.n_layer);
  head_dim = cfg.head_dim_k;
  max_batch = opt.max_batch;
  check_supported(model);

  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  CUDA_CHECK(cudaEventCreate(&ev_begin));
  CUDA_CHECK(cudaEventCreate(&ev_end));

  // ---- plan: weights, workspace, then the KV cache from what is left ----
  const GgufFile& file = *model.file;
  const size_t data_bytes = file.file_size() - file.data_offset();
  // weight_bytes, the budget, and the matrices that take cuBLASLt / the dequant scratch.
  measure(model, data_bytes);

  const int64_t bs = opt.kv_block_size;
  const size_t kv_bytes_per_block =
      size_t(cfg.n_layer) * 2 * size_t(cfg.n_head_kv) * size_t(bs) * size_t(head_dim) * 2;
  const int64_t ctx_cap = cfg.n_ctx_train > 0 ? cfg.n_ctx_train : 4096;

  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  mem.free_before = free_b;
  mem.total = total_b;

  // The workspace depends on n_ctx only through the block tables and the attention split
  // partials; plan with the cap first, then with the chosen context.
  n_ctx = opt.n_ctx > 0 ? opt.n_ctx : ctx_cap;
  FATHOM_CHECK(n_ctx <= INT32_MAX / 2, "context ", n_ctx, " is too large");
  attn_ws_bytes = decode_attention_workspace();
  choose_prefill_chunk(model);
  rows = std::max<int64_t>(ubatch, max_batch);
  in_layout = InLayout{rows, max_batch};
  size_t work_bytes = plan_workspace(rows, need_lt);
  const size_t fixed = weight_bytes + work_bytes;

  if (opt.n_ctx <= 0) {
    // What fits: free memory minus weights, workspace and the reserve, split over max_batch.
    const size_t avail = free_b > fixed + opt.reserve_bytes ? free_b - fixed - opt.reserve_bytes : 0;
    const int64_t blocks = int64_t(avail / kv_bytes_per_block) / max_batch;
    n_ctx = std::min<int64_t>(ctx_cap, blocks * bs);
    FATHOM_CHECK(n_ctx >= bs, "out of GPU memory: weights (", format_bytes(weight_bytes),
                 ") and workspace (", format_bytes(work_bytes), ") leave no room for a KV cache: ",
                 format_bytes(free_b), " free of ", format_bytes(total_b));
    attn_ws_bytes = decode_attention_workspace();
    work_bytes = plan_workspace(rows, need_lt);
  }
  const int64_t mbps = (n_ctx + bs - 1) / bs;
  const int64_t n_blocks = mbps * max_batch;
  const size_t kv_bytes = size_t(n_blocks) * kv_bytes_per_block;
  const size_t needed = weight_bytes + work_bytes + kv_bytes;
  FATHOM_CHECK(needed <= free_b, "out of GPU memory: the model needs ", format_bytes(needed),
               " (weights ", format_bytes(weight_bytes), ", KV cache for ", n_ctx, " tokens x ",
               max_batch, " sequences ", format_bytes(kv_bytes), ", workspace ",
               format_bytes(work_bytes), ") but only ", format_bytes(free_b), " of ",
               format_bytes(total_b), " are free; try a smaller --ctx");

  kv = std::make_unique<KvBlockAllocator>(int32_t(n_blocks), int32_t(bs), max_batch, int32_t(mbps));
  seq_len.assign(size_t(max_batch), 0);

  weights_arena.init(weight_bytes, "weights");
  kv_arena.init(kv_bytes, "KV cache");
  work_arena.init(work_bytes, "workspace");

  upload_weights(model, data_bytes);
  const size_t layer_kv = size_t(n_blocks) * size_t(cfg.n_head_kv) * size_t(bs) * size_t(head_dim) * 2;
  for (DevLayer& d : layers) {
    d.k_cache = kv_arena.alloc(layer_kv, "K cache");
    d.v_cache = kv_arena.alloc(layer_kv, "V cache");
  }
  // Zeroed once so a kernel that reads a not-yet-written slot of a claimed block sees finite data.
  CUDA_CHECK(cudaMemsetAsync(kv_arena.base(), 0, kv_arena.used(), stream));
  alloc_workspace(need_lt);

  if (need_lt) {
    LT_CHECK(cublasLtCreate(&lt));
    gemm.lt = lt;
    gemm.workspace = act.lt_ws;
    gemm.workspace_bytes = act.lt_ws_bytes;
    gemm.scratch = act.gemm_scratch;
    gemm.scratch_bytes = act.gemm_scratch_bytes;
    gemm.dequant_min_elements = dequant_min;
    gemm.dequant = act.gemm_dequant;
    gemm.dequant_bytes = act.gemm_dequant_bytes;
    gemm.plans = gemm_plan_cache_create();
    gemm_half = gemm;
    if (half_rows > 0) gemm_half.dequant_bytes = half_dequant_bytes;

    // One-time timed pick of the cuBLASLt algorithm of every GEMM shape forward() runs: prefill
    // chunks of ubatch tokens, and decode batches of max_batch when those exceed kGemvMaxTokens,
    // with forward()'s own buffers so the plans' keys (operand alignments included) are the ones
    // it looks up. Other shapes (a prompt's last, shorter chunk) get the heuristic's first pick
    // on first use. It writes test data into the activations, which no forward has read yet.
    // Only with FATHOM_GEMM_TUNE=1 (below); otherwise the heuristic's first pick, nothing timed.
    std::vector<MatmulParams> shapes;
    auto add = [&](const DevMat& m, const float* x, float* y, int64_t n, const float* bias,
                   const float* residual) {
      if (!m || m.type == GgmlType::F32) return;  // F32: fp32 GEMV slices, no GEMM
      MatmulParams p;
      p.type = m.type;
      p.w = m.w;
      p.rows = m.rows;
      p.cols = m.cols;
      p.w_ld = m.ld;
      p.x = x;
      p.y = y;
      p.n_tokens = n;
      p.bias = bias;
      p.residual = residual;
      p.gemm = half_pass(n) ? &gemm_half : &gemm;
      shapes.push_back(p);
    };
    std::vector<int64_t> sizes{ubatch};
    if (max_batch != ubatch) sizes.push_back(max_batch);
    for (const int64_t n : sizes) {
      if (n <= kGemvMaxTokens) continue;
      act.q = act.a = half_pass(n) ? act.q_half : act.q_full;
      for (const DevLayer& L : layers) {
        add(L.wq, act.h, act.q, n, L.bq, nullptr);
        add(L.wk, act.h, act.k, n, L.bk, nullptr);
        add(L.wv, act.h, act.v, n, L.bv, nullptr);
        if (L.post_attn_norm) add(L.wo, act.att, act.a, n, nullptr, nullptr);
        else add(L.wo, act.att, act.x, n, nullptr, act.x);
        // The FFN as forward() runs it: whole, or in column slices (see ffn_slice_for).
        const int64_t S = ffn_slice_for(n);
        for (int64_t c0 = 0; c0 < cfg.n_ff; c0 += S) {
          const int64_t sw = std::min(S, cfg.n_ff - c0);
          add(row_slice(L.ffn_gate, c0, sw), act.h, act.gate, n, nullptr, nullptr);
          add(row_slice(L.ffn_up, c0, sw), act.h, act.up, n, nullptr, nullptr);
          const DevMat down = S < cfg.n_ff ? col_slice(L.ffn_down, c0, sw) : L.ffn_down;
          if (L.post_ffn_norm) add(down, act.gate, act.a, n, nullptr, c0 > 0 ? act.a : nullptr);
          else add(down, act.gate, act.x, n, nullptr, act.x);
        }
      }
    }
    if (max_batch > kGemvMaxTokens) add(output, act.h, act.logits, max_batch, nullptr, nullptr);
    act.q = act.a = act.q_full;
    GemmTuneOptions topt;
    // Off by default: the fastest of near-equal candidates changes from load to load with timing
    // noise, and different algorithms may sum in a different order -- two processes would not
    // give bit-identical logits for the same prompt. The pick measured +0.5% to +1.7% prefill
    // (H200, pp512); FATHOM_GEMM_TUNE=1 turns it on.
    {
      const char* e = std::getenv("FATHOM_GEMM_TUNE");
      topt.time_candidates = e && std::strcmp(e, "1") == 0;
    }
    const GemmTuneReport tr = gemm_plan_tune(shapes.data(), shapes.size(), topt, stream);
    if (opt.verbose)
      std::fprintf(stderr,
                   "fathom: cuBLASLt plans for %lld GEMM shapes: %lld timed (%lld candidates, %lld "
                   "faster than the heuristic's first pick, %lld past the %.0f ms budget) in %.1f ms%s\n",
                   (long long)tr.shapes, (long long)tr.timed, (long long)tr.candidates,
                   (long long)tr.changed, (long long)tr.skipped, topt.budget_ms, tr.wall_ms,
                   topt.time_candidates ? " (FATHOM_GEMM_TUNE=1)" : "");
  }
  host_in.init(size_t(in_layout.size()) * 4 + size_t(max_batch) * mbps * 4, "step inputs");
  host_out.init(size_t(max_batch) * 4, "sampled ids");
  CUDA_CHECK(cudaStreamSynchronize(stream));

  // Slot 0 is the Engine-interface sequence.
  kv->add_sequence();

  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  mem.free_after = free_b;
  mem.weights = weights_arena.capacity();
  mem.kv_cache = kv_arena.capacity();
  mem.workspace = work_arena.capacity();
  mem.kv_tokens = n_blocks * bs;
  mem.n_ctx = n_ctx;
  mem.ubatch = ubatch;
  if (opt.verbose) {
    std::fprintf(stderr, "fathom: CUDA engine on %s, device memory:\n%s", device_name.c_str(),
                 mem.describe().c_str());
    std::fprintf(stderr,
                 "fathom: prefill chunks of %lld tokens; FFN intermediate %s; dequantized-weight "
                 "scratch %s (workspace budget %s)\n",
                 (long long)ubatch,
                 ffn_slice < cfg.n_ff ? str_cat("in column slices of ", ffn_slice, " of ", cfg.n_ff).c_str()
                                      : str_cat("whole (", cfg.n_ff, " columns)").c_str(),
                 format_bytes(act.gemm_dequant_bytes).c_str(), format_bytes(work_budget).c_str());
    if (half_rows > 0)
      std::fprintf(stderr,
                   "fathom: passes of <= %lld rows: q / a in h's upper half, dequant scratch %s (over "
                   "q / a), FFN slices of %lld columns at %lld rows, %lld at %lld\n",
                   (long long)half_rows, format_bytes(half_dequant_bytes).c_str(),
                   (long long)ffn_slice_for(kGemvMaxTokens + 1), (long long)(kGemvMaxTokens + 1),
                   (long long)ffn_slice_for(half_rows), (long long)half_rows);
    std::vector<Term> terms;
    plan_workspace(rows, need_lt, nullptr, 0, &terms);
    std::fprintf(stderr, "fathom: workspace plan (%lld rows):\n%s", (long long)rows,
                 describe_workspace(terms, work_budget).c_str());
  }
}

CudaEngine::Impl::~Impl() { release(); }

// Never throws (it runs in the destructor and while a failed load unwinds).
void CudaEngine::Impl::release() {
  int prev = 0;
  cudaGetDevice(&prev);
  const bool switched = prev != opt.device && cudaSetDevice(opt.device) == cudaSuccess;
  if (stream) cudaStreamSynchronize(stream);
  for (auto& [n, exec] : graphs) cudaGraphExecDestroy(exec);
  graphs.clear();
  if (v_ones) cudaFree(v_ones);
  v_ones = nullptr;
  gemm_plan_cache_destroy(gemm.plans);  // its descriptors before the handle
  gemm.plans = nullptr;
  if (lt) cublasLtDestroy(lt);
  lt = nullptr;
  host_in.release();
  host_out.release();
  work_arena.release();
  kv_arena.release();
  weights_arena.release();
  if (ev_begin) cudaEventDestroy(ev_begin);
  if (ev_end) cudaEventDestroy(ev_end);
  ev_begin = ev_end = nullptr;
  if (stream) cudaStreamDestroy(stream);
  stream = nullptr;
  if (switched) cudaSetDevice(prev);
  cudaGetLastError();  // leave no sticky error from a teardown call to the next engine
}

// ---- forward --------------------------------------------------------------------------------

void CudaEngine::Impl::emit(int64_t layer, const char* op, const float* dev, int64_t n_rows,
                            int64_t n, bool last_chunk) {
  if (!trace || !last_chunk) return;
  std::vector<float> all(size_t(n_rows * n));
  CUDA_CHECK(cudaMemcpyAsync(all.data(), dev, all.size() * 4, cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  CudaTraceEntry e;
  e.layer = layer;
  e.op = op;
  e.n_tokens = n_rows;
  e.n = n;
  e.all_finite = std::all_of(all.begin(), all.end(), [](float f) { return std::isfinite(f); });
  e.values = std::move(all);
  trace(e);
}

void CudaEngine::Impl::forward(int64_t T, int32_t n_seqs, const int32_t* table, int32_t max_q_len,
                               int32_t max_kv_len, int64_t lm_rows, bool last) {
  const ModelConfig& c = cfg;
  const int64_t d = c.n_embd, qd = c.n_head * head_dim, kvd = c.n_head_kv * head_dim;
  const int32_t* tokens = act.in + in_layout.tokens();
  const int32_t* pos = act.in + in_layout.pos();
  const int32_t* slots = act.in + in_layout.slots();
  // A half pass (T <= half_rows, PrefillPlanner::half_pass): q / a in the upper half of h / att's
  // buffer, and the dequant scratch over q / a's own buffer too (gemm_half), for wider FFN slices.
  const bool half = half_pass(T);
  act.q = act.a = half ? act.q_half : act.q_full;
  const GemmContext* gctx = lt ? (half ? &gemm_half : &gemm) : nullptr;
  // Whether a (rows x cols) matmul may take the bf16 mma_q8 variant (mmq_route, MmaQ8Params::allow_bf16):
  // only where the engine would otherwise dequantize the matrix to bf16 for cuBLASLt.
  auto bf16_ok = [&](int64_t mrows, int64_t mcols) { return lt && mrows * mcols >= gemm.dequant_min_elements; };
  // FATHOM_FUSE_NORM=0: keep the separate rms_norm kernels before the grouped GEMVs (A/B runs).
  static const bool fuse_norm = [] {
    const char* e = std::getenv("FATHOM_FUSE_NORM");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  // A grouped GEMV's input (GemvQ8Params or GemvHalfParams): x itself with the norm weights when it
  // normalizes x in its own staging (fused), else the separately normalized act.h.
  auto norm_input = [&](auto& gp, bool fused, const float* norm_w) {
    gp.x = fused ? act.x : act.h;
    if (fused) {
      gp.norm_w = norm_w;
      gp.norm_eps = c.norm_eps;
    }
  };

  // reuse_x16: x is the previous matmul's x, unchanged since; when both GEMMs convert it to the
  // same 16-bit type (gemm_x16_kind), this one reuses the conversion (k and v after q, up after
  // gate: ~3 fewer passes over h per layer).
  MatmulParams last_mm;
  auto matmul = [&](const DevMat& m, const float* x, float* y, int64_t n, const float* bias,
                    const float* residual, bool reuse_x16 = false) {
    const bool bf = bf16_ok(m.rows, m.cols);
    if (m.ld == 0 && mmq_route(m.type, n, m.cols, bf)) {
      MmaQ8Params q;
      q.allow_bf16 = bf;
      q.type = m.type;
      q.cols = m.cols;
      q.x = x;
      q.n_tokens = n;
      q.seg[0] = MmaQ8Segment{m.w, m.rows, y, bias};
      q.residual = residual;
      q.workspace = act.mmq_ws;
      q.workspace_bytes = act.mmq_ws_bytes;
      launch_mma_q8(q, stream);
      last_mm = MatmulParams();  // the GEMM scratch is untouched, but x16_ready must not see a stale x
      return;
    }
    MatmulParams p;
    p.type = m.type;
    p.w = m.w;
    p.rows = m.rows;
    p.cols = m.cols;
    p.w_ld = m.ld;
    p.x = x;
    p.y = y;
    p.n_tokens = n;
    p.bias = bias;
    p.residual = residual;
    p.gemm = gctx;
    if (reuse_x16 && last_mm.x == x && last_mm.n_tokens == n && last_mm.cols == m.cols) {
      const int kind = gemm_x16_kind(p);
      p.x16_ready = kind != 0 && kind == gemm_x16_kind(last_mm);
    }
    last_mm = p;
    if (m.type == GgmlType::F32 && n > kGemvMaxTokens) {
      FATHOM_CHECK(m.ld == 0, "F32 weights take no column slice");
      // F32 weights keep fp32 arithmetic in prefill too: the tensor-core GEMM rounds operands to
      // bf16 (~2^-9 per product), enough to flip greedy near-ties against the fp32 reference.
      // Slices of kGemvMaxTokens rows through the GEMV re-read the weight n/16 times; F32 files
      // are test and reference models, where exactness matters more than prefill speed.
      for (int64_t t0 = 0; t0 < n; t0 += kGemvMaxTokens) {
        MatmulParams s = p;
        s.n_tokens = std::min<int64_t>(kGemvMaxTokens, n - t0);
        s.x = x + t0 * m.cols;
        s.y = y + t0 * m.rows;
        s.residual = residual ? residual + t0 * m.rows : nullptr;
        launch_matmul_gemv(s, stream);
      }
      return;
    }
    launch_matmul(p, stream);
  };
  auto rms = [&](float* x, const float* residual, const float* w, float* out, int64_t n_rows,
                 int64_t n) {
    RmsNormParams p;
    p.x = x;
    p.residual = residual;
    p.w = w;
    p.out = out;
    p.n_rows = n_rows;
    p.n = n;
    p.eps = c.norm_eps;
    launch_rms_norm(p, stream);
  };

  {
    EmbeddingParams p;
    p.type = tok_embd.type;
    p.tok_embd = tok_embd.w;
    p.n_vocab = tok_embd.rows;
    p.n_embd = d;
    p.tokens = tokens;
    p.n_tokens = T;
    p.scale = c.embd_scale_sqrt ? std::sqrt(float(d)) : 1.0f;
    p.out = act.x;
    launch_embedding(p, stream);
  }
  emit(-1, "inp_embd", act.x, T, d, last);

  const float* pending = nullptr;  // gemma3: output of the previous block still to add to x
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const DevLayer& L = layers[size_t(il)];
    std::optional<NvtxRange> layer_range;
    if (opt.nvtx_layers) layer_range.emplace("layer", il);
    const bool qkv_bf = bf16_ok(std::min({L.wq.rows, L.wk.rows, L.wv.rows}), L.wq.cols);
    const bool qkv_mmq = L.wq.type == L.wk.type && L.wk.type == L.wv.type && L.wq.cols == L.wk.cols &&
                         L.wk.cols == L.wv.cols && mmq_route(L.wq.type, T, L.wq.cols, qkv_bf);
    const bool qkv_grouped = !qkv_mmq && T <= kGemvQ8MaxTokens && L.wq.type == L.wk.type && L.wk.type == L.wv.type &&
                             L.wq.cols == L.wk.cols && L.wk.cols == L.wv.cols &&
                             gemv_q8_supports(L.wq.type, T, L.wq.cols);
    // F16 / BF16 weights: the same grouping through the half-precision GEMV.
    GemvHalfParams qkv_hp;
    qkv_hp.type = L.wq.type;
    qkv_hp.cols = L.wq.cols;
    qkv_hp.n_tokens = T;
    qkv_hp.n_seg = 3;
    qkv_hp.seg[0] = GemvHalfSegment{L.wq.w, L.wq.rows, act.q, L.bq};
    qkv_hp.seg[1] = GemvHalfSegment{L.wk.w, L.wk.rows, act.k, L.bk};
    qkv_hp.seg[2] = GemvHalfSegment{L.wv.w, L.wv.rows, act.v, L.bv};
    qkv_hp.x = act.h;
    const bool qkv_half = !qkv_mmq && !qkv_grouped && half_grouped_enabled() && L.wq.type == L.wk.type && L.wk.type == L.wv.type &&
                          L.wq.cols == L.wk.cols && L.wk.cols == L.wv.cols && gemv_half_grouped_supports(qkv_hp);
    // Q and K of one type and V of another (Q4_K_M: attn_v is Q6_K in half the layers): Q/K in
    // one int8-activation GEMV launch and V in another, each normalizing x itself when the norm
    // is fused -- 2 launches where rms_norm + 3 GEMVs ran.
    // Not where the separate matmuls take the tensor-core kernel (2..16 tokens): the dp4a GEMV is
    // ~3x slower there (batch 8: 1326 against 1611 tok/s, measured).
    const bool qk_v_split = !qkv_mmq && !qkv_grouped && !qkv_half && T <= kGemvQ8MaxTokens &&
                            !mmq_route(L.wq.type, T, L.wq.cols, bf16_ok(L.wq.rows, L.wq.cols)) &&
                            !mmq_route(L.wv.type, T, L.wv.cols, bf16_ok(L.wv.rows, L.wv.cols)) &&
                            L.wq.type == L.wk.type && L.wq.cols == L.wk.cols && L.wk.cols == L.wv.cols &&
                            gemv_q8_supports(L.wq.type, T, L.wq.cols) && gemv_q8_supports(L.wv.type, T, L.wv.cols);
    // The grouped Q/K/V launch normalizes x itself (no rms kernel, act.h not written) when there is
    // no pending residual to add first and no per-op trace wants attn_norm.
    const bool qkv_norm_fused = (qkv_grouped || qkv_half || qk_v_split) && fuse_norm && !pending && !trace &&
                                reinterpret_cast<uintptr_t>(L.attn_norm) % 16 == 0 &&
                                reinterpret_cast<uintptr_t>(act.x) % 16 == 0;
    if (!qkv_norm_fused) rms(act.x, pending, L.attn_norm, act.h, T, d);
    if (pending) emit(il - 1, "l_out", act.x, T, d, last);
    pending = nullptr;
    emit(il, "attn_norm", act.h, T, d, last);

    if (qkv_mmq) {
      // Q, K and V in one tensor-core launch (x quantized once per CTA).
      MmaQ8Params p;
      p.allow_bf16 = qkv_bf;
      p.type = L.wq.type;
      p.cols = L.wq.cols;
      p.x = act.h;
      p.n_tokens = T;
      p.n_seg = 3;
      p.seg[0] = MmaQ8Segment{L.wq.w, L.wq.rows, act.q, L.bq};
      p.seg[1] = MmaQ8Segment{L.wk.w, L.wk.rows, act.k, L.bk};
      p.seg[2] = MmaQ8Segment{L.wv.w, L.wv.rows, act.v, L.bv};
      p.workspace = act.mmq_ws;
      p.workspace_bytes = act.mmq_ws_bytes;
      launch_mma_q8(p, stream);
    } else if (qkv_half) {
      norm_input(qkv_hp, qkv_norm_fused, L.attn_norm);
      launch_gemv_half_grouped(qkv_hp, stream);
    } else if (qkv_grouped || qk_v_split) {
      // Q, K and V in one int8-activation GEMV launch (one x staging, one kernel), or Q/K in one
      // and V in a second when V's type differs.
      GemvQ8Params p;
      p.type = L.wq.type;
      p.cols = L.wq.cols;
      norm_input(p, qkv_norm_fused, L.attn_norm);
      p.n_tokens = T;
      p.n_seg = qkv_grouped ? 3 : 2;
      p.seg[0] = GemvQ8Segment{L.wq.w, L.wq.rows, act.q, L.bq};
      p.seg[1] = GemvQ8Segment{L.wk.w, L.wk.rows, act.k, L.bk};
      if (qkv_grouped) p.seg[2] = GemvQ8Segment{L.wv.w, L.wv.rows, act.v, L.bv};
      launch_gemv_q8(p, stream);
      if (qk_v_split) {
        p.type = L.wv.type;
        p.n_seg = 1;
        p.seg[0] = GemvQ8Segment{L.wv.w, L.wv.rows, act.v, L.bv};
        p.seg[1] = GemvQ8Segment{};
        launch_gemv_q8(p, stream);
      }
    } else {
      matmul(L.wq, act.h, act.q, T, L.bq, nullptr);
      matmul(L.wk, act.h, act.k, T, L.bk, nullptr, true);
      matmul(L.wv, act.h, act.v, T, L.bv, nullptr, true);
    }
    if (L.q_norm) rms(act.q, nullptr, L.q_norm, act.q, T * c.n_head, head_dim);
    if (L.k_norm) rms(act.k, nullptr, L.k_norm, act.k, T * c.n_head_kv, head_dim);
    // Decode (one query per sequence) folds the rotation and the KV-cache store into the
    // attention kernel (one launch less per layer, AttentionParams::rope); a trace wants the
    // rotated Qcur / Kcur in memory, so it keeps the stand-alone kernel.
    const bool rope_in_attention = max_q_len == 1 && !trace && fused_rope_enabled();
    RopeKvParams rope;
    {
      RopeKvParams& p = rope;
      p.type = c.rope_type;
      p.n_rot = int32_t(c.n_rot > 0 ? c.n_rot : head_dim);
      p.freq_base = L.rope_base;
      p.freq_scale = L.rope_scale;
      p.freq_factors = L.rope_factors ? freq_factors : nullptr;
      p.pos = pos;
      p.n_tokens = T;
      p.n_head = int32_t(c.n_head);
      p.n_head_kv = int32_t(c.n_head_kv);
      p.head_dim = int32_t(head_dim);
      p.q = act.q;
      p.k = act.k;
      p.v = act.v;
      p.kv_type = KvType::F16;
      p.k_cache = L.k_cache;
      p.v_cache = L.v_cache;
      p.slot_mapping = slots;
      p.block_size = opt.kv_block_size;
      if (!rope_in_attention) launch_rope_kv(p, stream);
    }
    emit(il, "Qcur", act.q, T, qd, last);
    emit(il, "Kcur", act.k, T, kvd, last);
    emit(il, "Vcur", act.v, T, kvd, last);
    AttentionParams ap;
    ap.q = act.q;
    ap.out = act.att;
    ap.q_pos = pos;
    ap.q_seq_start = act.in + in_layout.seq_start();
    ap.kv_len = act.in + in_layout.kv_len();
    ap.block_table = table;
    ap.max_blocks_per_seq = kv->max_blocks_per_seq();
    ap.k_cache = L.k_cache;
    ap.v_cache = L.v_cache;
    ap.kv_type = KvType::F16;
    ap.block_size = opt.kv_block_size;
    ap.n_seqs = n_seqs;
    ap.n_tokens = T;
    ap.n_head = int32_t(c.n_head);
    ap.n_head_kv = int32_t(c.n_head_kv);
    ap.head_dim = int32_t(head_dim);
    ap.scale = c.attn_scale;
    ap.softcap = c.attn_logit_softcap;
    ap.causal = true;
    ap.sliding_window = L.sliding_window;
    ap.max_q_len = max_q_len;
    ap.max_kv_len = max_kv_len;
    ap.workspace = act.attn_ws;
    ap.workspace_bytes = act.attn_ws_bytes;
    if (rope_in_attention) ap.rope = rope;
    if (v_ones && last) {
      // Same attention against V = 1 first (a shares q's buffer, which both launches read):
      // every output element is the softmax row sum.
      AttentionParams sums = ap;
      sums.v_cache = v_ones;
      launch_attention(sums, stream);
      emit(il, "softmax_row_sum", act.att, T, qd, last);
    }
    launch_attention(ap, stream);
    emit(il, "kqv_out", act.att, T, qd, last);

    bool ffn_down_done = false;  // the sliced FFN below ran the down projection itself
    const bool gateup_bf = bf16_ok(L.ffn_gate.rows, L.ffn_gate.cols);
    const bool gateup_mmq = L.ffn_gate.type == L.ffn_up.type && L.ffn_gate.cols == L.ffn_up.cols &&
                            L.ffn_gate.rows == L.ffn_up.rows && mmq_route(L.ffn_gate.type, T, L.ffn_gate.cols, gateup_bf) &&
                            T * c.n_ff <= rows * ffn_slice;
    const bool gateup_grouped = !gateup_mmq && T <= kGemvQ8MaxTokens && L.ffn_gate.type == L.ffn_up.type &&
                                L.ffn_gate.cols == L.ffn_up.cols && L.ffn_gate.rows == L.ffn_up.rows &&
                                gemv_q8_supports(L.ffn_gate.type, T, L.ffn_gate.cols);
    GemvHalfParams gu_hp;
    gu_hp.type = L.ffn_gate.type;
    gu_hp.cols = L.ffn_gate.cols;
    gu_hp.n_tokens = T;
    gu_hp.n_seg = 2;
    gu_hp.seg[0] = GemvHalfSegment{L.ffn_gate.w, L.ffn_gate.rows, act.gate, nullptr};
    gu_hp.seg[1] = GemvHalfSegment{L.ffn_up.w, L.ffn_up.rows, act.up, nullptr};
    gu_hp.glu = true;
    gu_hp.glu_kind = c.gelu_ffn ? GluKind::GEGLU : GluKind::SWIGLU;
    gu_hp.x = act.h;
    const bool gateup_half = !gateup_mmq && !gateup_grouped && half_grouped_enabled() && L.ffn_gate.type == L.ffn_up.type &&
                             L.ffn_gate.cols == L.ffn_up.cols && T * c.n_ff <= rows * ffn_slice &&
                             gemv_half_grouped_supports(gu_hp);
    // As for Q/K/V: the llama-style path (residual added by the Wo GEMV) lets the gate/up launch
    // normalize x itself.
    const bool ffn_norm_fused = (gateup_grouped || gateup_half) && fuse_norm && !L.post_attn_norm && !trace &&
                                reinterpret_cast<uintptr_t>(L.ffn_norm) % 16 == 0 &&
                                reinterpret_cast<uintptr_t>(act.x) % 16 == 0;
    if (L.post_attn_norm) {
      matmul(L.wo, act.att, act.a, T, nullptr, nullptr);
      emit(il, "attn_out", act.a, T, d, last);
      rms(act.a, nullptr, L.post_attn_norm, act.a, T, d);
      emit(il, "attn_post_norm", act.a, T, d, last);
      rms(act.x, act.a, L.ffn_norm, act.h, T, d);  // x += a; h = norm(x)
    } else {
      if (trace) {  // the CPU reference's attn_out is the projection before the residual add
        matmul(L.wo, act.att, act.a, T, nullptr, nullptr);
        emit(il, "attn_out", act.a, T, d, last);
        rms(act.x, act.a, L.ffn_norm, act.h, T, d);
      } else {
        matmul(L.wo, act.att, act.x, T, nullptr, act.x);  // x += att @ Wo^T
        if (!ffn_norm_fused) rms(act.x, nullptr, L.ffn_norm, act.h, T, d);
      }
    }
    emit(il, "ffn_inp", act.x, T, d, last);
    emit(il, "ffn_norm", act.h, T, d, last);

    if (gateup_mmq) {
      // gate, up and the activation in one tensor-core launch: act.gate = act(h . gate) * (h . up).
      MmaQ8Params p;
      p.allow_bf16 = gateup_bf;
      p.type = L.ffn_gate.type;
      p.cols = L.ffn_gate.cols;
      p.x = act.h;
      p.n_tokens = T;
      p.n_seg = 2;
      p.seg[0] = MmaQ8Segment{L.ffn_gate.w, L.ffn_gate.rows, act.gate, nullptr};
      p.seg[1] = MmaQ8Segment{L.ffn_up.w, L.ffn_up.rows, act.up, nullptr};
      p.glu = true;
      p.glu_kind = c.gelu_ffn ? GluKind::GEGLU : GluKind::SWIGLU;
      p.workspace = act.mmq_ws;
      p.workspace_bytes = act.mmq_ws_bytes;
      launch_mma_q8(p, stream);
    } else if (gateup_grouped) {
      // gate, up and the activation in one launch: act.gate = act(h . gate) * (h . up).
      GemvQ8Params p;
      p.type = L.ffn_gate.type;
      p.cols = L.ffn_gate.cols;
      norm_input(p, ffn_norm_fused, L.ffn_norm);
      p.n_tokens = T;
      p.n_seg = 2;
      p.seg[0] = GemvQ8Segment{L.ffn_gate.w, L.ffn_gate.rows, act.gate, nullptr};
      p.seg[1] = GemvQ8Segment{L.ffn_up.w, L.ffn_up.rows, act.up, nullptr};
      p.glu = true;
      p.glu_kind = c.gelu_ffn ? GluKind::GEGLU : GluKind::SWIGLU;
      launch_gemv_q8(p, stream);
    } else if (gateup_half) {
      // gate, up and the activation in one half-precision GEMV launch (act.gate).
      norm_input(gu_hp, ffn_norm_fused, L.ffn_norm);
      launch_gemv_half_grouped(gu_hp, stream);
    } else {
      // The intermediate (T, n_ff) whole, or in column slices [c0, c0 + S) when it exceeds the
      // gate/up buffers (rows x ffn_slice, see choose_prefill_chunk): gate/up of rows
      // [c0, c0 + S) of W_gate/W_up, the activation, then the product with columns [c0, c0 + S)
      // of W_down added into the output (x, or a with the first slice writing it).
      const int64_t S = ffn_slice_for(T);
      for (int64_t c0 = 0; c0 < c.n_ff; c0 += S) {
        const int64_t sw = std::min(S, c.n_ff - c0);
        const DevMat gate = S < c.n_ff ? row_slice(L.ffn_gate, c0, sw) : L.ffn_gate;
        const DevMat up = S < c.n_ff ? row_slice(L.ffn_up, c0, sw) : L.ffn_up;
        matmul(gate, act.h, act.gate, T, nullptr, nullptr);
        matmul(up, act.h, act.up, T, nullptr, nullptr, true);
        GluParams p;
        p.kind = c.gelu_ffn ? GluKind::GEGLU : GluKind::SWIGLU;
        p.gate = act.gate;
        p.up = act.up;
        p.out = act.gate;
        p.n_tokens = T;
        p.n = sw;
        launch_glu(p, stream);
        if (S < c.n_ff) {
          float* out = (L.post_ffn_norm || trace) ? act.a : act.x;
          matmul(col_slice(L.ffn_down, c0, sw), act.gate, out, T, nullptr,
                 out == act.x || c0 > 0 ? out : nullptr);
          ffn_down_done = true;
        }
      }
    }
    if (L.post_ffn_norm) {
      if (!ffn_down_done) matmul(L.ffn_down, act.gate, act.a, T, nullptr, nullptr);
      emit(il, "ffn_out", act.a, T, d, last);
      rms(act.a, nullptr, L.post_ffn_norm, act.a, T, d);
      emit(il, "ffn_post_norm", act.a, T, d, last);
      pending = act.a;  // added to x by the next norm
    } else if (trace) {
      if (!ffn_down_done) matmul(L.ffn_down, act.gate, act.a, T, nullptr, nullptr);
      emit(il, "ffn_out", act.a, T, d, last);
      pending = act.a;
    } else {
      if (!ffn_down_done) matmul(L.ffn_down, act.gate, act.x, T, nullptr, act.x);  // x += g @ Wd^T
      emit(il, "l_out", act.x, T, d, last);
    }
  }

  // Final norm on the rows that need logits only (the last lm_rows). With a pending residual the
  // add is fused here; the other rows of x are not needed again.
  // A chunk that needs no logits stops here: its K/V are in the cache, and x (with a gemma3
  // residual still pending) is not read again.
  if (lm_rows <= 0) return;
  const int64_t first = T - lm_rows;
  rms(act.x + first * d, pending ? pending + first * d : nullptr, output_norm, act.h + first * d,
      lm_rows, d);
  if (pending) emit(c.n_layer - 1, "l_out", act.x, T, d, last);
  emit(c.n_layer, "result_norm", act.h + first * d, lm_rows, d, last);
  matmul(output, act.h + first * d, act.logits, lm_rows, nullptr, nullptr);
  if (c.final_logit_softcap > 0.0f) {
    SoftcapParams p;
    p.x = act.logits;
    p.n = lm_rows * c.n_vocab;
    p.cap = c.final_logit_softcap;
    launch_softcap(p, stream);
  }
  emit(c.n_layer, "result_output", act.logits, lm_rows, c.n_vocab, last);
}

void CudaEngine::Impl::check_tokens(const int32_t* tokens, int64_t n) const {
  for (int64_t i = 0; i < n; ++i)
    FATHOM_CHECK(tokens[i] >= 0 && tokens[i] < cfg.n_vocab, "token id ", tokens[i], " at index ", i,
                 " is outside the vocabulary of ", cfg.n_vocab);
}

void CudaEngine::Impl::upload_seq_table() {
  if (seq_table_version == kv->version()) return;
  const std::vector<int32_t>& t = kv->table();
  CUDA_CHECK(cudaMemcpyAsync(act.seq_table, t.data(), t.size() * 4, cudaMemcpyHostToDevice, stream));
  seq_table_version = kv->version();
}

// Prefill (or an un-graphed decode) of one sequence, in chunks of ubatch tokens. The last chunk
// leaves the logits of the last token in act.logits row 0 and its argmax in act.out_ids[0].
void CudaEngine::Impl::prefill(int32_t seq, const int32_t* tokens, int64_t n) {
  FATHOM_CHECK(n > 0, "eval: no tokens");
  check_tokens(tokens, n);
  const int64_t past = seq_len[size_t(seq)];
  FATHOM_CHECK(past + n <= n_ctx, "prompt of ", n, " tokens after ", past,
               " cached ones exceeds the context of ", n_ctx, " tokens");
  kv->reserve(seq, past + n);  // throws, changing nothing, when the pool is exhausted
  upload_seq_table();
  int32_t* h = static_cast<int32_t*>(host_in.data());
  for (int64_t done = 0; done < n;) {
    const int64_t T = std::min(ubatch, n - done);
    const bool last = done + T == n;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t p = past + done + t;
      h[in_layout.tokens() + t] = tokens[done + t];
      h[in_layout.pos() + t] = int32_t(p);
      h[in_layout.slots() + t] = int32_t(kv->slot(seq, p));
    }
    h[in_layout.seq_start()] = 0;
    h[in_layout.seq_start() + 1] = int32_t(T);
    h[in_layout.kv_len()] = int32_t(past + done + T);
    // The stream orders this copy after the previous chunk's kernels, but the host must not
    // overwrite the pinned buffer before the copy has read it.
    CUDA_CHECK(cudaMemcpyAsync(act.in, h, size_t(in_layout.size()) * 4, cudaMemcpyHostToDevice, stream));
    forward(T, 1, act.seq_table + int64_t(seq) * kv->max_blocks_per_seq(), int32_t(T),
            int32_t(past + done + T), last ? 1 : 0, last);
    if (!last) CUDA_CHECK(cudaStreamSynchronize(stream));
    done += T;
  }
  ArgmaxParams ap;
  ap.logits = act.logits;
  ap.n_rows = 1;
  ap.n_vocab = cfg.n_vocab;
  ap.out_tokens = act.out_ids;
  ap.workspace = act.argmax_ws;
  launch_argmax(ap, stream);
  seq_len[size_t(seq)] = past + n;
}

// One decode step of n sequences through a captured graph (captured on first use per n).
void CudaEngine::Impl::decode(const int32_t* seqs, const int32_t* tokens, int n) {
  FATHOM_CHECK(n >= 1 && n <= max_batch, "decode of ", n, " sequences; the engine was loaded for ",
               max_batch);
  check_tokens(tokens, n);
  for (int i = 0; i < n; ++i) {
    FATHOM_CHECK(kv->is_active(seqs[i]), "decode: sequence ", seqs[i], " is not active");
    for (int j = 0; j < i; ++j)
      FATHOM_CHECK(seqs[i] != seqs[j], "decode: sequence ", seqs[i], " appears twice in the batch");
    FATHOM_CHECK(seq_len[size_t(seqs[i])] + 1 <= n_ctx, "sequence ", seqs[i], " holds ",
                 seq_len[size_t(seqs[i])], " tokens: one more exceeds the context of ", n_ctx);
  }
  int64_t need_blocks = 0;
  for (int i = 0; i < n; ++i) {
    const int64_t len = seq_len[size_t(seqs[i])];
    if (len + 1 > kv->capacity(seqs[i])) ++need_blocks;
  }
  FATHOM_CHECK(need_blocks <= kv->n_free_blocks(), "KV cache full: ", need_blocks,
               " sequences need a new block but only ", kv->n_free_blocks(), " are free");
  for (int i = 0; i < n; ++i) kv->reserve(seqs[i], seq_len[size_t(seqs[i])] + 1);

  int32_t* h = static_cast<int32_t*>(host_in.data());
  const int64_t mbps = kv->max_blocks_per_seq();
  for (int i = 0; i < n; ++i) {
    const int32_t s = seqs[i];
    const int64_t p = seq_len[size_t(s)];
    h[in_layout.tokens() + i] = tokens[i];
    h[in_layout.pos() + i] = int32_t(p);
    h[in_layout.slots() + i] = int32_t(kv->slot(s, p));
    h[in_layout.seq_start() + i] = i;
    h[in_layout.kv_len() + i] = int32_t(p + 1);
  }
  h[in_layout.seq_start() + n] = n;
  size_t bytes = size_t(in_layout.size()) * 4;
  const std::vector<int32_t> batch(seqs, seqs + n);
  const bool table_stale = batch_table_version != kv->version() || batch_table_seqs != batch;
  if (table_stale) {
    // Block-table rows of this batch, in batch order, after the header in the pinned buffer.
    int32_t* rows_out = h + in_layout.size();
    for (int i = 0; i < n; ++i)
      std::memcpy(rows_out + i * mbps, kv->table().data() + int64_t(seqs[i]) * mbps, size_t(mbps) * 4);
  }
  CUDA_CHECK(cudaMemcpyAsync(act.in, h, bytes, cudaMemcpyHostToDevice, stream));
  if (table_stale) {
    CUDA_CHECK(cudaMemcpyAsync(act.batch_table, h + in_layout.size(), size_t(n) * mbps * 4,
                               cudaMemcpyHostToDevice, stream));
    batch_table_version = kv->version();
    batch_table_seqs = batch;
  }

  auto run_step = [&] {
    forward(n, n, act.batch_table, 1, int32_t(n_ctx), n, true);
    ArgmaxParams ap;
    ap.logits = act.logits;
    ap.n_rows = n;
    ap.n_vocab = cfg.n_vocab;
    ap.out_tokens = act.out_ids;
    ap.workspace = act.argmax_ws;
    launch_argmax(ap, stream);
  };
  if (!opt.use_graphs || trace) {
    run_step();
  } else {
    auto it = graphs.find(n);
    if (it == graphs.end()) {
      // First step of this batch size: run it eagerly (this is the real step, and it loads every
      // kernel module outside capture), then capture the same launches for the next steps.
      run_step();
      cudaGraph_t graph = nullptr;
      CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
      try {
        run_step();
      } catch (...) {
        cudaStreamEndCapture(stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();
        throw;
      }
      CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
      cudaGraphExec_t exec = nullptr;
      const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      CUDA_CHECK(err);
      graphs.emplace(n, exec);
    } else {
      CUDA_CHECK(cudaGraphLaunch(it->second, stream));
    }
  }
  for (int i = 0; i < n; ++i) ++seq_len[size_t(seqs[i])];
}

void CudaEngine::Impl::read_logits(int64_t n_rows, float* host) {
  CUDA_CHECK(cudaMemcpyAsync(host, act.logits, size_t(n_rows * cfg.n_vocab) * 4,
                             cudaMemcpyDeviceToHost, stream));
}

// ---- public API -----------------------------------------------------------------------------

CudaEngine::CudaEngine(const Model& model, const CudaEngineOptions& options)
    : impl_(std::make_unique<Impl>(model, options)) {}
CudaEngine::~CudaEngine() = default;

int64_t CudaEngine::n_vocab() const { return impl_->cfg.n_vocab; }
int64_t CudaEngine::n_ctx() const { return impl_->n_ctx; }
int64_t CudaEngine::n_past() const { return impl_->seq_len[0]; }
const CudaMemoryReport& CudaEngine::memory() const { return impl_->mem; }
double CudaEngine::last_gpu_ms() const {
  Impl& m = *impl_;
  float ms = 0;
  if (m.ev_pending && cudaEventElapsedTime(&ms, m.ev_begin, m.ev_end) == cudaSuccess) {
    m.last_ms = ms;
    m.ev_pending = false;
  }
  return m.last_ms;
}
const ModelConfig& CudaEngine::config() const { return impl_->cfg; }
std::string CudaEngine::device_name() const { return impl_->device_name; }
void CudaEngine::set_trace(CudaTraceFn fn, bool softmax_sums) {
  Impl& m = *impl_;
  Impl::DeviceGuard guard(m.opt.device);
  m.trace = std::move(fn);
  if (softmax_sums && m.trace && !m.v_ones) {
    // Diagnostics only: a one-off allocation outside any decode loop.
    const size_t elems = size_t(m.kv->n_blocks()) * size_t(m.cfg.n_head_kv) *
                         size_t(m.opt.kv_block_size) * size_t(m.head_dim);
    CUDA_CHECK(cudaMalloc(&m.v_ones, elems * 2));
    const std::vector<uint16_t> ones(elems, 0x3C00);  // fp16 1.0
    CUDA_CHECK(cudaMemcpy(m.v_ones, ones.data(), elems * 2, cudaMemcpyHostToDevice));
  } else if ((!softmax_sums || !m.trace) && m.v_ones) {
    CUDA_CHECK(cudaFree(m.v_ones));
    m.v_ones = nullptr;
  }
}

// The NVTX range of a public eval call (fathom profile's token steps): "decode step <position>"
// for one token, else "prefill".
static NvtxRange step_range(const std::vector<int64_t>& seq_len, int32_t seq, int64_t n) {
  const bool known = seq >= 0 && size_t(seq) < seq_len.size();
  return NvtxRange(n == 1 ? "decode step" : "prefill", n == 1 && known ? seq_len[size_t(seq)] : -1);
}

int32_t CudaEngine::eval_seq(int32_t seq, const int32_t* tokens, int64_t n, float* logits_last) {
  Impl& m = *impl_;
  Impl::DeviceGuard guard(m.opt.device);
  const NvtxRange range = step_range(m.seq_len, seq, n);
  return m.timed([&] { return eval_seq_untimed(seq, tokens, n, logits_last); });
}

int32_t CudaEngine::eval_seq_untimed(int32_t seq, const int32_t* tokens, int64_t n, float* logits_last) {
  Impl& m = *impl_;
  FATHOM_CHECK(m.kv->is_active(seq), "eval: sequence ", seq, " is not active");
  FATHOM_CHECK(n > 0, "eval: no tokens");
  if (n == 1 && !m.trace) {
    m.decode(&seq, tokens, 1);
  } else {
    m.prefill(seq, tokens, n);
  }
  int32_t* out = static_cast<int32_t*>(m.host_out.data());
  CUDA_CHECK(cudaMemcpyAsync(out, m.act.out_ids, 4, cudaMemcpyDeviceToHost, m.stream));
  if (logits_last) m.read_logits(1, logits_last);
  m.mark_end();
  CUDA_CHECK(cudaStreamSynchronize(m.stream));  // the one sync per step: reading the id
  return out[0];
}

void CudaEngine::eval(const int32_t* tokens, int64_t n, float* logits_last) {
  eval_seq(0, tokens, n, logits_last);
}

int32_t CudaEngine::eval_greedy(const int32_t* tokens, int64_t n) {
  return eval_seq(0, tokens, n, nullptr);
}

int32_t CudaEngine::eval_sample(const int32_t* tokens, int64_t n, const SamplerParams& sp) {
  FATHOM_CHECK(sp.repeat_penalty == 1.0f && sp.freq_penalty == 0.0f && sp.presence_penalty == 0.0f,
               "GPU sampling has no repetition penalties (repeat ", sp.repeat_penalty, ", frequency ",
               sp.freq_penalty, ", presence ", sp.presence_penalty,
               "); use eval() with fathom::Sampler for them");
  if (sp.temp <= 0.0f) return eval_greedy(tokens, n);
  Impl& m = *impl_;
  Impl::DeviceGuard guard(m.opt.device);
  const NvtxRange range = step_range(m.seq_len, 0, n);
  return m.timed([&] { return eval_sample_untimed(tokens, n, sp); });
}

int32_t CudaEngine::eval_sample_untimed(const int32_t* tokens, int64_t n, const SamplerParams& sp) {
  Impl& m = *impl_;
  FATHOM_CHECK(n > 0, "eval: no tokens");
  if (n == 1 && !m.trace) {
    const int32_t seq = 0;
    m.decode(&seq, tokens, 1);
  } else {
    m.prefill(0, tokens, n);
  }
  SampleParams p;
  p.logits = m.act.logits;
  p.n_rows = 1;
  p.n_vocab = m.cfg.n_vocab;
  p.temp = sp.temp;
  p.top_k = sp.top_k;
  p.top_p = sp.top_p;
  p.min_p = sp.min_p;
  p.seed = sp.seed;
  p.rng_counter = m.act.rng_counter;  // sequence 0's counter
  p.out_tokens = m.act.out_ids;
  launch_sample(p, m.stream);
  int32_t* out = static_cast<int32_t*>(m.host_out.data());
  CUDA_CHECK(cudaMemcpyAsync(out, m.act.out_ids, 4, cudaMemcpyDeviceToHost, m.stream));
  m.mark_end();
  CUDA_CHECK(cudaStreamSynchronize(m.stream));
  return out[0];
}

void CudaEngine::decode_batch(const int32_t* seqs, const int32_t* tokens, int n, int32_t* out_ids,
                              float* logits) {
  Impl& m = *impl_;
  Impl::DeviceGuard guard(m.opt.device);
  const NvtxRange range = step_range(m.seq_len, n >= 1 ? seqs[0] : -1, 1);
  m.timed([&] {
    m.decode(seqs, tokens, n);
    int32_t* out = static_cast<int32_t*>(m.host_out.data());
    CUDA_CHECK(cudaMemcpyAsync(out, m.act.out_ids, size_t(n) * 4, cudaMemcpyDeviceToHost, m.stream));
    if (logits) m.read_logits(n, logits);
    m.mark_end();
    CUDA_CHECK(cudaStreamSynchronize(m.stream));
    std::memcpy(out_ids, out, size_t(n) * 4);
  });
}

void CudaEngine::truncate(int64_t n) {
  Impl& m = *impl_;
  Impl::DeviceGuard guard(m.opt.device);
  if (n == 0) CUDA_CHECK(cudaMemsetAsync(m.act.rng_counter, 0, 8, m.stream));  // fresh draws
  FATHOM_CHECK(n >= 0 && n <= m.seq_len[0], "truncate(", n, ") outside the cached 0..",
               m.seq_len[0]);
  m.kv->truncate(0, n);
  m.seq_len[0] = n;
}

int32_t CudaEngine::add_sequence() {
  Impl& m = *impl_;
  const int32_t s = m.kv->add_sequence();
  m.seq_len[size_t(s)] = 0;
  return s;
}

void CudaEngine::remove_sequence(int32_t seq) {
  Impl& m = *impl_;
  FATHOM_CHECK(seq != 0, "sequence 0 belongs to the Engine interface; truncate(0) clears it");
  m.kv->remove_sequence(seq);
  m.seq_len[size_t(seq)] = 0;
}

int64_t CudaEngine::seq_len(int32_t seq) const {
  const Impl& m = *impl_;
  FATHOM_CHECK(m.kv->is_active(seq), "sequence ", seq, " is not active");
  return m.seq_len[size_t(seq)];
}

}  // namespace fathom
