// The ceilings fathom's performance figures are measured against, measured here on the GPU in use:
//  - copy: cudaMemcpyAsync device-to-device of 2 GiB, counting bytes read + written;
//  - read: a streaming sum over 4 GiB with 16-byte loads, counting bytes read;
//  - bf16 GEMM: 8192^3 cuBLASLt bf16 x bf16 -> bf16 with fp32 accumulation, on random data
//    (zeros run faster on Hopper, so they would overstate the ceiling).
// Each is the median of 20 timed repetitions after 3 warm-ups, timed with device events.
// Cached per GPU uuid in $XDG_CACHE_HOME/fathom/ceilings-<uuid>.json.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <sys/stat.h>
#include <vector>

#include "fathom/error.h"
#include "fathom/gpu_info.h"

namespace fathom {
namespace {

#define CEIL_CUDA(expr)                                                                          \
  do {                                                                                           \
    cudaError_t e_ = (expr);                                                                     \
    if (e_ != cudaSuccess) fail(#expr, " failed: ", cudaGetErrorName(e_), " (", __FILE__, ":", \
                                __LINE__, ")");                                                  \
  } while (0)
#define CEIL_LT(expr)                                                                           \
  do {                                                                                          \
    cublasStatus_t s_ = (expr);                                                                 \
    if (s_ != CUBLAS_STATUS_SUCCESS) fail(#expr, " failed: cublas status ", static_cast<int>(s_)); \
  } while (0)

std::string version_string(int v) { return str_cat(v / 1000, ".", (v % 1000) / 10); }

__global__ void fill_random_bf16_kernel(__nv_bfloat16* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    p[i] = __float2bfloat16(((z >> 40) * (1.0f / 16777216.0f)) * 2.0f - 1.0f);
  }
}

__global__ void read_sum_kernel(const uint4* p, size_t n, unsigned* out) {
  unsigned acc = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) atomicAdd(out, acc);  // keeps the loads alive; practically never taken
}

template <typename F>
double median_ms(F&& body, int warmup = 3, int reps = 20) {
  cudaEvent_t a, b;
  CEIL_CUDA(cudaEventCreate(&a));
  CEIL_CUDA(cudaEventCreate(&b));
  for (int i = 0; i < warmup; ++i) body();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    CEIL_CUDA(cudaEventRecord(a));
    body();
    CEIL_CUDA(cudaEventRecord(b));
    CEIL_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CEIL_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::string cache_path(const GpuInfo& gpu) {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  std::string dir = xdg && *xdg ? std::string(xdg) : std::string(home ? home : "/tmp") + "/.cache";
  mkdir(dir.c_str(), 0755);
  dir += "/fathom";
  mkdir(dir.c_str(), 0755);
  return dir + "/ceilings-" + gpu.uuid + ".json";
}

Ceilings measure() {
  Ceilings c;
  // Bandwidth: 2 GiB buffers, several times the 50-60 MB L2.
  const size_t bytes = size_t(2) << 30;
  void *src = nullptr, *dst = nullptr;
  unsigned* sink = nullptr;
  CEIL_CUDA(cudaMalloc(&src, bytes));
  CEIL_CUDA(cudaMalloc(&dst, bytes));
  CEIL_CUDA(cudaMalloc(&sink, sizeof(unsigned)));
  fill_random_bf16_kernel<<<1024, 256>>>(static_cast<__nv_bfloat16*>(src), bytes / 2, 1);
  CEIL_CUDA(cudaGetLastError());
  double copy_ms = median_ms([&] { CEIL_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice)); });
  c.copy_gbps = 2.0 * bytes / (copy_ms * 1e-3) / 1e9;
  int sms = 0;
  CEIL_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  double read_ms = median_ms([&] {
    read_sum_kernel<<<sms * 8, 512>>>(static_cast<const uint4*>(src), bytes / 16, sink);
  });
  CEIL_CUDA(cudaGetLastError());
  c.read_gbps = bytes / (read_ms * 1e-3) / 1e9;
  CEIL_CUDA(cudaFree(src));
  CEIL_CUDA(cudaFree(dst));
  CEIL_CUDA(cudaFree(sink));

