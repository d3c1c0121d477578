// The fp32 CPU reference forward pass: a whole transformer built from fathom/cpu_ops.h, with a
// host KV cache so that generation is incremental (prefill once, then one token per step).
// It is the oracle for the CUDA engine and for `fathom check`; it is not meant to be fast.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "fathom/model.h"

namespace fathom {

// Called after each named step of the forward pass with the step's output for the current batch:
//   layer: block index, or -1 before the first block ("inp_embd") and n_layer after the last
//   name:  llama.cpp's callback names: inp_embd, attn_norm, Qcur, Kcur, Vcur (after bias, Q/K norm
//          and rope), kqv_out, attn_out, attn_post_norm, ffn_inp, ffn_norm, ffn_out,
//          ffn_post_norm, l_out, result_norm, result_output
//   data:  (n_tokens, n) row-major, valid only during the call.
using CpuHook = std::function<void(int64_t layer, const char* name, const float* data,
                                   int64_t n_tokens, int64_t n)>;

class CpuModel {
 public:
  // `model` must outlive this object. n_ctx: KV-cache capacity in tokens.
  // n_threads <= 0: all hardware threads (matmuls only). Throws when a weight type has no CPU
  // dequantizer.
  CpuModel(const Model& model, int64_t n_ctx, int n_threads = 0);

  // Runs `n_tokens` new tokens at positions n_past() .. n_past() + n_tokens - 1 and appends their
  // keys/values to the cache.
  //   logits_last (n_vocab), nullable: logits of the last token.
  //   logits_all (n_tokens, n_vocab), nullable: logits of every token.
  // Throws when the tokens would overflow n_ctx or a token id is outside the vocabulary.
  void forward(const int32_t* tokens, int64_t n_tokens, float* logits_last,
               float* logits_all = nullptr);

  void reset() { n_past_ = 0; }          // forget the cache
  // Forgets cached positions >= n; positions < n stay valid (each row depends only on earlier
  // tokens), so a conversation can rewind without re-evaluating its prefix.
  void truncate(int64_t n);
  int64_t n_past() const { return n_past_; }
  int64_t n_ctx() const { return n_ctx_; }
  const ModelConfig& config() const { return model_.config; }
  void set_hook(CpuHook hook) { hook_ = std::move(hook); }

 private:
  // Small per-layer vectors dequantized once at construction (norm weights, biases).
  struct LayerVectors {
    std::vector<float> attn_norm, bq, bk, bv, q_norm, k_norm, post_attn_norm, ffn_norm,
        post_ffn_norm;
  };
  void emit(int64_t layer, const char* name, const float* data, int64_t n_tokens, int64_t n) const;

  const Model& model_;
  int64_t n_ctx_;
  int n_threads_;
  int64_t n_past_ = 0;
  std::vector<LayerVectors> layer_vectors_;
  std::vector<float> output_norm_;  // (n_embd)
  std::vector<float> k_cache_;      // (n_layer, n_ctx, n_head_kv * head_dim_k)
  std::vector<float> v_cache_;      // (n_layer, n_ctx, n_head_kv * head_dim_v)
  CpuHook hook_;
};

}  // namespace fathom
