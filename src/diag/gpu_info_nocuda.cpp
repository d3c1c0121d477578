// Builds without CUDA: no GPU, said plainly.
#ifndef FATHOM_HAVE_CUDA
#include "fathom/error.h"
#include "fathom/gpu_info.h"

namespace fathom {

GpuInfo query_gpu(int) {
  GpuInfo g;
  g.why_absent = "this fathom was built without CUDA (FATHOM_ENABLE_CUDA=OFF or no nvcc)";
  return g;
}

Ceilings gpu_ceilings(const GpuInfo&, bool) { fail("no GPU: this fathom was built without CUDA"); }

}  // namespace fathom
#endif
