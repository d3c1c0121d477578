// Decode GEMV for F16 / BF16 weights at 1..8 tokens: y = x @ W^T (+ bias) (+ residual).
//
// Bytes: the weight once (2 per element) -- the floor is rows * cols * 2 / DRAM bandwidth
// (Llama-3-8B 14336x4096: 117 MB, 26 us at 4.5 TB/s). The fp32-dequantizing GEMV
// (matmul_gemv.cu) reached 69% of the copy bandwidth on the large F16 shapes and 27% on
// 1024x4096: it stages x through shared memory with block barriers per chunk and keeps only one
// unit per row in flight. Here there is no shared-memory stage: each lane streams 16-byte pieces
// (8 elements) of two rows, kU pieces per row in flight before any is used (the first batch is
// requested before pdl_wait(), overlapping the previous kernel's tail), and reads x (fp32, L1/L2
// resident) with 16-byte loads; products accumulate in fp32.
//
// Work split: a warp owns 2 consecutive rows; the S warps of a group (S in 1, 2, 4, 8, chosen so
// that small matrices still fill the GPU) take interleaved 256-element spans of the row and add
// their partials through shared memory. Every weight byte is read once whatever the batch.
//
// Grouped launches (GemvHalfParams): rows are numbered across up to 3 segments (Q, K, V), each row
// reading its own matrix and writing its own output; with glu the warp's two rows are gate row i
// and up row i, so act(g) * u forms in the lane that stores it. A fused norm: every block sums
// x[t]^2 itself (x is ~16 KB, L2-resident; the weight loads are in flight meanwhile), multiplies
// x by norm_w as it reads it and the row sums by rsqrt(mean + eps) at the end -- one launch where
// the decode step had rms_norm, 3 GEMVs and 2 GEMVs + glu.
#include "cuda/matmul_gemv_f16.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>

#include "cuda/activation_fn.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/pdl.cuh"

namespace fathom::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kR = 2;    // rows per warp
constexpr int kU = 4;    // 16-byte pieces per row in flight per lane
constexpr int kSpan = 256;  // elements of a row per warp step (32 lanes x 8)

struct HalfSeg {
  const uint8_t* w;
  int64_t rows;
  float* y;
  const float* bias;
};

struct HalfArgs {
  HalfSeg seg[3];
  int n_seg;
  int64_t rows;  // all segments' rows (with glu: 2 x the gate rows, interleaved)
  int64_t cols;
  const float* x;
  const float* residual;  // n_seg == 1 only
  const float* norm_w;    // nullable: fused RMS norm
  float norm_eps;
  int glu;                // 0 none, 1 SwiGLU, 2 GeGLU
  int n_tokens;
  int ksplit;
};

// Segment and row within it of global row g.
__device__ __forceinline__ void seg_row(const HalfArgs& a, int64_t g, int& s, int64_t& r) {
  if (a.glu) {
    s = int(g & 1);
    r = g >> 1;
    return;
  }
  s = 0;
  r = g;
  if (a.n_seg > 1 && r >= a.seg[0].rows) {
    r -= a.seg[0].rows;
    s = 1;
    if (a.n_seg > 2 && r >= a.seg[1].rows) {
      r -= a.seg[1].rows;
      s = 2;
    }
  }
}

template <bool BF16>
__device__ __forceinline__ void unpack8(const uint4 q, float (&f)[8]) {
  const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if (BF16) {
      f[2 * i] = __uint_as_float(w[i] << 16);
      f[2 * i + 1] = __uint_as_float(w[i] & 0xFFFF0000u);
    } else {
      const float2 v = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
      f[2 * i] = v.x;
      f[2 * i + 1] = v.y;
    }
  }
}

