// Builds without CUDA: the CUDA engine exists as a type but says plainly that it cannot run.
#ifndef FATHOM_HAVE_CUDA
#include "fathom/cuda_engine.h"
#include "fathom/error.h"

namespace fathom {

namespace {
[[noreturn]] void no_cuda() {
  fail("this fathom was built without CUDA (FATHOM_ENABLE_CUDA=OFF or no nvcc): no GPU engine");
}
}  // namespace

struct CudaEngine::Impl {};

bool cuda_engine_available(std::string* why) {
  if (why) *why = "this fathom was built without CUDA (FATHOM_ENABLE_CUDA=OFF or no nvcc)";
  return false;
}

std::string CudaMemoryReport::describe() const { return {}; }

CudaEngine::CudaEngine(const Model&, const CudaEngineOptions&) { no_cuda(); }
CudaEngine::~CudaEngine() = default;
int64_t CudaEngine::n_vocab() const { no_cuda(); }
int64_t CudaEngine::n_ctx() const { no_cuda(); }
int64_t CudaEngine::n_past() const { no_cuda(); }
void CudaEngine::eval(const int32_t*, int64_t, float*) { no_cuda(); }
void CudaEngine::truncate(int64_t) { no_cuda(); }
int32_t CudaEngine::eval_greedy(const int32_t*, int64_t) { no_cuda(); }
int32_t CudaEngine::eval_sample(const int32_t*, int64_t, const SamplerParams&) { no_cuda(); }
int32_t CudaEngine::add_sequence() { no_cuda(); }
void CudaEngine::remove_sequence(int32_t) { no_cuda(); }
int64_t CudaEngine::seq_len(int32_t) const { no_cuda(); }
int32_t CudaEngine::eval_seq(int32_t, const int32_t*, int64_t, float*) { no_cuda(); }
void CudaEngine::decode_batch(const int32_t*, const int32_t*, int, int32_t*, float*) { no_cuda(); }
void CudaEngine::set_trace(CudaTraceFn, bool) { no_cuda(); }
double CudaEngine::last_gpu_ms() const { no_cuda(); }
const CudaMemoryReport& CudaEngine::memory() const { no_cuda(); }
const ModelConfig& CudaEngine::config() const { no_cuda(); }
std::string CudaEngine::device_name() const { no_cuda(); }

}  // namespace fathom
#endif
