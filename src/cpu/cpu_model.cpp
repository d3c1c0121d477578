// The fp32 CPU reference forward pass for llama, qwen2, qwen3 and gemma3.
//
// One block, with the architecture differences marked:
//   h    = rms_norm(x) * attn_norm
//   q,k,v = h @ Wq^T, h @ Wk^T, h @ Wv^T       (+ bias: qwen2)
//   q,k  = rms_norm per head * q_norm/k_norm   (qwen3, gemma3)
//   q,k  = rope(q), rope(k)                    (NORM: llama; NEOX: others; gemma3 local layers
//                                               use their own base)
//   a    = attention(q, K cache, V cache) @ Wo^T   (gemma3: sliding window on local layers)
//   a    = rms_norm(a) * post_attn_norm        (gemma3)
//   x    = x + a
//   h    = rms_norm(x) * ffn_norm
//   f    = (silu(h @ Wg^T) * (h @ Wu^T)) @ Wd^T (gemma3: gelu_tanh instead of silu)
//   f    = rms_norm(f) * post_ffn_norm         (gemma3)
//   x    = x + f
// and around the blocks: x = embedding (gemma3: * sqrt(n_embd)); logits = rms_norm(x) @ Wout^T
// (final softcap when the file sets one).
#include "fathom/cpu_model.h"

#include <algorithm>
#include <cmath>

#include "fathom/cpu_ops.h"
#include "fathom/error.h"
#include "fathom/quant.h"

namespace fathom {
namespace {

std::vector<float> vector_of(const WeightRef& w) {
  if (!w) return {};
  std::vector<float> out(static_cast<size_t>(w.info->n_elements()));
  cpu::dequantize_weight(w, out.data());
  return out;
}

void check_type(const WeightRef& w) {
  if (!w) return;
  FATHOM_CHECK(can_dequantize(w.type()), "tensor '", w.info->name, "' has type ",
               ggml_type_name(w.type()), ", which the CPU reference cannot dequantize");
}

}  // namespace

CpuModel::CpuModel(const Model& model, int64_t n_ctx, int n_threads)
    : model_(model), n_ctx_(n_ctx), n_threads_(n_threads) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  FATHOM_CHECK(n_ctx > 0, "CpuModel: context size must be positive, got ", n_ctx);
  check_type(w.tok_embd);
  check_type(w.output);
  output_norm_ = vector_of(w.output_norm);
  for (const LayerWeights& l : w.layers) {
    for (const WeightRef* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_gate, &l.ffn_up, &l.ffn_down}) {
      check_type(*m);
    }
    LayerVectors v;
    v.attn_norm = vector_of(l.attn_norm);
    v.bq = vector_of(l.bq);
    v.bk = vector_of(l.bk);
    v.bv = vector_of(l.bv);
    v.q_norm = vector_of(l.q_norm);
    v.k_norm = vector_of(l.k_norm);
    v.post_attn_norm = vector_of(l.post_attn_norm);
    v.ffn_norm = vector_of(l.ffn_norm);
    v.post_ffn_norm = vector_of(l.post_ffn_norm);
    layer_vectors_.push_back(std::move(v));
  }
  k_cache_.assign(static_cast<size_t>(c.n_layer * n_ctx * c.kv_dim_k()), 0.0f);
  v_cache_.assign(static_cast<size_t>(c.n_layer * n_ctx * c.kv_dim_v()), 0.0f);
}

void CpuModel::emit(int64_t layer, const char* name, const float* data, int64_t n_tokens,
                    int64_t n) const {
  if (hook_) hook_(layer, name, data, n_tokens, n);
}

void CpuModel::truncate(int64_t n) {
  FATHOM_CHECK(n >= 0 && n <= n_past_, "truncate: position ", n, " is outside the cache (",
               n_past_, " tokens)");
  n_past_ = n;
}

