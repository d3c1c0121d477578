// The CUDA side of `fathom profile -m`: the recorder of fathom's launch-cost hints (pdl.cuh
// launch_cost_hint / set_launch_cost_sink) and the device limits theoretical occupancy needs.
//
// Which launches a decode step notes depends on CUDA graphs: with graphs the first decode step
// runs eagerly and is then captured (its launches are noted twice) and every later step replays
// the graph (none noted); without graphs each step notes its own. The recorder therefore keeps
// sums per kernel name whose only meaningful figure is the mean per launch; the analysis multiplies
// it by the kernel records' count per step (trace.cpp, annotate_kernel), which is right either way.
#pragma once

#include <memory>
#include <vector>

#include "fathom/profiler.h"

namespace fathom::cuda {

class LaunchCostRecorder {
 public:
  // Installs the sink on the calling thread (the thread that launches). Throws when this thread
  // already has a recorder.
  LaunchCostRecorder();
  ~LaunchCostRecorder();  // removes the sink
  LaunchCostRecorder(const LaunchCostRecorder&) = delete;
  LaunchCostRecorder& operator=(const LaunchCostRecorder&) = delete;

  // Launches noted while off are dropped (the prefill, whose shapes differ from a decode step's).
  void set_recording(bool on);
  // Sums per kernel name (kernel_display_name of the demangled name, as the CUPTI kernel records
  // are named), sorted by name.
  std::vector<KernelCost> take();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// cudaGetDeviceProperties of `device`, as the occupancy formula needs them. Throws on a CUDA error.
DeviceLimits query_device_limits(int device);

}  // namespace fathom::cuda
