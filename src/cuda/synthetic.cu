#include "cuda/synthetic.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "cuda/cuda_check.cuh"
#include "fathom/error.h"

namespace fathom::cuda {
namespace {

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [-1, 1).
__device__ __forceinline__ float uniform_pm1(uint64_t h) { return float(h >> 40) * (2.0f / 16777216.0f) - 1.0f; }

// Where a block keeps its fp16 scale fields (byte offsets; -1 = none), from ggml's block structs.
struct ScaleFields {
  int d, dmin;
  float d_value;  // d = d_value / sqrt(cols); dmin the same
};

// One thread per block of the tensor: random bytes, then the scale fields overwritten.
__global__ void fill_blocks_kernel(uint8_t* data, int64_t n_blocks, int block_bytes, ScaleFields sf,
                                   float inv_sqrt_cols, uint64_t seed) {
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < n_blocks;
       b += int64_t(gridDim.x) * blockDim.x) {
    uint8_t* p = data + b * block_bytes;
    uint64_t h = mix64(seed ^ (uint64_t(b) * 0x9E3779B97F4A7C15ull));
    for (int i = 0; i < block_bytes; ++i) {
      if ((i & 7) == 0) h = mix64(h + 0x9E3779B97F4A7C15ull);
      p[i] = uint8_t(h >> (8 * (i & 7)));
    }
    const __half d = __float2half(sf.d_value * inv_sqrt_cols);
    if (sf.d >= 0) memcpy(p + sf.d, &d, 2);
    if (sf.dmin >= 0) memcpy(p + sf.dmin, &d, 2);
  }
}

// Plain float types: a vector (rows == 1) gets 1 +- 0.1, a matrix uniform with variance 1/cols.
__global__ void fill_float_kernel(void* data, GgmlType type, int64_t n, bool vector, float inv_sqrt_cols,
                                  uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float u = uniform_pm1(mix64(seed ^ (uint64_t(i) * 0x9E3779B97F4A7C15ull)));
    const float v = vector ? 1.0f + 0.1f * u : u * 1.7320508f * inv_sqrt_cols;
    if (type == GgmlType::F32) static_cast<float*>(data)[i] = v;
    else if (type == GgmlType::F16) static_cast<__half*>(data)[i] = __float2half(v);
    else static_cast<__nv_bfloat16*>(data)[i] = __float2bfloat16(v);
  }
}

ScaleFields scale_fields(GgmlType t) {
  // d_value ~ 1 / (RMS of the integer part times its sub-block scale), so weights ~ 1/sqrt(cols).
  switch (t) {
    case GgmlType::Q4_0: return {0, -1, 1.0f / 4.6f};
    case GgmlType::Q4_1: return {0, 2, 1.0f / 8.0f};
    case GgmlType::Q5_0: return {0, -1, 1.0f / 9.2f};
    case GgmlType::Q5_1: return {0, 2, 1.0f / 16.0f};
    case GgmlType::Q8_0: return {0, -1, 1.0f / 74.0f};
    case GgmlType::Q2_K: return {80, 82, 1.0f / 16.0f};
    case GgmlType::Q3_K: return {108, -1, 1.0f / 64.0f};
    case GgmlType::Q4_K: return {0, 2, 1.0f / 256.0f};
    case GgmlType::Q5_K: return {0, 2, 1.0f / 512.0f};
    case GgmlType::Q6_K: return {208, -1, 1.0f / 1200.0f};
    default: fail("synthetic weights: no generator for type ", ggml_type_name(t));
  }
}

}  // namespace

void launch_fill_synthetic(GgmlType type, void* data, int64_t rows, int64_t cols, uint64_t seed,
                           cudaStream_t stream) {
  const float inv_sqrt_cols = 1.0f / std::sqrt(float(std::max<int64_t>(cols, 1)));
  const int threads = 256;
  if (type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16) {
    const int64_t n = rows * cols;
    const int grid = int(std::min<int64_t>((n + threads - 1) / threads, 65536));
    fill_float_kernel<<<grid, threads, 0, stream>>>(data, type, n, rows == 1, inv_sqrt_cols, seed);
    CUDA_CHECK_LAUNCH();
    return;
  }
  const auto& tr = ggml_type_traits(type);
  const int64_t n_blocks = rows * (cols / tr.block_elems);
  const int grid = int(std::min<int64_t>((n_blocks + threads - 1) / threads, 65536));
  fill_blocks_kernel<<<grid, threads, 0, stream>>>(static_cast<uint8_t*>(data), n_blocks, int(tr.block_bytes),
                                                   scale_fields(type), inv_sqrt_cols, seed);
  CUDA_CHECK_LAUNCH();
}

}  // namespace fathom::cuda
