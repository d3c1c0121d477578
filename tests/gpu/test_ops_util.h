// Shared helpers of the GPU op tests (tests/gpu/test_ops*.cpp): device detection with a skip,
// RAII device buffers, random data, worst-element comparison.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_check.cuh"

namespace fathom::test {

// Skips the calling test (with the reason) when no CUDA device is usable; CI has none.
#define FATHOM_REQUIRE_GPU()                                                         \
  do {                                                                               \
    const std::string why_ = ::fathom::test::gpu_unavailable_reason();               \
    if (!why_.empty()) GTEST_SKIP() << why_;                                         \
  } while (0)

// Per-launch time in microseconds of `launch(k)`, k counting every call from 0 (benches rotate
// through copies of their data with it): `warmup` calls, then `reps` groups of `inner` calls back
// to back between two events (so host enqueue gaps between launches do not count: one launch per
// event pair measured ~12 us for 2 us kernels); the median group time divided by `inner`.
template <typename F>
double median_launch_us(F&& launch, int warmup, int reps, int inner) {
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  int k = 0;
  for (int i = 0; i < warmup; ++i) launch(k++);
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    CUDA_CHECK(cudaEventRecord(a));
    for (int j = 0; j < inner; ++j) launch(k++);
    CUDA_CHECK(cudaEventRecord(b));
    CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(double(ms) * 1000.0 / inner);
  }
  CUDA_CHECK(cudaEventDestroy(a));
  CUDA_CHECK(cudaEventDestroy(b));
  CUDA_CHECK(cudaGetLastError());
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

inline std::string gpu_unavailable_reason() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return std::string("no usable CUDA device: cudaGetDeviceCount failed with ") +
           cudaGetErrorName(err);
  }
  if (n == 0) return "no CUDA device present";
  return "";
}

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) { resize(n); }
  explicit DeviceBuffer(const std::vector<T>& host) {
    resize(host.size());
    upload(host);
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void resize(size_t n) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = nullptr;
    n_ = n;
    if (n) CUDA_CHECK(cudaMalloc(&ptr_, n * sizeof(T)));
  }
  void upload(const std::vector<T>& host) {
    CUDA_CHECK(cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  // Fills with a NaN byte pattern so unwritten outputs fail the comparison.
  void poison() { CUDA_CHECK(cudaMemset(ptr_, 0xFF, n_ * sizeof(T))); }
  T* get() const { return ptr_; }
  size_t size() const { return n_; }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

inline std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Worst |got - want| - tol[i] over all elements; NaN in got counts as a failure.
struct Worst {
  double excess = -1e300;  // max of |err| - tol
  double err = 0.0, tol = 0.0;
  int64_t index = -1;
  bool nan = false;
};
inline Worst compare(const std::vector<float>& got, const std::vector<double>& want,
                     const std::vector<double>& tol) {
  Worst w;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i]) && std::isfinite(want[i])) {
      if (!w.nan) w = Worst{1e300, double(got[i]), tol[i], int64_t(i), true};
      continue;
    }
    const double e = std::fabs(double(got[i]) - want[i]);
    if (e - tol[i] > w.excess && !w.nan) w = Worst{e - tol[i], e, tol[i], int64_t(i), false};
  }
  return w;
}

#define FATHOM_EXPECT_CLOSE(name_, got_, want_, tol_)                                     \
  do {                                                                                     \
    const auto& g_ = (got_);                                                               \
    const auto& wt_ = (want_);                                                             \
    const ::fathom::test::Worst w_ = ::fathom::test::compare(g_, wt_, (tol_));             \
    EXPECT_LE(w_.excess, 0.0) << (name_) << ": worst element " << w_.index << " got "      \
                              << g_[w_.index] << " want " << wt_[w_.index] << " |err| "    \
                              << w_.err << " > tol " << w_.tol;                            \
  } while (0)

}  // namespace fathom::test
