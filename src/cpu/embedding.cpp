// CPU reference embedding lookup (ggml get_rows): one dequantized row per token.
#include "fathom/cpu_ops.h"
#include "fathom/error.h"
#include "fathom/quant.h"

namespace fathom {
namespace cpu {

void embedding(GgmlType type, const void* tok_embd, int64_t n_vocab, int64_t n_embd,
               const int32_t* tokens, int64_t n_tokens, float* out) {
  const size_t row_bytes = ggml_row_bytes(type, n_embd);
  for (int64_t t = 0; t < n_tokens; ++t) {
    FATHOM_CHECK(tokens[t] >= 0 && tokens[t] < n_vocab, "embedding: token id ", tokens[t],
                 " at position ", t, " is outside the vocabulary [0, ", n_vocab, ")");
    dequantize_row(type, static_cast<const uint8_t*>(tok_embd) + tokens[t] * row_bytes,
                   out + t * n_embd, n_embd);
  }
}

void embedding(const WeightRef& tok_embd, const int32_t* tokens, int64_t n_tokens, float* out) {
  FATHOM_CHECK(tok_embd, "embedding: missing token embedding");
  embedding(tok_embd.type(), tok_embd.data(), tok_embd.rows(), tok_embd.cols(), tokens, n_tokens,
            out);
}

}  // namespace cpu
}  // namespace fathom
