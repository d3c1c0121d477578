// Reads a transformer's hyperparameters and weight views from GGUF metadata and tensors.
//
// Key names follow llama.cpp's gguf-py constants ("<arch>.embedding_length", "blk.<i>.attn_q.weight").
// Architecture defaults that the file does not carry (gemma3's sliding-window pattern, its local
// rope base, its attention scale) are taken from llama.cpp's llama-model.cpp, which wrote the files.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "fathom/cpu_ops.h"
#include "fathom/error.h"
#include "fathom/model.h"

namespace fathom {

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::LLAMA: return "llama";
    case Arch::QWEN2: return "qwen2";
    case Arch::QWEN3: return "qwen3";
    case Arch::GEMMA3: return "gemma3";
  }
  return "unknown";
}

namespace {

Arch parse_arch(const std::string& s, const std::string& path) {
  if (s == "llama") return Arch::LLAMA;  // Llama 2/3/3.1/3.2 and Mistral (converted as llama)
  if (s == "qwen2") return Arch::QWEN2;
  if (s == "qwen3") return Arch::QWEN3;
  if (s == "gemma3") return Arch::GEMMA3;
  fail("unsupported architecture '", s, "' in ", path,
       " (fathom supports llama, qwen2, qwen3, gemma3)");
}

// A hyperparameter that llama.cpp allows to be per-layer (an array): fathom needs it uniform.
int64_t get_uniform_int(const GgufFile& f, const std::string& key, int64_t def) {
  const GgufValue* v = f.find(key);
  if (!v) return def;
  if (v->type != GgufValueType::ARRAY) return v->as_int();
  FATHOM_CHECK(!v->array.empty(), "metadata '", key, "' in ", f.path(), " is an empty array");
  const int64_t first = v->array[0].as_int();
  for (const GgufValue& e : v->array) {
    FATHOM_CHECK(e.as_int() == first, "metadata '", key, "' in ", f.path(),
                 " varies per layer, which fathom does not support");
  }
  return first;
}

int64_t require_int(const GgufFile& f, const std::string& key) {
  FATHOM_CHECK(f.has(key), "required metadata '", key, "' is missing from ", f.path());
  return get_uniform_int(f, key, 0);
}

}  // namespace

