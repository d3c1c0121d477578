// Programmatic dependent launch (PDL, sm_90+): a kernel launched with the
// cudaLaunchAttributeProgrammaticStreamSerialization attribute may start while the kernel before
// it on the stream is still running, as soon as every block of that kernel has called
// pdl_trigger() (or exited). Inside a CUDA graph captured from the stream the same edge becomes
// a programmatic dependency, so a decode step's kernels overlap their launch latency and
// prologues with their predecessor's tail.
//
// The contract every kernel launched through launch_kernel() keeps:
//   - pdl_wait() comes before the kernel reads anything an earlier kernel wrote and before it
//     writes anything (an earlier kernel may still read it). griddepcontrol.wait returns once
//     every prerequisite grid has completed and its memory is visible; without PDL it is a no-op.
//   - only reads of data no kernel of the step writes (the weights) may go before pdl_wait().
//   - pdl_trigger() says "my dependents may launch now": small kernels call it first thing, big
//     multi-wave kernels late (their waiting dependents would hold SM slots).
// A kernel that does not call pdl_wait() must not be launched with the attribute: launch it with
// <<<>>>. Every thread of a PDL-launched kernel runs pdl_wait() before any global store, any
// pdl_trigger() and its exit: that is what makes the chain transitive (a kernel may start only
// once every block of its predecessor has triggered or exited, i.e. after the predecessor's own
// wait returned, so everything before the predecessor is complete too).
//
// FATHOM_PDL=0 in the environment turns the attribute off (A/B measurements, debugging); it is
// also off on devices below sm_90 and when the loaded code was not built for sm_90+ (pdl.cu).
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "cuda/cuda_check.cuh"

namespace fathom::cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// True when launches carry the PDL attribute: the current device is sm_90+ and FATHOM_PDL is not
// "0". Evaluated once per process (src/cuda/pdl.cu).
bool pdl_enabled();
// True when the current device is compute capability 9.x AND this build carries sm_90 code, i.e.
// kernels run their __CUDA_ARCH__ >= 900 paths (griddepcontrol, bulk async copies). A newer GPU
// cannot run sm_90a code, so with the default architecture list it runs JIT-compiled
// compute_80/86/89 code instead, where those paths compile to nothing.
bool sm90_code_ok();

// Test hook: 1 forces PDL on (where the device has it), 0 off, -1 back to the environment's
// choice. Affects launches made after the call; a captured graph keeps what it was captured with.
void pdl_set_override(int v);

// Launch cost hints for `fathom profile` (achieved GB/s and TFLOP/s per kernel). A launcher calls
// launch_cost_hint(bytes moved to/from DRAM, flops) right before launch_kernel(); launch_kernel
// hands the hint and the kernel's function pointer to the sink installed on this thread (if any)
// and clears it. No sink: nothing is recorded (the hot path costs two thread-local stores).
void launch_cost_hint(double bytes, double flops);
using LaunchCostSink = void (*)(const void* kernel_fn, double bytes, double flops);
void set_launch_cost_sink(LaunchCostSink sink);  // this thread; nullptr removes it
void launch_cost_note(const void* kernel_fn);    // called by launch_kernel after each launch

// Launches kernel<<<grid, block, smem, stream>>>(args...) with the PDL attribute when
// pdl_enabled(), then checks the launch (CUDA_CHECK_LAUNCH) and notes its cost hint. The kernel
// must follow the contract above.
template <typename... KArgs, typename... Args>
void launch_kernel(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                   cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  const cudaError_t err = cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // a failed launch also sets the last error: do not leak it
    throw_cuda_error(err, "cudaLaunchKernelEx", __FILE__, __LINE__);
  }
  CUDA_CHECK_LAUNCH();
  launch_cost_note(reinterpret_cast<const void*>(kernel));
}

}  // namespace fathom::cuda