// G: a grouped launch (segments, glu, fused norm); single-matrix launches keep the leaner code
// (79-80 registers at NB 1, three blocks per SM; the grouped code needs ~96).
template <bool BF16, int NB, bool G>
__global__ void __launch_bounds__(kThreads) gemv_half_kernel(const __grid_constant__ HalfArgs a) {
  __shared__ float part[kWarps * kR * NB];
  __shared__ float inv_rms[NB];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int S = a.ksplit, group = warp / S, slice = warp - group * S;
  const int64_t row0 = (int64_t(blockIdx.x) * (kWarps / S) + group) * kR;
  bool ok[kR];
  int sg[kR];
  int64_t lrow[kR];
  const uint4* wrow[kR];
#pragma unroll
  for (int r = 0; r < kR; ++r) {
    ok[r] = row0 + r < a.rows;
    if constexpr (G) {
      seg_row(a, ok[r] ? row0 + r : 0, sg[r], lrow[r]);
    } else {
      sg[r] = 0;
      lrow[r] = ok[r] ? row0 + r : 0;
    }
    wrow[r] = reinterpret_cast<const uint4*>(a.seg[sg[r]].w + lrow[r] * a.cols * 2);
  }
  // This lane's pieces: piece p = (span * 32 + lane), spans slice, slice + S, ... (8 elements each).
  const int n_spans = int((a.cols + kSpan - 1) / kSpan);
  const int64_t n_pieces = a.cols / 8;

  float acc[kR][NB];
#pragma unroll
  for (int r = 0; r < kR; ++r)
#pragma unroll
    for (int c = 0; c < NB; ++c) acc[r][c] = 0.0f;

  uint4 buf[kU][kR];
  auto load = [&](int sp, int u) {
    const int64_t p = int64_t(sp) * 32 + lane;
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      buf[u][r] = make_uint4(0u, 0u, 0u, 0u);
      if (ok[r] && p < n_pieces) buf[u][r] = __ldg(wrow[r] + p);
    }
  };
  // Batch of kU spans of this slice: sp = slice + S * (b * kU + u).
  const int my_spans = (n_spans - slice + S - 1) / S;
  int b0 = 0;
#pragma unroll
  for (int u = 0; u < kU; ++u)
    if (u < my_spans) load(slice + S * u, u);
  pdl_wait();  // x is written by the previous kernel; y may still be read by it
  if (G && a.norm_w) {  // block-uniform: 1 / rms of each token's x (warp sums, then warp 0 adds them)
    __shared__ float ss[kWarps][NB];
#pragma unroll
    for (int c = 0; c < NB; ++c) {
      float v = 0.0f;
      if (c < a.n_tokens)
        for (int64_t k = threadIdx.x; k < a.cols; k += kThreads) {
          const float xv = a.x[int64_t(c) * a.cols + k];
          v = fmaf(xv, xv, v);
        }
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
      if (lane == 0) ss[warp][c] = v;
    }
    __syncthreads();
    if (threadIdx.x < NB) {
      float v = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) v += ss[w][threadIdx.x];
      inv_rms[threadIdx.x] = rsqrtf(v / float(a.cols) + a.norm_eps);
    }
    __syncthreads();
  }
  for (; b0 < my_spans; b0 += kU) {
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      if (b0 + u >= my_spans) break;
      const int sp = slice + S * (b0 + u);
      const int64_t p = int64_t(sp) * 32 + lane;
      float wf[kR][8];
#pragma unroll
      for (int r = 0; r < kR; ++r) unpack8<BF16>(buf[u][r], wf[r]);
      // Refill this slot with the span kU steps ahead before the FMAs.
      if (b0 + u + kU < my_spans) load(slice + S * (b0 + u + kU), u);
      if (p < n_pieces) {
#pragma unroll
        for (int c = 0; c < NB; ++c) {
          if (c >= a.n_tokens) break;
          const float4* xp = reinterpret_cast<const float4*>(a.x + int64_t(c) * a.cols) + 2 * p;
          float4 x0 = xp[0], x1 = xp[1];  // plain loads: x is written by the previous kernel (PDL)
          if (G && a.norm_w) {
            const float4 n0 = __ldg(reinterpret_cast<const float4*>(a.norm_w) + 2 * p);
            const float4 n1 = __ldg(reinterpret_cast<const float4*>(a.norm_w) + 2 * p + 1);
            x0 = make_float4(x0.x * n0.x, x0.y * n0.y, x0.z * n0.z, x0.w * n0.w);
            x1 = make_float4(x1.x * n1.x, x1.y * n1.y, x1.z * n1.z, x1.w * n1.w);
          }
#pragma unroll
          for (int r = 0; r < kR; ++r) {
            float s = acc[r][c];
            s = fmaf(wf[r][0], x0.x, s);
            s = fmaf(wf[r][1], x0.y, s);
            s = fmaf(wf[r][2], x0.z, s);
            s = fmaf(wf[r][3], x0.w, s);
            s = fmaf(wf[r][4], x1.x, s);
            s = fmaf(wf[r][5], x1.y, s);
            s = fmaf(wf[r][6], x1.z, s);
            s = fmaf(wf[r][7], x1.w, s);
            acc[r][c] = s;
          }
        }
      }
    }
  }
  pdl_trigger();
