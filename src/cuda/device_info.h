// The current device's SM count and opt-in shared-memory limit, queried once per thread and device
// (host code; the launchers' split plans and shared-memory checks read these on every call).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "cuda/cuda_check.cuh"

namespace fathom::cuda {

struct DeviceInfo {
  int device = -1;
  int sm_count = 0;
  int max_smem_optin = 0;
};

inline DeviceInfo device_info() {
  static thread_local DeviceInfo info;
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  if (dev != info.device) {
    CUDA_CHECK(cudaDeviceGetAttribute(&info.sm_count, cudaDevAttrMultiProcessorCount, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&info.max_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    info.device = dev;
  }
  return info;
}

// Resident blocks per SM of `kernel` at `threads` threads and `smem` bytes of dynamic shared
// memory on the current device, cached per (kernel, device, threads, smem); the first call per
// (kernel, device) also opts the kernel in to the device's whole shared memory (the attribute is
// per device). Host code for the launchers: their launches are captured once into graphs, but
// eager decode plans every matmul.
inline int blocks_per_sm(const void* kernel, int threads, size_t smem) {
  static std::mutex mu;
  static std::unordered_map<uint64_t, bool> opted;
  static std::unordered_map<uint64_t, int> occ;
  const DeviceInfo dev = device_info();
  std::lock_guard<std::mutex> lock(mu);
  const uint64_t kkey = uint64_t(reinterpret_cast<uintptr_t>(kernel)) * 31u + uint64_t(dev.device);
  if (!opted[kkey]) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, dev.max_smem_optin));
    opted[kkey] = true;
  }
  const uint64_t key = (kkey * 1000003u + uint64_t(threads)) * 1000003u + uint64_t(smem);
  auto it = occ.find(key);
  if (it == occ.end()) {
    int b = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, kernel, threads, smem));
    it = occ.emplace(key, b > 0 ? b : 1).first;
  }
  return it->second;
}

}  // namespace fathom::cuda
