// Decode attention (max_q_len == 1) over the paged fp16 KV cache, split kernel: see
// attention_decode.cu. launch_attention (attention.cu) dispatches every decode call here.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "cuda/ops.cuh"

namespace fathom::cuda {

// Workspace the split kernel needs for p (decode only; 0 when it runs unsplit). Covers every
// max_kv_len up to p.max_kv_len; attention_workspace_bytes() returns it for decode.
size_t attention_decode_workspace_bytes(const AttentionParams& p);

// Split kernel + merge. p.max_q_len == 1, parameters already checked; scale: the resolved
// softmax scale (p.scale or 1/sqrt(head_dim)).
void launch_attention_decode(const AttentionParams& p, float scale, cudaStream_t stream);

}  // namespace fathom::cuda
