// The one CUDA error path of the kernel files: CUDA_CHECK(expr) turns a failing runtime call into
// fathom::Error naming the expression, file, line and CUDA error name; CUDA_CHECK_LAUNCH() goes
// after every kernel launch. Build with -DFATHOM_CUDA_SYNC_DEBUG to synchronise after each launch
// so an asynchronous fault is reported at the launch that caused it.
#pragma once

#include <cuda_runtime.h>

#include "fathom/error.h"

namespace fathom::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* expr, const char* file,
                                          int line) {
  fail("CUDA error ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ") in `", expr,
       "` at ", file, ":", line);
}

}  // namespace fathom::cuda

#define CUDA_CHECK(expr)                                                        \
  do {                                                                          \
    cudaError_t fathom_cuda_check_err_ = (expr);                                \
    if (fathom_cuda_check_err_ != cudaSuccess)                                  \
      ::fathom::cuda::throw_cuda_error(fathom_cuda_check_err_, #expr, __FILE__, \
                                       __LINE__);                              \
  } while (0)

#ifdef FATHOM_CUDA_SYNC_DEBUG
#define CUDA_CHECK_LAUNCH()                     \
  do {                                          \
    CUDA_CHECK(cudaGetLastError());             \
    CUDA_CHECK(cudaDeviceSynchronize());        \
  } while (0)
#else
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
#endif