void CpuModel::forward(const int32_t* tokens, int64_t n_tokens, float* logits_last,
                       float* logits_all) {
  const ModelConfig& c = model_.config;
  const ModelWeights& w = model_.weights;
  FATHOM_CHECK(n_tokens > 0, "forward: no tokens");
  FATHOM_CHECK(n_past_ + n_tokens <= n_ctx_, "forward: ", n_tokens, " tokens after ", n_past_,
               " cached ones exceed the context size ", n_ctx_);
  const int64_t T = n_tokens, d = c.n_embd;
  const int64_t q_dim = c.q_dim(), k_dim = c.kv_dim_k(), v_dim = c.kv_dim_v();
  const int64_t o_dim = c.n_head * c.head_dim_v;
  const int64_t n_kv = n_past_ + T;

  std::vector<int32_t> pos(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) pos[t] = static_cast<int32_t>(n_past_ + t);

  // Activations for this batch, each (T, width).
  std::vector<float> x(T * d), h(T * d), q(T * q_dim), k(T * k_dim), v(T * v_dim), att(T * o_dim),
      a(T * d), gate(T * c.n_ff), up(T * c.n_ff);

  cpu::embedding(w.tok_embd, tokens, T, x.data());
  if (c.embd_scale_sqrt) cpu::scale(x.data(), T * d, std::sqrt(static_cast<float>(d)));
  emit(-1, "inp_embd", x.data(), T, d);

  const float* freq_factors = c.rope_freq_factors.empty() ? nullptr : c.rope_freq_factors.data();

  for (int64_t il = 0; il < c.n_layer; ++il) {
    const LayerWeights& l = w.layers[il];
    const LayerVectors& lv = layer_vectors_[il];

    // ---- attention ----
    cpu::rms_norm(x.data(), lv.attn_norm.data(), h.data(), T, d, c.norm_eps);
    emit(il, "attn_norm", h.data(), T, d);
    cpu::matmul(l.wq, h.data(), q.data(), T, n_threads_);
    cpu::matmul(l.wk, h.data(), k.data(), T, n_threads_);
    cpu::matmul(l.wv, h.data(), v.data(), T, n_threads_);
    if (!lv.bq.empty()) cpu::add_bias(q.data(), lv.bq.data(), T, q_dim);
    if (!lv.bk.empty()) cpu::add_bias(k.data(), lv.bk.data(), T, k_dim);
    if (!lv.bv.empty()) cpu::add_bias(v.data(), lv.bv.data(), T, v_dim);
    if (!lv.q_norm.empty()) {
      cpu::rms_norm(q.data(), lv.q_norm.data(), q.data(), T * c.n_head, c.head_dim_k, c.norm_eps);
    }
    if (!lv.k_norm.empty()) {
      cpu::rms_norm(k.data(), lv.k_norm.data(), k.data(), T * c.n_head_kv, c.head_dim_k,
                    c.norm_eps);
    }
    const cpu::RopeParams rp = cpu::rope_params_for_layer(c, il, freq_factors);
    cpu::rope(q.data(), pos.data(), T, c.n_head, c.head_dim_k, rp);
    cpu::rope(k.data(), pos.data(), T, c.n_head_kv, c.head_dim_k, rp);
    emit(il, "Qcur", q.data(), T, q_dim);
    emit(il, "Kcur", k.data(), T, k_dim);
    emit(il, "Vcur", v.data(), T, v_dim);

    // Append this batch to the cache: rows n_past .. n_past+T-1 of layer il.
    float* kc = k_cache_.data() + il * n_ctx_ * k_dim;
    float* vc = v_cache_.data() + il * n_ctx_ * v_dim;
    std::copy(k.begin(), k.end(), kc + n_past_ * k_dim);
    std::copy(v.begin(), v.end(), vc + n_past_ * v_dim);

    cpu::AttentionParams ap;
    ap.n_head = c.n_head;
    ap.n_head_kv = c.n_head_kv;
    ap.head_dim_k = c.head_dim_k;
    ap.head_dim_v = c.head_dim_v;
    ap.scale = c.attn_scale;
    ap.softcap = c.attn_logit_softcap;
    ap.causal = true;
    ap.sliding_window = c.layer_is_swa[il] ? c.sliding_window : 0;
    cpu::attention(q.data(), pos.data(), T, kc, vc, nullptr, n_kv, ap, att.data());
    emit(il, "kqv_out", att.data(), T, o_dim);
    cpu::matmul(l.wo, att.data(), a.data(), T, n_threads_);
    emit(il, "attn_out", a.data(), T, d);
    if (!lv.post_attn_norm.empty()) {
      cpu::rms_norm(a.data(), lv.post_attn_norm.data(), a.data(), T, d, c.norm_eps);
      emit(il, "attn_post_norm", a.data(), T, d);
    }
    cpu::add(x.data(), a.data(), x.data(), T * d);
    emit(il, "ffn_inp", x.data(), T, d);

    // ---- feed-forward ----
    cpu::rms_norm(x.data(), lv.ffn_norm.data(), h.data(), T, d, c.norm_eps);
    emit(il, "ffn_norm", h.data(), T, d);
    cpu::matmul(l.ffn_gate, h.data(), gate.data(), T, n_threads_);
    cpu::matmul(l.ffn_up, h.data(), up.data(), T, n_threads_);
    if (c.gelu_ffn) {
      cpu::geglu(gate.data(), up.data(), gate.data(), T * c.n_ff);
    } else {
      cpu::swiglu(gate.data(), up.data(), gate.data(), T * c.n_ff);
    }
    cpu::matmul(l.ffn_down, gate.data(), a.data(), T, n_threads_);
    emit(il, "ffn_out", a.data(), T, d);
    if (!lv.post_ffn_norm.empty()) {
      cpu::rms_norm(a.data(), lv.post_ffn_norm.data(), a.data(), T, d, c.norm_eps);
      emit(il, "ffn_post_norm", a.data(), T, d);
    }
    cpu::add(x.data(), a.data(), x.data(), T * d);
    emit(il, "l_out", x.data(), T, d);
  }

  cpu::rms_norm(x.data(), output_norm_.data(), x.data(), T, d, c.norm_eps);
  emit(c.n_layer, "result_norm", x.data(), T, d);
  n_past_ += T;
  if (!logits_last && !logits_all) return;

  // Logits for every token only when asked: the vocabulary matmul dominates a small model.
  const int64_t first = logits_all ? 0 : T - 1;
  const int64_t n_out = T - first;
  std::vector<float> logits(static_cast<size_t>(n_out * c.n_vocab));
  cpu::matmul(w.output, x.data() + first * d, logits.data(), n_out, n_threads_);
  if (c.final_logit_softcap > 0.0f) {
    cpu::softcap(logits.data(), n_out * c.n_vocab, c.final_logit_softcap);
  }
  emit(c.n_layer, "result_output", logits.data(), n_out, c.n_vocab);
  if (logits_all) std::copy(logits.begin(), logits.end(), logits_all);
  if (logits_last) {
    std::copy(logits.end() - c.n_vocab, logits.end(), logits_last);
  }
}

}  // namespace fathom
