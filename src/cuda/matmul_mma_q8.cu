// Small-batch quantized matmul on the tensor cores: the host side (launch planning, dispatch).
// Contract in matmul_mma_q8.cuh, the kernel and its layout in matmul_mma_q8_kernel.cuh.
//
// Why: the dp4a GEMV (matmul_gemv_q8.cu) does 8 x the dp4a work per weight at 8 tokens and stops
// at 8; above it the engine took the fp32 GEMV (9..16) or dequantized whole matrices to bf16 for
// cuBLASLt (> 16). Here one mma.sync.m16n8k32 (int8 in, int32 out) does the 8192 multiply-adds of
// 16 weight rows x 32 k x 8 columns, so the per-weight cost (unpacking codes to int8 fragments) is
// paid once for all tokens and the per-token cost is the fp32 scaling of each 32-k sub-block.
#include "cuda/matmul_mma_q8.cuh"

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "cuda/cuda_check.cuh"
#include "cuda/device_info.h"
#include "cuda/matmul_mma_q8_kernel.cuh"
#include "cuda/pdl.cuh"
#include "fathom/error.h"

namespace fathom::cuda {
namespace {

using namespace mmq;

template <typename F>
bool dispatch_mmq(GgmlType t, F&& f) {
  switch (t) {
    case GgmlType::Q4_0: f(std::integral_constant<GgmlType, GgmlType::Q4_0>{}); return true;
    case GgmlType::Q4_1: f(std::integral_constant<GgmlType, GgmlType::Q4_1>{}); return true;
    case GgmlType::Q5_0: f(std::integral_constant<GgmlType, GgmlType::Q5_0>{}); return true;
    case GgmlType::Q5_1: f(std::integral_constant<GgmlType, GgmlType::Q5_1>{}); return true;
    case GgmlType::Q8_0: f(std::integral_constant<GgmlType, GgmlType::Q8_0>{}); return true;
    case GgmlType::Q4_K: f(std::integral_constant<GgmlType, GgmlType::Q4_K>{}); return true;
    case GgmlType::Q5_K: f(std::integral_constant<GgmlType, GgmlType::Q5_K>{}); return true;
    case GgmlType::Q6_K: f(std::integral_constant<GgmlType, GgmlType::Q6_K>{}); return true;
    default: return false;
  }
}

int nt_for(int64_t n_tokens) {
  return n_tokens <= 4 ? 1 : n_tokens <= 8 ? 2 : n_tokens <= 16 ? 4 : n_tokens <= 32 ? 8 : 16;
}
// The bf16 variant's n-tiles are 8 tokens: at least NT 2.
int nt_for(int64_t n_tokens, bool bf) { return bf ? std::max(2, nt_for(n_tokens)) : nt_for(n_tokens); }

template <typename F>
void dispatch_nt(int nt, F&& f) {
  switch (nt) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 8: f(std::integral_constant<int, 8>{}); break;
    default: f(std::integral_constant<int, 16>{}); break;
  }
}

// The per-type instance files' entry points (matmul_mma_q8_inst_<type>.cu).
const void* type_kernel(GgmlType t, int nt) {
  switch (t) {
    case GgmlType::Q4_0: return mmq_kernel_q4_0(nt);
    case GgmlType::Q4_1: return mmq_kernel_q4_1(nt);
    case GgmlType::Q5_0: return mmq_kernel_q5_0(nt);
    case GgmlType::Q5_1: return mmq_kernel_q5_1(nt);
    case GgmlType::Q8_0: return mmq_kernel_q8_0(nt);
    case GgmlType::Q4_K: return mmq_kernel_q4_k(nt);
    case GgmlType::Q5_K: return mmq_kernel_q5_k(nt);
    case GgmlType::Q6_K: return mmq_kernel_q6_k(nt);
    default: return nullptr;
  }
}
void type_launch(GgmlType t, int nt, const Args& a, unsigned grid, size_t smem, cudaStream_t stream) {
  switch (t) {
    case GgmlType::Q4_0: mmq_launch_q4_0(nt, a, grid, smem, stream); break;
    case GgmlType::Q4_1: mmq_launch_q4_1(nt, a, grid, smem, stream); break;
    case GgmlType::Q5_0: mmq_launch_q5_0(nt, a, grid, smem, stream); break;
    case GgmlType::Q5_1: mmq_launch_q5_1(nt, a, grid, smem, stream); break;
    case GgmlType::Q8_0: mmq_launch_q8_0(nt, a, grid, smem, stream); break;
    case GgmlType::Q4_K: mmq_launch_q4_k(nt, a, grid, smem, stream); break;
    case GgmlType::Q5_K: mmq_launch_q5_k(nt, a, grid, smem, stream); break;
    case GgmlType::Q6_K: mmq_launch_q6_k(nt, a, grid, smem, stream); break;
    default: FATHOM_CHECK(false, "mma_q8: weight type ", ggml_type_name(t), " has no tensor-core kernel");
  }
}

// Split-K choice. Cost of a plan in units of one tile-stage of weights (256 rows x 256 k), for the
// busiest SM: (CTAs per SM) x [tiles per CTA x (stages per split + partial round trip) + x
// quantization]. The partial round trip of a tile (256 x 4 NT fp32 written, read back once) costs
// 32 NT / bytes-per-row-stage tile-stages; quantizing x of a stage reads 4 n bytes per k from L2,
// counted at half weight (L2 is faster than DRAM): 2 n / bytes-per-row-stage. Ties: fewer splits.
// Worked example, H200 (132 SMs), Q4_K 4096 x 4096 at 8 tokens (16 tiles, 16 stages): S = 8 runs
// 128 CTAs of 2 stages each (cost 2.7); S = 4 leaves half the SMs idle (cost 4.9).
struct PlanIn {
  int n_tiles, n_kst, nt, n_tokens, row_stage_bytes, threads;
  size_t ring, scale_bytes, smem_limit, partial_floats;
  const void* kernel;
};
MmaQ8Plan choose_plan(const PlanIn& in, const DeviceInfo& dev) {
  static const int forced = [] {
    const char* e = std::getenv("FATHOM_MMQ_SPLIT");
    return e ? std::atoi(e) : 0;
  }();
  MmaQ8Plan best;
  double best_cost = 1e300;
  const int s_max = std::min(in.n_kst, kMaxSplits);
  for (int S = 1; S <= s_max; ++S) {
    if (forced > 0 && S != std::min(forced, s_max)) continue;
    const int kst = (in.n_kst + S - 1) / S;
    // ring, x planes and scales, the warps' decoded-scale buffers, the last-CTA flag
    const size_t smem = in.ring + x_bytes(in.nt, kst * kStageK) + in.scale_bytes + 16;
    if (smem > in.smem_limit) continue;
    if (S > 1 && (in.n_tiles > kCounters ||
                  size_t(in.n_tiles) * size_t(S) * 1024 * size_t(in.nt) > in.partial_floats))
      continue;
    const int bps = blocks_per_sm(in.kernel, in.threads, smem);
    const int slots = dev.sm_count * bps;
    const int G = std::max(1, std::min(in.n_tiles, slots / S));
    const int grid = G * S;
    const int tiles_per_cta = (in.n_tiles + G - 1) / G;
    const int ctas_per_sm = (grid + dev.sm_count - 1) / dev.sm_count;
    const double part = S > 1 ? 32.0 * in.nt / in.row_stage_bytes : 0.0;
    const double xq = 2.0 * in.n_tokens / in.row_stage_bytes;
    const double cost = double(ctas_per_sm) * (tiles_per_cta * (kst + part) + kst * xq);
    if (cost < best_cost * (1.0 - 1e-9)) {
      best_cost = cost;
      best.splits = S;
      best.grid = grid;
      best.tiles = in.n_tiles;
      best.kstages = kst;
      best.nt = in.nt;
      best.smem = smem;
    }
  }
  return best;
}

struct Prepared {
  Args a;
  MmaQ8Plan plan;
  const void* kernel = nullptr;
};

std::atomic<int> g_bf16_min_override{0};

// The bf16 variant (Q4_K only) from this many tokens on: FATHOM_MMQ_BF16_MIN (A/B runs; 65 = never),
// else 8. Measured (docs/perf/mma_q8.md, "Session 16"): faster than the int8 kernel from 8 tokens
// on (14336 x 4096: 25.5 against 30.2 us at 8, 31.8 / 42.4 at 16, 51.0 / 114.6 at 32). Below 8 the
// variant's 8-token n-tile would be mostly padding. The engine keeps the int8 kernel (its numerics
// are those of the batch-1 GEMV) for matrices it would not dequantize (MmaQ8Params::allow_bf16).
int64_t bf16_min_tokens() {
  const int o = g_bf16_min_override.load();
  if (o > 0) return o;
  static const int64_t env = [] {
    const char* e = std::getenv("FATHOM_MMQ_BF16_MIN");
    return e && *e ? std::max<int64_t>(2, std::atoll(e)) : int64_t(8);
  }();
  return env;
}

// cuTensorMapEncodeTiled through the runtime's driver entry point (no link to libcuda); null when
// the driver has none.
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return PFN_cuTensorMapEncodeTiled_v12000(nullptr);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// The bf16 variant's kernel: per-warp tensor-map rings (mma_q8_bf_kernel, sm_90 code) unless
// FATHOM_MMQ_BF_RING=0 (the CTA-ring kernel, A/B runs), the device runs no sm_90 code or the driver
// cannot encode tensor maps.
bool bf_warp_rings() {
  static const bool on = [] {
    const char* e = std::getenv("FATHOM_MMQ_BF_RING");
    return !(e && std::strcmp(e, "0") == 0) && sm90_code_ok() && tensor_map_encoder() != nullptr;
  }();
  return on;
}

// Q6_K in the bf16 variant (mma_q8_bf_kernel<Q6_K>): written in session 17 without a GPU to run it,
// so off unless FATHOM_MMQ_BF16_Q6K=1 or mma_q8_set_bf16_q6k(1) (the GPU tests) until measured.
std::atomic<int> g_bf16_q6k_override{-1};
bool bf16_q6k_on() {
  const int o = g_bf16_q6k_override.load();
  if (o >= 0) return o == 1;
  static const bool env = [] {
    const char* e = std::getenv("FATHOM_MMQ_BF16_Q6K");
    return e && std::strcmp(e, "1") == 0;
  }();
  return env;
}

// Segment s's weights as a 2-D uint8 tensor (row_bytes wide, rows tall) for mma_q8_bf_kernel: a box
// of box_bytes (BfFmt: one Q4_K super-block, or 240 bytes holding a Q6_K one) x box_rows rows, no
// swizzle (the ring's row pitch is the box width).
void encode_rows_map(CUtensorMap* m, const void* w, int64_t row_bytes, int64_t rows, int box_bytes, int box_rows) {
  const cuuint64_t dim[2] = {cuuint64_t(row_bytes), cuuint64_t(rows)};
  const cuuint64_t stride[1] = {cuuint64_t(row_bytes)};
  const cuuint32_t box[2] = {cuuint32_t(box_bytes), cuuint32_t(box_rows)};
  const cuuint32_t estride[2] = {1u, 1u};
  const CUresult r = tensor_map_encoder()(m, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<void*>(w), dim, stride, box,
                                          estride, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                                          CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  FATHOM_CHECK(r == CUDA_SUCCESS, "mma_q8: cuTensorMapEncodeTiled failed (", int(r), ") for a ", rows, " x ",
               row_bytes, "-byte weight matrix");
}

// Shared memory of the weight ring (and its barriers) of a launch.
template <GgmlType T, int NT>
size_t ring_bytes_of(bool bf) {
  if (bf && bf_warp_rings()) {
    if constexpr ((T == GgmlType::Q4_K || T == GgmlType::Q6_K) && NT % 2 == 0) return bf_ring_bytes<T, NT>();
  }
  return ring_bytes<T, NT>();
}

Prepared prepare(const MmaQ8Params& p) {
  FATHOM_CHECK(p.n_tokens >= 1 && p.n_tokens <= kMmaQ8MaxTokens, "mma_q8: n_tokens ", p.n_tokens, " outside 1..",
               kMmaQ8MaxTokens);
  FATHOM_CHECK(p.n_seg >= 1 && p.n_seg <= 3 && (!p.glu || p.n_seg == 2) && (!p.residual || p.n_seg == 1),
               "mma_q8: bad segment set (n_seg ", p.n_seg, ", glu ", p.glu, ")");
  const int64_t row_bytes = int64_t(ggml_row_bytes(p.type, p.cols));
  FATHOM_CHECK(p.cols > 0 && p.cols % kStageK == 0 && row_bytes % 16 == 0, "mma_q8: cols ", p.cols,
               " must be a positive multiple of 256 with 16-byte rows for ", ggml_type_name(p.type));
  FATHOM_CHECK(reinterpret_cast<uintptr_t>(p.x) % 16 == 0, "mma_q8: x must be 16-byte aligned");
  Prepared r;
  Args& a = r.a;
  a = Args{};
  a.n_seg = p.n_seg;
  a.cols = p.cols;
  a.row_bytes = row_bytes;
  a.x = p.x;
  a.n_tokens = int(p.n_tokens);
  a.residual = p.residual;
  a.glu = p.glu ? (p.glu_kind == GluKind::SWIGLU ? 1 : 2) : 0;
  a.probe = p.probe;
  int tiles = 0;
  for (int s = 0; s < 4; ++s) a.tile_begin[s] = INT_MAX;
  for (int s = 0; s < p.n_seg; ++s) {
    FATHOM_CHECK(p.seg[s].w && p.seg[s].y && p.seg[s].rows > 0, "mma_q8: segment ", s, " is empty");
    FATHOM_CHECK(reinterpret_cast<uintptr_t>(p.seg[s].w) % 16 == 0, "mma_q8: weights must be 16-byte aligned");
    a.seg[s] = Seg{static_cast<const uint8_t*>(p.seg[s].w), p.seg[s].y, p.seg[s].bias, p.seg[s].rows};
    a.tile_begin[s] = tiles;
    if (!p.glu) tiles += int((p.seg[s].rows + kTileRows - 1) / kTileRows);
  }
  if (p.glu) {
    FATHOM_CHECK(p.seg[0].rows == p.seg[1].rows, "mma_q8: gate and up rows differ (", p.seg[0].rows, " vs ",
                 p.seg[1].rows, ")");
    tiles = int((p.seg[0].rows + kTileRows / 2 - 1) / (kTileRows / 2));
  }
  if (!p.glu) a.tile_begin[p.n_seg] = tiles;
  a.n_tiles = tiles;
  a.n_kst = int(p.cols / kStageK);

  const DeviceInfo dev = device_info();
  const bool bf = p.allow_bf16 && mma_q8_bf16(p.type, p.n_tokens);
  const int nt = nt_for(p.n_tokens, bf);
  size_t partial_floats = 0;
  if (p.workspace && p.workspace_bytes > kMmaQ8WorkspaceCounterBytes + 256) {
    FATHOM_CHECK(reinterpret_cast<uintptr_t>(p.workspace) % 256 == 0, "mma_q8: workspace must be 256-byte aligned");
    partial_floats = (p.workspace_bytes - kMmaQ8WorkspaceCounterBytes) / sizeof(float);
    a.counters = static_cast<int*>(p.workspace);
    a.partials = reinterpret_cast<float*>(static_cast<uint8_t*>(p.workspace) + kMmaQ8WorkspaceCounterBytes);
  }
  const bool ok = dispatch_mmq(p.type, [&](auto tc) {
    constexpr GgmlType T = decltype(tc)::value;
    dispatch_nt(nt, [&](auto ntc) {
      constexpr int NT = decltype(ntc)::value;
      PlanIn in;
      in.n_tiles = tiles;
      in.n_kst = a.n_kst;
      in.nt = NT;
      in.threads = bf ? kThreadsOf<NT, true> : kThreadsOf<NT>;
      in.n_tokens = int(p.n_tokens);
      in.row_stage_bytes = Fmt<T>::bytes;
      in.ring = ring_bytes_of<T, NT>(bf);
      in.scale_bytes = scale_bytes<T>();
      in.smem_limit = size_t(dev.max_smem_optin);
      in.partial_floats = partial_floats;
      in.kernel = !bf                  ? type_kernel(T, NT)
                  : T == GgmlType::Q4_K ? mmq_kernel_q4_k_bf(NT, bf_warp_rings())
                                        : mmq_kernel_q6_k_bf(NT, true);  // mma_q8_bf16: Q6_K only with rings
      r.kernel = in.kernel;
      r.plan = choose_plan(in, dev);
      r.plan.bf16 = bf;
    });
  });
  FATHOM_CHECK(ok, "mma_q8: weight type ", ggml_type_name(p.type), " has no tensor-core kernel");
  // splits == 0: x of this many tokens fits shared memory only with more splits than the
  // workspace holds partials for; launch_mma_q8 then runs the tokens in chunks.
  FATHOM_CHECK(r.plan.splits > 0 || p.n_tokens > 1, "mma_q8: no launch plan fits ", dev.max_smem_optin,
               " bytes of shared memory (", ggml_type_name(p.type), ", cols ", p.cols, ")");
  a.splits = r.plan.splits;
  a.kr_max = r.plan.kstages * kStageK;
  if (r.plan.splits > 0 && bf && bf_warp_rings())
    for (int s = 0; s < p.n_seg; ++s)
      encode_rows_map(&a.tmap[s], a.seg[s].w, a.row_bytes, a.seg[s].rows,
                      p.type == GgmlType::Q6_K ? BfFmt<GgmlType::Q6_K>::box : BfFmt<GgmlType::Q4_K>::box, p.glu ? 8 : 16);
  return r;
}

}  // namespace

bool mma_q8_bf16(GgmlType type, int64_t n_tokens) {
  const bool typed = type == GgmlType::Q4_K || (type == GgmlType::Q6_K && bf16_q6k_on() && bf_warp_rings());
  return typed && n_tokens >= bf16_min_tokens() && n_tokens <= kMmaQ8MaxTokens;
}

void mma_q8_set_bf16_q6k(int v) { g_bf16_q6k_override.store(v < 0 ? -1 : v ? 1 : 0); }

void mma_q8_set_bf16_min_tokens(int n) { g_bf16_min_override.store(n > 0 ? n : 0); }

bool mma_q8_supports(GgmlType type, int64_t n_tokens, int64_t cols) {
  static const bool off = [] {
    const char* e = std::getenv("FATHOM_MMQ");
    return e && std::strcmp(e, "0") == 0;
  }();
  if (off || n_tokens < 1 || n_tokens > kMmaQ8MaxTokens || cols <= 0 || cols % kStageK != 0 || cols > (int64_t(1) << 20))
    return false;
  if (ggml_row_bytes(type, cols) % 16 != 0) return false;
  // The smallest launch (one 256-k stage per split) must fit the device's shared memory: the ring
  // alone is 74-123 KB, over the 99 KB of sm_86 / sm_89, where the callers take their other paths
  // instead of failing at launch with "no launch plan fits".
  bool fits = false;
  const bool known = dispatch_mmq(type, [&](auto tc) {
    constexpr GgmlType T = decltype(tc)::value;
    const bool bf = mma_q8_bf16(type, n_tokens);
    dispatch_nt(nt_for(n_tokens, bf), [&](auto ntc) {
      constexpr int NT = decltype(ntc)::value;
      const size_t need = ring_bytes_of<T, NT>(bf) + x_bytes(NT, kStageK) + size_t(scale_bytes<T>()) + 16;
      fits = need <= size_t(device_info().max_smem_optin);
    });
  });
  return known && fits;
}

size_t mma_q8_workspace_bytes(int64_t max_tokens, int64_t max_rows) {
  const int nt = nt_for(std::min<int64_t>(std::max<int64_t>(max_tokens, 1), kMmaQ8MaxTokens));
  const int64_t tiles = (max_rows + kTileRows - 1) / kTileRows + 2;  // + partial tiles of Q/K/V
  // Room for 16 splits of every tile (with less room the planner picks fewer). 8 was too few for the
  // bf16 variant on 14336-column rows at 32 tokens: its x fits beside the per-warp rings from 14
  // splits on, and with no plan the launch ran as two 16-token halves reading the weights twice
  // (device_s17c.sh, 4096 x 14336: 48.6 us against 37.1).
  const size_t partial = size_t(tiles) * 16 * 1024 * size_t(nt) * sizeof(float);
  return kMmaQ8WorkspaceCounterBytes + std::min<size_t>(partial, size_t(32) << 20);
}

namespace {
// Tokens of the first chunk when p has no plan: about half, rounded up to a multiple of 4 (the
// tokens of an n-tile). Example: the Llama-3-8B LM head (Q6_K, 501 tiles) at 32 tokens needs 2
// splits (x of 32 x 4096 tokens does not fit beside the ring) and 33 MB of partials, over the
// engine's 32 MB: it runs as 2 x 16 tokens (2 splits, 16 MB each), reading the weights twice.
int64_t first_chunk(int64_t n) {
  const int64_t h = ((n + 1) / 2 + 3) / 4 * 4;
  return h < n ? h : n / 2;
}
MmaQ8Params token_chunk(const MmaQ8Params& p, int64_t t0, int64_t n) {
  MmaQ8Params c = p;
  c.n_tokens = n;
  c.x = p.x + t0 * p.cols;
  for (int s = 0; s < p.n_seg; ++s) c.seg[s].y = p.seg[s].y + t0 * p.seg[s].rows;
  if (p.residual) c.residual = p.residual + t0 * p.seg[0].rows;
  return c;
}
}  // namespace

MmaQ8Plan mma_q8_plan(const MmaQ8Params& p) {
  const MmaQ8Plan plan = prepare(p).plan;
  return plan.splits > 0 ? plan : mma_q8_plan(token_chunk(p, 0, first_chunk(p.n_tokens)));
}

void launch_mma_q8(const MmaQ8Params& p, cudaStream_t stream) {
  const Prepared r = prepare(p);
  if (r.plan.splits == 0) {
    const int64_t h = first_chunk(p.n_tokens);
    launch_mma_q8(token_chunk(p, 0, h), stream);
    MmaQ8Params rest = token_chunk(p, h, p.n_tokens - h);
    rest.probe = nullptr;  // sized for the first chunk's plan (mma_q8_plan)
    launch_mma_q8(rest, stream);
    return;
  }
  double wbytes = 0.0, rows_total = 0.0;
  for (int s = 0; s < p.n_seg; ++s) {
    wbytes += double(p.seg[s].rows) * double(r.a.row_bytes);
    rows_total += double(p.seg[s].rows);
  }
  const double out_rows = p.glu ? double(p.seg[0].rows) : rows_total;
  launch_cost_hint(wbytes + double(p.n_tokens) * double(p.cols) * 4.0 + double(p.n_tokens) * out_rows * 4.0,
                   2.0 * double(p.n_tokens) * rows_total * double(p.cols));
  if (r.plan.bf16 && p.type == GgmlType::Q6_K) mmq_launch_q6_k_bf(r.plan.nt, true, r.a, unsigned(r.plan.grid), r.plan.smem, stream);
  else if (r.plan.bf16) mmq_launch_q4_k_bf(r.plan.nt, bf_warp_rings(), r.a, unsigned(r.plan.grid), r.plan.smem, stream);
  else type_launch(p.type, r.plan.nt, r.a, unsigned(r.plan.grid), r.plan.smem, stream);
}

}  // namespace fathom::cuda