ModelConfig read_config(const GgufFile& f) {
  ModelConfig c;
  c.arch_str = f.get_string("general.architecture", "");
  FATHOM_CHECK(!c.arch_str.empty(), f.path(), " has no 'general.architecture' metadata");
  c.arch = parse_arch(c.arch_str, f.path());
  c.name = f.get_string("general.name", "");
  const std::string p = c.arch_str + ".";

  c.n_ctx_train = get_uniform_int(f, p + "context_length", 0);
  c.n_embd = require_int(f, p + "embedding_length");
  c.n_layer = require_int(f, p + "block_count");
  c.n_ff = require_int(f, p + "feed_forward_length");
  c.n_head = require_int(f, p + "attention.head_count");
  c.n_head_kv = get_uniform_int(f, p + "attention.head_count_kv", c.n_head);
  FATHOM_CHECK(c.n_embd > 0 && c.n_layer > 0 && c.n_ff > 0 && c.n_head > 0 && c.n_head_kv > 0,
               "non-positive hyperparameter in ", f.path(), ": embedding_length ", c.n_embd,
               ", block_count ", c.n_layer, ", feed_forward_length ", c.n_ff, ", head_count ",
               c.n_head, ", head_count_kv ", c.n_head_kv);
  FATHOM_CHECK(c.n_head % c.n_head_kv == 0, "head_count ", c.n_head,
               " is not a multiple of head_count_kv ", c.n_head_kv, " in ", f.path());
  c.head_dim_k = get_uniform_int(f, p + "attention.key_length", c.n_embd / c.n_head);
  c.head_dim_v = get_uniform_int(f, p + "attention.value_length", c.head_dim_k);
  c.norm_eps = static_cast<float>(f.get_float(p + "attention.layer_norm_rms_epsilon", 1e-5));

  // Vocabulary: the tokenizer's token list when present; load_model checks it against token_embd.
  if (const GgufValue* toks = f.find("tokenizer.ggml.tokens")) {
    c.n_vocab = static_cast<int64_t>(toks->array.size());
  } else {
    c.n_vocab = get_uniform_int(f, p + "vocab_size", 0);
  }

  // RoPE. llama uses adjacent pairs (the converter permutes Q/K rows to match); the others NEOX.
  c.rope_type = c.arch == Arch::LLAMA ? RopeType::NORM : RopeType::NEOX;
  c.n_rot = get_uniform_int(f, p + "rope.dimension_count", c.head_dim_k);
  FATHOM_CHECK(c.n_rot > 0 && c.n_rot % 2 == 0 && c.n_rot <= c.head_dim_k, "rope.dimension_count ",
               c.n_rot, " must be even and at most the head dimension ", c.head_dim_k, " in ",
               f.path());
  c.rope_freq_base = static_cast<float>(f.get_float(p + "rope.freq_base", 10000.0));
  c.rope_freq_base_swa = static_cast<float>(f.get_float(p + "rope.freq_base_swa", 10000.0));
  c.rope_scaling_type = f.get_string(p + "rope.scaling.type", "");
  // As llama.cpp: the factor (or the old rope.scale_linear) divides the frequency for every type
  // but llama3, whose scaling lives entirely in the frequency factors.
  float factor = static_cast<float>(f.get_float(p + "rope.scaling.factor", 0.0));
  if (factor == 0.0f) factor = static_cast<float>(f.get_float(p + "rope.scale_linear", 0.0));
  c.rope_scaling_factor = factor == 0.0f ? 1.0f : factor;
  c.rope_freq_scale = (factor == 0.0f || c.rope_scaling_type == "llama3") ? 1.0f : 1.0f / factor;
  c.rope_yarn_orig_ctx = static_cast<float>(
      f.get_float(p + "rope.scaling.original_context_length", static_cast<double>(c.n_ctx_train)));
  c.rope_yarn_ext_factor = static_cast<float>(f.get_float(p + "rope.scaling.yarn_ext_factor", -1.0));
  c.rope_yarn_attn_factor =
      static_cast<float>(f.get_float(p + "rope.scaling.yarn_attn_factor", 1.0));
  c.rope_yarn_beta_fast = static_cast<float>(f.get_float(p + "rope.scaling.yarn_beta_fast", 32.0));
  c.rope_yarn_beta_slow = static_cast<float>(f.get_float(p + "rope.scaling.yarn_beta_slow", 1.0));
  if (const GgufTensorInfo* rf = f.find_tensor("rope_freqs.weight")) {
    FATHOM_CHECK(rf->type == GgmlType::F32 && rf->n_elements() == c.n_rot / 2,
                 "tensor 'rope_freqs.weight' in ", f.path(), " must be F32 with n_rot/2 = ",
                 c.n_rot / 2, " elements, got ", ggml_type_name(rf->type), " with ",
                 rf->n_elements());
    const float* d = reinterpret_cast<const float*>(rf->data);
    c.rope_freq_factors.assign(d, d + rf->n_elements());
  } else if (c.rope_scaling_type == "llama3") {
    // Meta's defaults for Llama 3.1 where the file names the type but not the parameters.
    c.rope_freq_factors.resize(static_cast<size_t>(c.n_rot / 2));
    cpu::llama3_freq_factors(
        c.n_rot, c.rope_freq_base, c.rope_scaling_factor,
        static_cast<float>(f.get_float(p + "rope.scaling.low_freq_factor", 1.0)),
        static_cast<float>(f.get_float(p + "rope.scaling.high_freq_factor", 4.0)),
        static_cast<float>(f.get_float(p + "rope.scaling.original_context_length", 8192.0)),
        c.rope_freq_factors.data());
  }

  // Attention.
  c.attn_logit_softcap = static_cast<float>(f.get_float(p + "attn_logit_softcapping", 0.0));
  c.final_logit_softcap = static_cast<float>(f.get_float(p + "final_logit_softcapping", 0.0));
  c.layer_is_swa.assign(static_cast<size_t>(c.n_layer), false);

  switch (c.arch) {
    case Arch::LLAMA:
      break;
    case Arch::QWEN2:
      c.has_qkv_bias = true;
      break;
    case Arch::QWEN3:
      c.has_qk_norm = true;
      break;
    case Arch::GEMMA3: {
      c.has_qk_norm = true;
      c.has_post_norms = true;
      c.embd_scale_sqrt = true;
      c.gelu_ffn = true;
      c.sliding_window = get_uniform_int(f, p + "attention.sliding_window", 0);
      // Layer il is local (sliding window) unless il % 6 == 5 (llama.cpp set_swa_pattern(6));
      // a file may instead carry the per-layer pattern as a bool array.
      const GgufValue* pat = f.find(p + "attention.sliding_window_pattern");
      for (int64_t il = 0; il < c.n_layer; ++il) {
        bool swa = il % 6 < 5;
        if (pat && pat->type == GgufValueType::ARRAY) {
          FATHOM_CHECK(static_cast<int64_t>(pat->array.size()) == c.n_layer,
                       "attention.sliding_window_pattern in ", f.path(), " has ",
                       pat->array.size(), " entries for ", c.n_layer, " layers");
          swa = pat->array[static_cast<size_t>(il)].as_bool();
        } else if (pat) {
          const int64_t n = pat->as_int();
          swa = n > 0 && il % n < n - 1;
        }
        c.layer_is_swa[static_cast<size_t>(il)] = swa && c.sliding_window > 0;
      }
      // query_pre_attn_scalar: head_dim for gemma3 1b/4b/12b (and 270m), n_embd/n_head for 27b
      // (62 layers), as llama.cpp hard-codes it; the file does not carry it.
      const float qpas = c.n_layer == 62 ? static_cast<float>(c.n_embd / c.n_head)
                                         : static_cast<float>(c.head_dim_k);
      c.attn_scale = 1.0f / std::sqrt(qpas);
      break;
    }
  }
  return c;
}

