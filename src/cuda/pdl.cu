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

}  // namespace

bool pdl_enabled() {
  static const bool device_ok = [] {
    int device = 0, major = 0;
    if (cudaGetDevice(&device) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess)
      return false;
    return major >= 9;
  }();
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
