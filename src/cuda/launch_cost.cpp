// LaunchCostRecorder and query_device_limits: see launch_cost.h.
#include "cuda/launch_cost.h"

#include <cuda_runtime.h>
#include <cxxabi.h>

#include <cstdlib>
#include <map>
#include <string>
#include <unordered_map>

#include "cuda/pdl.cuh"
#include "fathom/error.h"

namespace fathom::cuda {

namespace {

// What a recorder accumulates; a namespace-level type so the thread's sink can reach it.
struct CostTable {
  bool recording = false;
  std::unordered_map<const void*, std::string> names;  // kernel function -> display name
  std::map<std::string, KernelCost> costs;

  const std::string& name_of(const void* fn) {
    auto it = names.find(fn);
    if (it != names.end()) return it->second;
    // cudaFuncGetName gives the mangled entry name, as CUPTI's kernel records carry it; the same
    // demangling and display name make the two join.
    const char* mangled = nullptr;
    std::string name = "(unnamed kernel)";
    if (cudaFuncGetName(&mangled, fn) == cudaSuccess && mangled) {
      int status = 0;
      char* d = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
      name = kernel_display_name(status == 0 && d ? d : mangled);
      std::free(d);
    } else {
      cudaGetLastError();  // not a sticky error; do not leave it for the next launch check
    }
    return names.emplace(fn, std::move(name)).first->second;
  }

  void note(const void* fn, double bytes, double flops) {
    if (!recording) return;
    const std::string& n = name_of(fn);
    KernelCost& c = costs[n];
    c.name = n;
    ++c.launches;
    if (bytes > 0 || flops > 0) {
      ++c.hinted;
      c.bytes += bytes;
      c.flops += flops;
    }
  }
};

// The recorder of this thread: the sink is a plain function pointer without a user argument.
thread_local CostTable* t_recorder = nullptr;

void sink(const void* kernel_fn, double bytes, double flops) {
  if (t_recorder) t_recorder->note(kernel_fn, bytes, flops);
}

}  // namespace

struct LaunchCostRecorder::Impl {
  CostTable table;
};

LaunchCostRecorder::LaunchCostRecorder() : impl_(std::make_unique<Impl>()) {
  FATHOM_CHECK(t_recorder == nullptr, "a LaunchCostRecorder is already installed on this thread");
  t_recorder = &impl_->table;
  set_launch_cost_sink(sink);
}

LaunchCostRecorder::~LaunchCostRecorder() {
  set_launch_cost_sink(nullptr);
  t_recorder = nullptr;
}

void LaunchCostRecorder::set_recording(bool on) { impl_->table.recording = on; }

std::vector<KernelCost> LaunchCostRecorder::take() {
  std::vector<KernelCost> out;
  for (auto& [name, c] : impl_->table.costs) out.push_back(std::move(c));
  impl_->table.costs.clear();
  return out;
}

DeviceLimits query_device_limits(int device) {
  cudaDeviceProp p{};
  const cudaError_t e = cudaGetDeviceProperties(&p, device);
  FATHOM_CHECK(e == cudaSuccess, "cudaGetDeviceProperties(", device, ") failed: ", cudaGetErrorName(e));
  DeviceLimits l;
  l.cc_major = p.major;
  l.cc_minor = p.minor;
  l.sm_count = p.multiProcessorCount;
  l.warp_size = p.warpSize;
  l.max_threads_per_sm = p.maxThreadsPerMultiProcessor;
  l.max_blocks_per_sm = p.maxBlocksPerMultiProcessor;
  l.regs_per_sm = p.regsPerMultiprocessor;
  l.regs_per_block = p.regsPerBlock;
  l.smem_per_sm = int(p.sharedMemPerMultiprocessor);
  l.smem_per_block_optin = int(p.sharedMemPerBlockOptin);
  l.reserved_smem_per_block = int(p.reservedSharedMemPerBlock);
  return l;
}

}  // namespace fathom::cuda
