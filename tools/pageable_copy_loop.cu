// A deliberately sync/transfer-bound "decode loop" for `fathom doctor`'s device check
// (scripts/device_profile_check2.sh): each step copies its input from pageable host memory with
// cudaMemcpy, runs a few tiny kernels, synchronizes the device twice and copies the result back
// to pageable memory. Each step is an NVTX range "decode step N", so fathom attributes per token
// as it does for its own engine. Usage: fathom_pageable_loop [steps] [bytes per copy].
#include <cuda_runtime.h>
#include <nvtx3/nvToolsExt.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#define CHECK(expr)                                                                          \
  do {                                                                                       \
    cudaError_t e_ = (expr);                                                                 \
    if (e_ != cudaSuccess) {                                                                 \
      std::fprintf(stderr, "%s failed: %s (%s:%d)\n", #expr, cudaGetErrorName(e_), __FILE__, __LINE__); \
      return 1;                                                                              \
    }                                                                                        \
  } while (0)

__global__ void scale_kernel(float* x, int n, float a) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] = x[i] * a + 1.0f;
}

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 32;
  const size_t bytes = argc > 2 ? size_t(std::atoll(argv[2])) : size_t(4) << 20;
  const int n = int(bytes / sizeof(float));
  std::vector<float> host_in(static_cast<size_t>(n), 1.0f);  // pageable on purpose
  std::vector<float> host_out(static_cast<size_t>(n));
  float* dev = nullptr;
  CHECK(cudaMalloc(&dev, bytes));
  nvtxRangePushA("prefill");
  CHECK(cudaMemcpy(dev, host_in.data(), bytes, cudaMemcpyHostToDevice));
  CHECK(cudaDeviceSynchronize());
  nvtxRangePop();
  for (int s = 0; s < steps; ++s) {
    nvtxRangePushA(("decode step " + std::to_string(s)).c_str());
    CHECK(cudaMemcpy(dev, host_in.data(), bytes, cudaMemcpyHostToDevice));
    for (int k = 0; k < 4; ++k) scale_kernel<<<(n + 255) / 256, 256>>>(dev, n, 0.5f);
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
    CHECK(cudaMemcpy(host_out.data(), dev, bytes, cudaMemcpyDeviceToHost));
    CHECK(cudaDeviceSynchronize());
    nvtxRangePop();
  }
  CHECK(cudaFree(dev));
  std::printf("pageable_copy_loop: %d steps of %zu bytes each way, out[0] = %g\n", steps, bytes, host_out[0]);
  return 0;
}
