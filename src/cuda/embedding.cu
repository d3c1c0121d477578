// Embedding gather with dequantization: out[t] = scale * dequantize(tok_embd row tokens[t]).
// Bytes: n_tokens rows of the table + n_tokens * n_embd * 4 written; trivially memory-bound.
// One thread per 32-element unit of a row; grid (unit blocks, n_tokens).
// Launched with PDL (pdl.cuh): waits for the previous kernel first, then lets the next one launch.
#include <cuda_runtime.h>

#include "cuda/cuda_check.cuh"
#include "cuda/ops.cuh"
#include "cuda/pdl.cuh"
#include "cuda/quant_blocks.cuh"

namespace fathom::cuda {
namespace {

struct EmbeddingArgs {
  const uint8_t* table;
  int64_t row_bytes;
  int64_t n_vocab;
  int64_t n_units;
  const int32_t* tokens;
  float scale;
  float* out;
};

template <GgmlType T>
__global__ void embedding_kernel(const __grid_constant__ EmbeddingArgs a) {
  pdl_wait();  // tokens: written by the host copy or the sampler; out: may still be read
  pdl_trigger();
  const int64_t u = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (u >= a.n_units) return;
  const int64_t t = blockIdx.y;
  const int32_t id = a.tokens[t];
  float v[32];
  if (id >= 0 && id < a.n_vocab) {
    dequant_unit<T>(a.table + int64_t(id) * a.row_bytes, u, v);
  } else {
#pragma unroll
    for (int i = 0; i < 32; ++i) v[i] = 0.0f;
  }
  float4* o = reinterpret_cast<float4*>(a.out + (t * a.n_units + u) * kUnit);
#pragma unroll
  for (int i = 0; i < 8; ++i)
    o[i] = make_float4(v[4 * i] * a.scale, v[4 * i + 1] * a.scale, v[4 * i + 2] * a.scale,
                       v[4 * i + 3] * a.scale);
}

}  // namespace

void launch_embedding(const EmbeddingParams& p, cudaStream_t stream) {
  if (p.n_tokens <= 0) return;
  FATHOM_CHECK(p.n_embd % kUnit == 0 && p.n_embd % ggml_type_traits(p.type).block_elems == 0,
               "embedding: n_embd ", p.n_embd, " is not a multiple of the ", ggml_type_name(p.type),
               " block size");
  FATHOM_CHECK(p.n_tokens <= 65535, "embedding: n_tokens ", p.n_tokens, " above 65535");
  EmbeddingArgs a{static_cast<const uint8_t*>(p.tok_embd), int64_t(ggml_row_bytes(p.type, p.n_embd)),
                  p.n_vocab, p.n_embd / kUnit, p.tokens, p.scale, p.out};
  const dim3 grid(unsigned((a.n_units + 63) / 64), unsigned(p.n_tokens));
  const bool ok = dispatch_qtype(p.type, [&](auto tc) {
    // Bytes: the table rows, the ids, the fp32 rows written; flops: dequant fma + scale.
    launch_cost_hint(double(p.n_tokens) * (double(a.row_bytes) + 4.0 + 4.0 * double(p.n_embd)),
                     2.0 * double(p.n_tokens) * double(p.n_embd));
    launch_kernel(embedding_kernel<decltype(tc)::value>, grid, dim3(64), 0, stream, a);
  });
  FATHOM_CHECK(ok, "embedding: type ", ggml_type_name(p.type), " is not supported on CUDA");
}

}  // namespace fathom::cuda
