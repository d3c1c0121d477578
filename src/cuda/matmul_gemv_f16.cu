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
#include "cuda/matmul_gemv_f16.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>

#include "cuda/cuda_check.cuh"
#include "cuda/pdl.cuh"

namespace fathom::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kR = 2;    // rows per warp
constexpr int kU = 4;    // 16-byte pieces per row in flight per lane
constexpr int kSpan = 256;  // elements of a row per warp step (32 lanes x 8)

struct HalfArgs {
  const uint8_t* w;
  int64_t rows;
  int64_t cols;
  const float* x;
  float* y;
  const float* bias;
  const float* residual;
  int n_tokens;
  int ksplit;
};

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

template <bool BF16, int NB>
__global__ void __launch_bounds__(kThreads) gemv_half_kernel(const __grid_constant__ HalfArgs a) {
  __shared__ float part[kWarps * kR * NB];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int S = a.ksplit, group = warp / S, slice = warp - group * S;
  const int64_t row0 = (int64_t(blockIdx.x) * (kWarps / S) + group) * kR;
  bool ok[kR];
  const uint4* wrow[kR];
#pragma unroll
  for (int r = 0; r < kR; ++r) {
    ok[r] = row0 + r < a.rows;
    wrow[r] = reinterpret_cast<const uint4*>(a.w + (ok[r] ? row0 + r : 0) * a.cols * 2);
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
          const float4 x0 = xp[0], x1 = xp[1];  // plain loads: x is written by the previous kernel (PDL)
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
  // Lane (r * NB + c) stores row r, column c.
#pragma unroll
  for (int r = 0; r < kR; ++r)
#pragma unroll
    for (int c = 0; c < NB; ++c) {
      if (lane != r * NB + c || !ok[r] || c >= a.n_tokens) continue;
      const int64_t row = row0 + r;
      float out = acc[r][c];
      if (a.bias) out += a.bias[row];
      const int64_t idx = int64_t(c) * a.rows + row;
      if (a.residual) out += a.residual[idx];
      a.y[idx] = out;
    }
}

template <bool BF16, int NB>
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
  launch_kernel(gemv_half_kernel<BF16, NB>, dim3(grid), dim3(kThreads), 0, stream, a);
}

template <bool BF16>
void launch_type(const HalfArgs& a, cudaStream_t stream) {
  if (a.n_tokens <= 1) launch_nb<BF16, 1>(a, stream);
  else if (a.n_tokens <= 2) launch_nb<BF16, 2>(a, stream);
  else if (a.n_tokens <= 4) launch_nb<BF16, 4>(a, stream);
  else launch_nb<BF16, 8>(a, stream);
}

}  // namespace

bool gemv_half_supports(const MatmulParams& p) {
  static const bool off = [] {
    const char* e = std::getenv("FATHOM_GEMV_HALF");
    return e && std::strcmp(e, "0") == 0;
  }();
  return !off && (p.type == GgmlType::F16 || p.type == GgmlType::BF16) && p.n_tokens >= 1 &&
         p.n_tokens <= kGemvHalfMaxTokens && p.cols > 0 && p.cols % 8 == 0 &&
         reinterpret_cast<uintptr_t>(p.w) % 16 == 0 && reinterpret_cast<uintptr_t>(p.x) % 16 == 0;
}

void launch_gemv_half(const MatmulParams& p, cudaStream_t stream) {
  FATHOM_CHECK(gemv_half_supports(p), "gemv_half: unsupported (type ", ggml_type_name(p.type), ", cols ", p.cols,
               ", n_tokens ", p.n_tokens, ")");
  HalfArgs a{static_cast<const uint8_t*>(p.w), p.rows, p.cols, p.x, p.y, p.bias, p.residual, int(p.n_tokens), 1};
  if (p.type == GgmlType::BF16) launch_type<true>(a, stream);
  else launch_type<false>(a, stream);
}

}  // namespace fathom::cuda
