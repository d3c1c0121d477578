// Decode attention (max_q_len == 1) over the paged fp16 KV cache, split kernel: see
// attention_decode.cu. launch_attention (attention.cu) dispatches here unless the old kernel is
// selected.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "cuda/ops.cuh"

namespace fathom::cuda {

// True when decode attention takes the old kernel of attention.cu: FATHOM_ATTN_DECODE=old in the
// environment (read once per process), unless attention_decode_set_override() says otherwise.
bool attention_decode_uses_old_kernel();

// Test / bench hook: 1 selects the old kernel, 0 the split kernel, -1 back to the environment's
// choice. Affects launches made after the call (a captured graph keeps what it was captured with).
void attention_decode_set_override(int v);

// Workspace the split kernel needs for p (decode only; 0 when it runs unsplit). Covers every
// max_kv_len up to p.max_kv_len. attention_workspace_bytes() returns the larger of this and the
// old kernel's need, so switching kernels never needs a bigger buffer.
size_t attention_decode_workspace_bytes(const AttentionParams& p);

// Split kernel + merge. p.max_q_len == 1, parameters already checked; scale: the resolved
// softmax scale (p.scale or 1/sqrt(head_dim)).
void launch_attention_decode(const AttentionParams& p, float scale, cudaStream_t stream);

}  // namespace fathom::cuda