namespace {

// Finds tensor `name` and checks its shape (GGUF ne order, contiguous dim first).
WeightRef bind(const GgufFile& f, const std::string& name, std::vector<int64_t> ne, bool required) {
  const GgufTensorInfo* t = f.find_tensor(name);
  if (!t) {
    FATHOM_CHECK(!required, "required tensor '", name, "' is missing from ", f.path());
    return WeightRef{};
  }
  bool ok = true;
  for (size_t i = 0; i < 4; ++i) {
    const int64_t want = i < ne.size() ? ne[i] : 1;
    if (t->ne[i] != want) ok = false;
  }
  if (!ok) {
    std::string got, want;
    for (uint32_t i = 0; i < std::max<uint32_t>(t->n_dims, 1); ++i) {
      got += (i ? ", " : "") + std::to_string(t->ne[i]);
    }
    for (size_t i = 0; i < ne.size(); ++i) want += (i ? ", " : "") + std::to_string(ne[i]);
    fail("tensor '", name, "' in ", f.path(), " has shape [", got,
         "] but the hyperparameters give [", want, "]");
  }
  WeightRef w;
  w.info = t;
  return w;
}

}  // namespace

std::unique_ptr<Model> load_model(std::unique_ptr<GgufFile> file) {
  FATHOM_CHECK(file != nullptr, "load_model: no file");
  auto m = std::make_unique<Model>();
  m->file = std::move(file);
  const GgufFile& f = *m->file;
  m->config = read_config(f);
  ModelConfig& c = m->config;
  ModelWeights& w = m->weights;

  const GgufTensorInfo* te = f.find_tensor("token_embd.weight");
  FATHOM_CHECK(te, "required tensor 'token_embd.weight' is missing from ", f.path());
  if (c.n_vocab == 0) c.n_vocab = te->ne[1];
  const int64_t d = c.n_embd;
  w.tok_embd = bind(f, "token_embd.weight", {d, c.n_vocab}, true);
  w.output_norm = bind(f, "output_norm.weight", {d}, true);
  w.output = bind(f, "output.weight", {d, c.n_vocab}, false);
  c.tied_embeddings = !w.output;
  if (c.tied_embeddings) w.output = w.tok_embd;
  w.rope_freqs = bind(f, "rope_freqs.weight", {c.n_rot / 2}, false);

  const int64_t q_dim = c.q_dim(), k_dim = c.kv_dim_k(), v_dim = c.kv_dim_v();
  w.layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t il = 0; il < c.n_layer; ++il) {
    LayerWeights& l = w.layers[static_cast<size_t>(il)];
    const std::string b = "blk." + std::to_string(il) + ".";
    l.attn_norm = bind(f, b + "attn_norm.weight", {d}, true);
    l.wq = bind(f, b + "attn_q.weight", {d, q_dim}, true);
    l.wk = bind(f, b + "attn_k.weight", {d, k_dim}, true);
    l.wv = bind(f, b + "attn_v.weight", {d, v_dim}, true);
    l.wo = bind(f, b + "attn_output.weight", {c.n_head * c.head_dim_v, d}, true);
    // qwen2 always has Q/K/V biases; other llama-family files may carry them too.
    l.bq = bind(f, b + "attn_q.bias", {q_dim}, c.has_qkv_bias);
    l.bk = bind(f, b + "attn_k.bias", {k_dim}, c.has_qkv_bias);
    l.bv = bind(f, b + "attn_v.bias", {v_dim}, c.has_qkv_bias);
    l.q_norm = bind(f, b + "attn_q_norm.weight", {c.head_dim_k}, c.has_qk_norm);
    l.k_norm = bind(f, b + "attn_k_norm.weight", {c.head_dim_k}, c.has_qk_norm);
    l.post_attn_norm = bind(f, b + "post_attention_norm.weight", {d}, c.has_post_norms);
    l.ffn_norm = bind(f, b + "ffn_norm.weight", {d}, true);
    l.ffn_gate = bind(f, b + "ffn_gate.weight", {d, c.n_ff}, true);
    l.ffn_up = bind(f, b + "ffn_up.weight", {d, c.n_ff}, true);
    l.ffn_down = bind(f, b + "ffn_down.weight", {c.n_ff, d}, true);
    l.post_ffn_norm = bind(f, b + "post_ffw_norm.weight", {d}, c.has_post_norms);
  }
  // Any bias present anywhere means the forward pass must add it.
  if (!w.layers.empty() && w.layers[0].bq) c.has_qkv_bias = true;
  return m;
}

std::unique_ptr<Model> load_model(const std::string& path) {
  return load_model(GgufFile::open(path));
}

}  // namespace fathom
