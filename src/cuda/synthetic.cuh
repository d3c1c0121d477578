// Random weights written straight into device memory, for `fathom bench --synthetic`: full-size
// shapes (an 8B model is 5-16 GB) without a file, a host copy or a CPU quantizer.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "fathom/ggml_type.h"

namespace fathom::cuda {

// Fills a (rows, cols) tensor of `type` in GGUF block layout at `data` (device) with random
// blocks whose scale fields are finite and sized so a unit-RMS input gives an output of RMS ~1:
// quantized values are uniform random bits, fp16 scales d ~ 1/(sqrt(cols) * typical |q|).
// 1-D tensors (rows == 1, the norms) get 1 +- 0.1 so the network stays finite.
// Deterministic in `seed`. F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K.
void launch_fill_synthetic(GgmlType type, void* data, int64_t rows, int64_t cols, uint64_t seed,
                           cudaStream_t stream);

}  // namespace fathom::cuda
