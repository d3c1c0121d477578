// The current device's SM count and opt-in shared-memory limit, queried once per thread and device
// (host code; the launchers' split plans and shared-memory checks read these on every call).
#pragma once

#include <cuda_runtime.h>

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

}  // namespace fathom::cuda
