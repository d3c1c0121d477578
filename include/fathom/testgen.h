// Test-model generator: writes GGUF files with random weights and the complete metadata of a real
// model of a named shape, so the loader, the tokenizers, the CPU reference and the CUDA engine can be
// exercised without downloading anything.
//
// Deterministic: the same spec gives the same bytes. Each tensor row draws from its own PRNG stream
// seeded by (seed, tensor name, row), so the order of writing and the thread count do not matter.
// Matrices are ~N(0, 1/cols) (a unit-RMS input gives unit-RMS outputs), norm weights ~1 +- 0.1
// (GGUF stores norms with gemma's +1 already folded in), biases ~N(0, 0.02^2).
//
// Weight types: every matrix gets the requested type, with llama.cpp's fallback when the row length
// is not a multiple of the block (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0; as in the real
// gemma-3-270m file, whose 640-wide rows do not fit 256-element blocks; Q2_K / Q3_K -> Q4_0, where
// llama.cpp takes IQ4_NL, which fathom lacks). 1-D tensors stay F32.
// "Q4_K_M" is llama.cpp's mixed recipe: Q4_K, with Q6_K for output/tied embedding and for attn_v /
// ffn_down of the first and last eighth of the layers and every third layer in between.
//
// Tokenizer: a small SentencePiece-style ("llama") vocabulary: <unk> <s> </s>, the 256 byte-fallback
// tokens <0x00>..<0xFF>, "▁", printable ASCII and pieces of common English words with scores,
// padded with <unused_N> tokens up to the shape's n_vocab.
//
// Big shapes are written tensor by tensor, a few rows at a time: memory stays at a few MB whatever
// the model size (llama3-8b F16 is a 16 GB file and takes minutes to generate).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fathom/ggml_type.h"

namespace fathom {

struct TestModelSpec {
  std::string shape = "tiny-llama";  // one of test_model_shapes()
  std::string type = "F32";          // a GgmlType name (F32 F16 BF16 Q8_0 Q4_0 Q2_K Q3_K Q4_K ...) or "Q4_K_M"
  uint64_t seed = 1;
};

// Hyperparameters of a named shape (what the metadata will say).
struct TestModelShape {
  std::string name;          // "tiny-llama"
  std::string arch;          // general.architecture: llama, qwen2, qwen3, gemma3
  int64_t n_vocab = 0;
  int64_t n_ctx = 0;         // context_length
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_ff = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;      // key_length == value_length
  float norm_eps = 1e-5f;
  float rope_base = 10000.0f;
  bool tied_embeddings = false;   // no output.weight
  bool qkv_bias = false;          // qwen2
  bool qk_norm = false;           // qwen3, gemma3
  bool post_norms = false;        // gemma3 sandwich norms
  int64_t sliding_window = 0;     // gemma3: every 6th layer is global, the rest use this window
  float llama3_rope_factor = 0;   // >0: write rope_freqs.weight (llama 3.x long-context scaling)
  int64_t llama3_rope_orig_ctx = 8192;
};

std::vector<std::string> test_model_shapes();
// Throws fathom::Error listing the known shapes when `name` is not one.
TestModelShape test_model_shape(const std::string& name);
// Accepted values of TestModelSpec::type.
std::vector<std::string> test_model_types();

// Type chosen for a tensor (after the Q4_K_M recipe and the block-size fallback).
GgmlType test_model_tensor_type(const TestModelSpec& spec, const std::string& tensor_name, int64_t cols,
                                int64_t n_layer);

// The bytes of the file before its data section (header, metadata, tensor infos, padding) and,
// in *data_bytes, the size of the data section that follows: what `fathom bench --synthetic`
// needs to describe a full-size model without generating its weights on the host.
std::vector<uint8_t> test_model_header(const TestModelSpec& spec, size_t* data_bytes);

// Writes the model to `path` (via PATH.tmp, renamed when complete). Throws fathom::Error on an
// unknown shape/type, a type without a CPU quantizer or an I/O error.
void write_test_model(const TestModelSpec& spec, const std::string& path);

}  // namespace fathom
