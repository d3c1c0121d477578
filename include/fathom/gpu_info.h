// What fathom knows about the GPU it runs on: identity, clocks, and the two ceilings every
// performance figure is compared with, measured by fathom itself on first use and cached per GPU.
#pragma once

#include <string>

namespace fathom {

struct GpuInfo {
  bool present = false;       // a CUDA device is usable
  std::string why_absent;     // when !present: the runtime's reason
  std::string name, uuid;
  int device = 0, sm_count = 0, sm_clock_mhz = 0, mem_clock_mhz = 0, cc_major = 0, cc_minor = 0;
  size_t total_mem = 0, free_mem = 0, l2_bytes = 0;
  std::string driver_version, runtime_version;
};

// Never throws: without a device (or without CUDA in this build) present is false with a reason.
GpuInfo query_gpu(int device = 0);

struct Ceilings {
  double copy_gbps = 0;       // device-to-device copy, bytes read + written per second / 1e9
  double read_gbps = 0;       // streaming read (sum reduction), bytes read per second / 1e9
  double bf16_tflops = 0;     // large bf16 cuBLASLt GEMM on random data, 2*M*N*K / s / 1e12
  bool from_cache = false;
};

// Measures the ceilings (about 2 s) or reads them from
// $XDG_CACHE_HOME/fathom/ceilings-<gpu uuid>.json (~/.cache/fathom/... by default).
// `remeasure` ignores and rewrites the cache. Throws fathom::Error without a GPU.
Ceilings gpu_ceilings(const GpuInfo& gpu, bool remeasure = false);

}  // namespace fathom