  // bf16 GEMM through cuBLASLt: D (M,N) = A (M,K) B (K,N), column-major, fp32 accumulation.
  const int M = 8192, N = 8192, K = 8192;
  __nv_bfloat16 *A, *B, *D;
  void* ws = nullptr;
  const size_t ws_bytes = 64 << 20;
  CEIL_CUDA(cudaMalloc(&A, sizeof(__nv_bfloat16) * M * K));
  CEIL_CUDA(cudaMalloc(&B, sizeof(__nv_bfloat16) * K * N));
  CEIL_CUDA(cudaMalloc(&D, sizeof(__nv_bfloat16) * M * N));
  CEIL_CUDA(cudaMalloc(&ws, ws_bytes));
  fill_random_bf16_kernel<<<1024, 256>>>(A, size_t(M) * K, 2);
  fill_random_bf16_kernel<<<1024, 256>>>(B, size_t(K) * N, 3);
  CEIL_CUDA(cudaGetLastError());
  cublasLtHandle_t lt;
  CEIL_LT(cublasLtCreate(&lt));
  cublasLtMatmulDesc_t op;
  CEIL_LT(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasLtMatrixLayout_t la, lb, ld;
  CEIL_LT(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, M, K, M));
  CEIL_LT(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, K, N, K));
  CEIL_LT(cublasLtMatrixLayoutCreate(&ld, CUDA_R_16BF, M, N, M));
  cublasLtMatmulPreference_t pref;
  CEIL_LT(cublasLtMatmulPreferenceCreate(&pref));
  CEIL_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                               sizeof(ws_bytes)));
  cublasLtMatmulHeuristicResult_t heur;
  int found = 0;
  CEIL_LT(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, ld, ld, pref, 1, &heur, &found));
  FATHOM_CHECK(found > 0, "cuBLASLt found no bf16 GEMM algorithm for the ceiling measurement");
  const float alpha = 1.0f, beta = 0.0f;
  double gemm_ms = median_ms([&] {
    CEIL_LT(cublasLtMatmul(lt, op, &alpha, A, la, B, lb, &beta, D, ld, D, ld, &heur.algo, ws, ws_bytes, 0));
  });
  c.bf16_tflops = 2.0 * M * N * double(K) / (gemm_ms * 1e-3) / 1e12;
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(ld);
  cublasLtMatmulDescDestroy(op);
  cublasLtDestroy(lt);
  CEIL_CUDA(cudaFree(A));
  CEIL_CUDA(cudaFree(B));
  CEIL_CUDA(cudaFree(D));
  CEIL_CUDA(cudaFree(ws));
  return c;
}

}  // namespace

GpuInfo query_gpu(int device) {
  GpuInfo g;
  g.device = device;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    g.why_absent = str_cat("no CUDA device: ", cudaGetErrorString(e));
    cudaGetLastError();
    return g;
  }
  if (n <= device) {
    g.why_absent = str_cat("no CUDA device ", device, " (", n, " present)");
    return g;
  }
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, device) != cudaSuccess) {
    g.why_absent = "cudaGetDeviceProperties failed";
    return g;
  }
  g.present = true;
  g.name = p.name;
  char uuid[64];
  std::snprintf(uuid, sizeof uuid, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                (unsigned char)p.uuid.bytes[0], (unsigned char)p.uuid.bytes[1], (unsigned char)p.uuid.bytes[2],
                (unsigned char)p.uuid.bytes[3], (unsigned char)p.uuid.bytes[4], (unsigned char)p.uuid.bytes[5],
                (unsigned char)p.uuid.bytes[6], (unsigned char)p.uuid.bytes[7], (unsigned char)p.uuid.bytes[8],
                (unsigned char)p.uuid.bytes[9], (unsigned char)p.uuid.bytes[10], (unsigned char)p.uuid.bytes[11],
                (unsigned char)p.uuid.bytes[12], (unsigned char)p.uuid.bytes[13], (unsigned char)p.uuid.bytes[14],
                (unsigned char)p.uuid.bytes[15]);
  g.uuid = uuid;
  g.sm_count = p.multiProcessorCount;
  g.cc_major = p.major;
  g.cc_minor = p.minor;
  g.l2_bytes = p.l2CacheSize;
  int clk = 0;
  if (cudaDeviceGetAttribute(&clk, cudaDevAttrClockRate, device) == cudaSuccess) g.sm_clock_mhz = clk / 1000;
  if (cudaDeviceGetAttribute(&clk, cudaDevAttrMemoryClockRate, device) == cudaSuccess) g.mem_clock_mhz = clk / 1000;
  int dv = 0, rv = 0;
  cudaDriverGetVersion(&dv);
  cudaRuntimeGetVersion(&rv);
  g.driver_version = version_string(dv);
  g.runtime_version = version_string(rv);
  cudaSetDevice(device);
  cudaMemGetInfo(&g.free_mem, &g.total_mem);
  return g;
}

Ceilings gpu_ceilings(const GpuInfo& gpu, bool remeasure) {
  FATHOM_CHECK(gpu.present, "no GPU to measure ceilings on: ", gpu.why_absent);
  const std::string path = cache_path(gpu);
  if (!remeasure) {
    std::ifstream in(path);
    if (in) {
      try {
        auto j = nlohmann::json::parse(in);
        Ceilings c;
        c.copy_gbps = j.at("copy_gbps").get<double>();
        c.read_gbps = j.at("read_gbps").get<double>();
        c.bf16_tflops = j.at("bf16_tflops").get<double>();
        c.from_cache = true;
        if (c.copy_gbps > 0 && c.read_gbps > 0 && c.bf16_tflops > 0) return c;
      } catch (const nlohmann::json::exception&) {
        // A damaged cache file is re-measured and rewritten below.
      }
    }
  }
  CEIL_CUDA(cudaSetDevice(gpu.device));
  Ceilings c = measure();
  nlohmann::json j{{"gpu", gpu.name}, {"uuid", gpu.uuid}, {"copy_gbps", c.copy_gbps},
                   {"read_gbps", c.read_gbps}, {"bf16_tflops", c.bf16_tflops}};
  std::ofstream out(path);
  if (out) out << j.dump(2) << "\n";
  return c;
}

}  // namespace fathom
