// pdl_enabled() and the launch-cost hint plumbing: see pdl.cuh.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "cuda/pdl.cuh"

namespace fathom::cuda {
namespace {

std::atomic<int> g_pdl_override{-1};

thread_local double t_hint_bytes = 0.0;
thread_local double t_hint_flops = 0.0;
thread_local LaunchCostSink t_sink = nullptr;

// The architectures this file (and every kernel file: one list for the library) was compiled
// for, e.g. 800, 860, 890, 900 (nvcc's __CUDA_ARCH_LIST__, visible in the host pass too).
#ifdef __CUDA_ARCH_LIST__
constexpr int kArchList[] = {__CUDA_ARCH_LIST__};
#else
constexpr int kArchList[] = {0};
#endif

}  // namespace

bool sm90_code_ok() {
  static const bool ok = [] {
    bool built_for_90 = false;
    for (int a : kArchList) built_for_90 = built_for_90 || a == 900;
    if (!built_for_90) return false;
    int device = 0, major = 0;
    if (cudaGetDevice(&device) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess)
      return false;
    return major == 9;
  }();
  return ok;
}

bool pdl_enabled() {
  // PDL needs the device AND the code it runs to be sm_90: pdl_wait() compiles to nothing below
  // __CUDA_ARCH__ 900 (sm90_code_ok).
  const bool device_ok = sm90_code_ok();
  static const bool env_on = [] {
    const char* e = std::getenv("FATHOM_PDL");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  const int o = g_pdl_override.load(std::memory_order_relaxed);
  return device_ok && (o < 0 ? env_on : o != 0);
}

void pdl_set_override(int v) { g_pdl_override.store(v < 0 ? -1 : (v ? 1 : 0)); }

void launch_cost_hint(double bytes, double flops) {
  t_hint_bytes = bytes;
  t_hint_flops = flops;
}

void set_launch_cost_sink(LaunchCostSink sink) { t_sink = sink; }

void launch_cost_note(const void* kernel_fn) {
  if (t_sink) t_sink(kernel_fn, t_hint_bytes, t_hint_flops);
  t_hint_bytes = 0.0;
  t_hint_flops = 0.0;
}

}  // namespace fathom::cuda