#pragma unroll
  for (int r = 0; r < kR; ++r)
#pragma unroll
    for (int c = 0; c < NB; ++c) {
      float v = acc[r][c];
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
      acc[r][c] = v;
    }
  if (S > 1) {
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < kR; ++r)
#pragma unroll
        for (int c = 0; c < NB; ++c) part[(warp * kR + r) * NB + c] = acc[r][c];
    }
    __syncthreads();
    if (slice != 0) return;
#pragma unroll
    for (int r = 0; r < kR; ++r)
#pragma unroll
      for (int c = 0; c < NB; ++c) {
        float v = 0.0f;
        for (int k = 0; k < S; ++k) v += part[((warp + k) * kR + r) * NB + c];
        acc[r][c] = v;
      }
  }
  if (G && a.norm_w) {
#pragma unroll
    for (int r = 0; r < kR; ++r)
#pragma unroll
      for (int c = 0; c < NB; ++c) acc[r][c] *= inv_rms[c];
  }
  if (G && a.glu) {  // rows 0 / 1 = gate / up row lrow[0]: lane c stores token c
#pragma unroll
    for (int c = 0; c < NB; ++c) {
      if (lane != c || !ok[0] || c >= a.n_tokens) continue;
      float g = acc[0][c], u = acc[1][c];
      if (a.seg[0].bias) g += a.seg[0].bias[lrow[0]];
      if (a.seg[1].bias) u += a.seg[1].bias[lrow[0]];
      a.seg[0].y[int64_t(c) * a.seg[0].rows + lrow[0]] = (a.glu == 1 ? silu_f(g) : gelu_tanh_f(g)) * u;
    }
    return;
  }
  // Lane (r * NB + c) stores row r, column c.
#pragma unroll
  for (int r = 0; r < kR; ++r)
#pragma unroll
    for (int c = 0; c < NB; ++c) {
      if (lane != r * NB + c || !ok[r] || c >= a.n_tokens) continue;
      const HalfSeg& sgm = a.seg[sg[r]];
      float out = acc[r][c];
      if (sgm.bias) out += sgm.bias[lrow[r]];
      const int64_t idx = int64_t(c) * sgm.rows + lrow[r];
      if (a.residual) out += a.residual[idx];
      sgm.y[idx] = out;
    }
}

template <bool BF16, int NB, bool G>
void launch_nb(HalfArgs a, cudaStream_t stream) {
  int device = 0, sm_count = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  // K split: the smallest S with >= 3 blocks per SM, no more than the spans of a row.
  const int64_t n_spans = (a.cols + kSpan - 1) / kSpan;
  int S = 1;
  while (S < kWarps && 2 * S <= n_spans && (a.rows + (kWarps / S) * kR - 1) / ((kWarps / S) * kR) < 3 * int64_t(sm_count))
    S *= 2;
  a.ksplit = S;
  const int64_t rows_per_block = (kWarps / S) * kR;
  const unsigned grid = unsigned((a.rows + rows_per_block - 1) / rows_per_block);
  launch_cost_hint(double(a.rows) * double(a.cols) * 2.0 + double(a.n_tokens) * double(a.cols + a.rows) * 4.0,
                   2.0 * double(a.n_tokens) * double(a.rows) * double(a.cols));
  launch_kernel(gemv_half_kernel<BF16, NB, G>, dim3(grid), dim3(kThreads), 0, stream, a);
}

