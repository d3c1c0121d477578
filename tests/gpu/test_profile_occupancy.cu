// The profiler's CPU occupancy formula (trace.cpp theoretical_occupancy) against the CUDA
// runtime's cudaOccupancyMaxActiveBlocksPerMultiprocessor on real kernels, and the launch-cost
// recorder (src/cuda/launch_cost.h) naming kernels the way CUPTI's records are named.
#include <gtest/gtest.h>

#include "cuda/launch_cost.h"
#include "cuda/pdl.cuh"
#include "fathom/profiler.h"
#include "gpu/test_ops_util.h"

namespace fathom::occtest {

__global__ void light_kernel(float* x) { x[threadIdx.x] += 1.0f; }

// Keeps N independent accumulators live so the register count grows with N.
template <int N>
__global__ void regs_kernel(const float* __restrict__ in, float* __restrict__ out, int n) {
  float acc[N];
#pragma unroll
  for (int j = 0; j < N; ++j) acc[j] = in[(threadIdx.x + j * 37) % n];
  for (int it = 0; it < 8; ++it)
#pragma unroll
    for (int j = 0; j < N; ++j) acc[j] = acc[j] * acc[(j + 1) % N] + in[(j * it + threadIdx.x) % n];
  float s = 0;
#pragma unroll
  for (int j = 0; j < N; ++j) s += acc[j];
  out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}

__global__ void smem_kernel(float* x) {
  __shared__ float fixed[1024];
  extern __shared__ float dyn[];
  fixed[threadIdx.x % 1024] = x[threadIdx.x];
  dyn[threadIdx.x] = fixed[(threadIdx.x + 1) % 1024];
  __syncthreads();
  x[threadIdx.x] = dyn[(threadIdx.x + 1) % blockDim.x];
}

__global__ void cost_probe_kernel(float* x) {
  cuda::pdl_wait();
  x[threadIdx.x] *= 2.0f;
}

template <typename K>
void expect_same_occupancy(K kernel, const char* name, const DeviceLimits& lim) {
  cudaFuncAttributes fa{};
  ASSERT_EQ(cudaFuncGetAttributes(&fa, kernel), cudaSuccess);
  ASSERT_EQ(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 lim.smem_per_block_optin - int(fa.sharedSizeBytes)),
            cudaSuccess);
  for (int threads : {32, 96, 128, 256, 512, 1024}) {
    if (threads > fa.maxThreadsPerBlock) continue;
    for (int dyn : {0, 4096, 40000, 100000}) {
      if (int(fa.sharedSizeBytes) + dyn > lim.smem_per_block_optin) continue;
      int want = -1;
      ASSERT_EQ(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&want, kernel, threads, size_t(dyn)), cudaSuccess);
      const Occupancy o = theoretical_occupancy(lim, threads, fa.numRegs, int(fa.sharedSizeBytes) + dyn);
      EXPECT_EQ(o.blocks_per_sm, want) << name << ": " << threads << " threads, " << fa.numRegs << " regs, "
                                       << fa.sharedSizeBytes << " + " << dyn << " B smem";
    }
  }
}

TEST(ProfileOccupancyGpu, FormulaMatchesTheRuntime) {
  FATHOM_REQUIRE_GPU();
  const DeviceLimits lim = cuda::query_device_limits(0);
  ASSERT_TRUE(lim.known());
  expect_same_occupancy(light_kernel, "light_kernel", lim);
  expect_same_occupancy(regs_kernel<8>, "regs_kernel<8>", lim);
  expect_same_occupancy(regs_kernel<48>, "regs_kernel<48>", lim);
  expect_same_occupancy(regs_kernel<120>, "regs_kernel<120>", lim);
  expect_same_occupancy(smem_kernel, "smem_kernel", lim);
}

TEST(ProfileOccupancyGpu, LaunchCostRecorderNamesKernelsLikeCupti) {
  FATHOM_REQUIRE_GPU();
  float* x = nullptr;
  ASSERT_EQ(cudaMalloc(&x, 256 * sizeof(float)), cudaSuccess);
  std::vector<KernelCost> costs;
  {
    cuda::LaunchCostRecorder rec;
    cuda::launch_cost_hint(1024, 256);
    cuda::launch_kernel(cost_probe_kernel, dim3(1), dim3(256), 0, nullptr, x);  // not recording: dropped
    rec.set_recording(true);
    cuda::launch_cost_hint(1024, 256);
    cuda::launch_kernel(cost_probe_kernel, dim3(1), dim3(256), 0, nullptr, x);
    cuda::launch_kernel(cost_probe_kernel, dim3(1), dim3(256), 0, nullptr, x);  // no hint
    costs = rec.take();
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  cudaFree(x);
  ASSERT_EQ(costs.size(), 1u);
  EXPECT_EQ(costs[0].name, "fathom::occtest::cost_probe_kernel");
  EXPECT_EQ(costs[0].launches, 2);
  EXPECT_EQ(costs[0].hinted, 1);
  EXPECT_DOUBLE_EQ(costs[0].bytes_per_launch(), 1024);
  EXPECT_DOUBLE_EQ(costs[0].flops_per_launch(), 256);
}

}  // namespace fathom::occtest