template <bool BF16, bool G>
void launch_type(const HalfArgs& a, cudaStream_t stream) {
  if (a.n_tokens <= 1) launch_nb<BF16, 1, G>(a, stream);
  else if (a.n_tokens <= 2) launch_nb<BF16, 2, G>(a, stream);
  else if (a.n_tokens <= 4) launch_nb<BF16, 4, G>(a, stream);
  else launch_nb<BF16, 8, G>(a, stream);
}

bool half_path_on() {
  static const bool off = [] {
    const char* e = std::getenv("FATHOM_GEMV_HALF");
    return e && std::strcmp(e, "0") == 0;
  }();
  return !off;
}

}  // namespace

bool gemv_half_supports(const MatmulParams& p) {
  return half_path_on() && (p.type == GgmlType::F16 || p.type == GgmlType::BF16) && p.n_tokens >= 1 &&
         p.n_tokens <= kGemvHalfMaxTokens && p.cols > 0 && p.cols % 8 == 0 &&
         reinterpret_cast<uintptr_t>(p.w) % 16 == 0 && reinterpret_cast<uintptr_t>(p.x) % 16 == 0;
}

void launch_gemv_half(const MatmulParams& p, cudaStream_t stream) {
  FATHOM_CHECK(gemv_half_supports(p), "gemv_half: unsupported (type ", ggml_type_name(p.type), ", cols ", p.cols,
               ", n_tokens ", p.n_tokens, ")");
  HalfArgs a{};
  a.seg[0] = HalfSeg{static_cast<const uint8_t*>(p.w), p.rows, p.y, p.bias};
  a.n_seg = 1;
  a.rows = p.rows;
  a.cols = p.cols;
  a.x = p.x;
  a.residual = p.residual;
  a.n_tokens = int(p.n_tokens);
  a.ksplit = 1;
  if (p.type == GgmlType::BF16) launch_type<true, false>(a, stream);
  else launch_type<false, false>(a, stream);
}

bool gemv_half_grouped_supports(const GemvHalfParams& p) {
  if (!half_path_on() || (p.type != GgmlType::F16 && p.type != GgmlType::BF16) || p.n_tokens < 1 ||
      p.n_tokens > kGemvHalfMaxTokens || p.cols <= 0 || p.cols % 8 != 0 || p.n_seg < 1 ||
      p.n_seg > (p.glu ? 2 : 3) || (p.glu && p.n_seg != 2) ||
      reinterpret_cast<uintptr_t>(p.x) % 16 != 0 || reinterpret_cast<uintptr_t>(p.norm_w) % 16 != 0)
    return false;
  for (int s = 0; s < p.n_seg; ++s)
    if (!p.seg[s].w || p.seg[s].rows <= 0 || reinterpret_cast<uintptr_t>(p.seg[s].w) % 16 != 0) return false;
  return !p.glu || p.seg[0].rows == p.seg[1].rows;
}

void launch_gemv_half_grouped(const GemvHalfParams& p, cudaStream_t stream) {
  FATHOM_CHECK(gemv_half_grouped_supports(p), "gemv_half: unsupported grouped launch (type ",
               ggml_type_name(p.type), ", cols ", p.cols, ", n_tokens ", p.n_tokens, ", ", p.n_seg,
               " segments", p.glu ? ", glu" : "", ")");
  FATHOM_CHECK(!p.residual || p.n_seg == 1, "gemv_half: a residual needs a single segment");
  HalfArgs a{};
  a.n_seg = p.n_seg;
  a.rows = 0;
  for (int s = 0; s < p.n_seg; ++s) {
    a.seg[s] = HalfSeg{static_cast<const uint8_t*>(p.seg[s].w), p.seg[s].rows, p.seg[s].y, p.seg[s].bias};
    a.rows += p.seg[s].rows;
  }
  a.cols = p.cols;
  a.x = p.x;
  a.residual = p.residual;
  a.norm_w = p.norm_w;
  a.norm_eps = p.norm_eps;
  a.glu = p.glu ? (p.glu_kind == GluKind::SWIGLU ? 1 : 2) : 0;
  a.n_tokens = int(p.n_tokens);
  a.ksplit = 1;
  if (p.type == GgmlType::BF16) launch_type<true, true>(a, stream);
  else launch_type<false, true>(a, stream);
}

}  // namespace fathom::cuda
