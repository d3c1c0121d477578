// `fathom info [MODEL.gguf] [--ctx N] [--meta]`: what a GGUF file holds and what it will cost:
// architecture and hyperparameters (read_config), tokenizer, tensors by type, weight bytes and
// the fp16 KV cache per token and for a context. Reads the header only; loads no weights.
#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/command.h"
#include "fathom/error.h"
#include "fathom/gguf.h"
#include "fathom/model.h"

namespace fathom::cli {
namespace {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) {
    b /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", b, units[u]);
  return buf;
}

// A metadata value on one line: strings escaped and cut, arrays shortened to their first elements.
std::string one_line(const GgufValue& v) {
  if (v.type == GgufValueType::STRING) {
    std::string out = "\"";
    for (size_t k = 0; k < v.s.size() && k < 72; ++k) {
      const char c = v.s[k];
      if (c == '\n') out += "\\n";
      else if (c == '\t') out += "\\t";
      else if (static_cast<unsigned char>(c) < 0x20) out += "?";
      else out += c;
    }
    out += "\"";
    if (v.s.size() > 72) out += str_cat("... (", v.s.size(), " bytes)");
    return out;
  }
  if (v.type == GgufValueType::ARRAY) {
    std::string out = str_cat(gguf_value_type_name(v.array_type), "[", v.array.size(), "] [");
    for (size_t k = 0; k < v.array.size() && k < 6; ++k) out += (k ? ", " : "") + one_line(v.array[k]);
    return out + (v.array.size() > 6 ? ", ...]" : "]");
  }
  return gguf_value_to_string(v);
}

void print_meta(const GgufFile& f) {
  std::printf("\nmetadata (%zu keys, file order):\n", f.metadata().size());
  for (const auto& [key, value] : f.metadata()) {
    const char* type = value.type == GgufValueType::ARRAY ? "ARRAY" : gguf_value_type_name(value.type);
    std::printf("  %-44s %-8s %s\n", key.c_str(), type, one_line(value).c_str());
  }
}

// When read_config does not know the architecture: the raw `<arch>.*` keys.
void print_raw_hparams(const GgufFile& f, const std::string& arch) {
  const std::string prefix = arch + ".";
  for (const auto& [key, value] : f.metadata())
    if (key.rfind(prefix, 0) == 0) std::printf("  %-36s %s\n", key.c_str(), one_line(value).c_str());
}

void print_config(const ModelConfig& c, const GgufFile& f) {
  std::printf("  %-22s %lld\n", "layers", static_cast<long long>(c.n_layer));
  std::printf("  %-22s %lld\n", "embedding", static_cast<long long>(c.n_embd));
  std::printf("  %-22s %lld\n", "feed-forward", static_cast<long long>(c.n_ff));
  std::printf("  %-22s %lld q, %lld kv (head dim k %lld, v %lld)\n", "attention heads",
              static_cast<long long>(c.n_head), static_cast<long long>(c.n_head_kv),
              static_cast<long long>(c.head_dim_k), static_cast<long long>(c.head_dim_v));
  std::printf("  %-22s %lld\n", "vocabulary", static_cast<long long>(c.n_vocab));
  std::printf("  %-22s %lld\n", "training context", static_cast<long long>(c.n_ctx_train));
  std::printf("  %-22s %g\n", "rms norm eps", c.norm_eps);
  std::printf("  %-22s %s, %lld dims, base %g", "rope", c.rope_type == RopeType::NEOX ? "neox" : "norm",
              static_cast<long long>(c.n_rot), c.rope_freq_base);
  if (c.sliding_window > 0) std::printf(" (sliding-window layers: base %g)", c.rope_freq_base_swa);
  if (!c.rope_scaling_type.empty()) std::printf(", scaling %s x%g", c.rope_scaling_type.c_str(), c.rope_scaling_factor);
  std::printf("\n");
  if (c.sliding_window > 0) {
    const auto n_swa = std::count(c.layer_is_swa.begin(), c.layer_is_swa.end(), true);
    std::printf("  %-22s %lld tokens on %lld of %lld layers\n", "sliding window",
                static_cast<long long>(c.sliding_window), static_cast<long long>(n_swa),
                static_cast<long long>(c.n_layer));
  }
  if (c.attn_logit_softcap > 0 || c.final_logit_softcap > 0)
    std::printf("  %-22s attention %g, final %g\n", "logit softcap", c.attn_logit_softcap, c.final_logit_softcap);
  std::string flags;
  // No output.weight: the output projection reuses token_embd (whether or not read_config says so).
  if (c.tied_embeddings || (!f.find_tensor("output.weight") && f.find_tensor("token_embd.weight")))
    flags += " tied-embeddings";
  if (c.has_qkv_bias) flags += " qkv-bias";
  if (c.has_qk_norm) flags += " qk-norm";
  if (c.has_post_norms) flags += " post-norms";
  if (c.embd_scale_sqrt) flags += " embd-scale-sqrt";
  flags += c.gelu_ffn ? " geglu" : " swiglu";
  std::printf("  %-22s%s\n", "flags", flags.c_str());
}

void print_tokenizer(const GgufFile& f) {
  const std::string model = f.get_string("tokenizer.ggml.model", "");
  if (model.empty()) {
    std::printf("\ntokenizer: none in the file\n");
    return;
  }
  const char* kind = model == "llama" ? "SentencePiece" : model == "gpt2" ? "byte-level BPE" : "unknown kind";
  const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
  const size_t n = tokens && tokens->type == GgufValueType::ARRAY ? tokens->array.size() : 0;
  std::printf("\ntokenizer: %s (%s), %zu tokens", model.c_str(), kind, n);
  const std::string pre = f.get_string("tokenizer.ggml.pre", "");
  if (!pre.empty()) std::printf(", pre '%s'", pre.c_str());
  if (const GgufValue* m = f.find("tokenizer.ggml.merges")) std::printf(", %zu merges", m->array.size());
  std::printf("\n  bos %lld, eos %lld", static_cast<long long>(f.get_int("tokenizer.ggml.bos_token_id", -1)),
              static_cast<long long>(f.get_int("tokenizer.ggml.eos_token_id", -1)));
  if (f.has("tokenizer.chat_template"))
    std::printf(", chat template (%zu bytes)", f.get_string("tokenizer.chat_template", "").size());
  std::printf("\n");
}

struct TypeSummary {
  size_t count = 0;
  int64_t elements = 0;
  size_t bytes = 0;
};

int cmd_info(const std::vector<std::string>& argv) {
  Args args(
      "usage: fathom info [MODEL.gguf] [--ctx N] [--meta]\n\n"
      "Prints a GGUF model's architecture, hyperparameters, tokenizer, tensors by type, weight\n"
      "bytes and the fp16 KV-cache size per token and for a context. Without a model: fathom's\n"
      "default model.");
  args.option("-m,--model", "GGUF model file (or give it as the argument)")
      .option("-c,--ctx", "context length for the KV-cache estimate (default: the training context)")
      .flag("--meta", "also list every metadata key (long strings and arrays abbreviated)");
  if (!args.parse(argv)) return 0;
  FATHOM_CHECK(args.positional().size() <= 1, "unexpected argument '", args.positional().back(), "'");
  FATHOM_CHECK(!(args.has("model") && !args.positional().empty()), "give the model once: -m FILE or FILE");
  const std::string path = args.has("model")             ? args.str("model")
                           : !args.positional().empty() ? args.positional().front()
                                                         : default_model_path();

  auto f = GgufFile::open(path);
  const std::string arch = f->get_string("general.architecture", "");
  std::printf("%s\n", path.c_str());
  std::printf("  GGUF v%u, %s, %zu tensors, %zu metadata keys, alignment %zu, data at byte %zu\n", f->version(),
              human_bytes(static_cast<double>(f->file_size())).c_str(), f->tensors().size(), f->metadata().size(),
              f->alignment(), f->data_offset());
  const std::string name = f->get_string("general.name", "");
  std::printf("\narchitecture: %s%s%s\n", arch.empty() ? "(none)" : arch.c_str(),
              name.empty() ? "" : ", model ", name.c_str());

  // Hyperparameters through the loader's reading, so `info` shows what the engine will use.
  ModelConfig cfg;
  bool have_cfg = false;
  try {
    cfg = read_config(*f);
    have_cfg = true;
  } catch (const Error& e) {
    std::printf("  (fathom cannot run this model: %s)\n", e.what());
  }
  if (have_cfg) print_config(cfg, *f);
  else print_raw_hparams(*f, arch);

  print_tokenizer(*f);

  // Tensors by type, largest first.
  std::map<GgmlType, TypeSummary> by_type;
  size_t total = 0;
  int64_t total_elements = 0;
  for (const auto& t : f->tensors()) {
    TypeSummary& s = by_type[t.type];
    ++s.count;
    s.elements += t.n_elements();
    s.bytes += t.nbytes;
    total += t.nbytes;
    total_elements += t.n_elements();
  }
  std::vector<std::pair<GgmlType, TypeSummary>> rows(by_type.begin(), by_type.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.bytes > b.second.bytes; });
  std::printf("\ntensors by type:\n  %-8s %6s %14s %14s %8s\n", "type", "count", "elements", "bytes", "bits/w");
  for (const auto& [type, s] : rows)
    std::printf("  %-8s %6zu %14lld %14zu %8.2f\n", ggml_type_name(type), s.count, static_cast<long long>(s.elements),
                s.bytes, s.elements ? 8.0 * static_cast<double>(s.bytes) / static_cast<double>(s.elements) : 0.0);
  std::printf("  %-8s %6zu %14lld %14zu %8.2f\n", "total", f->tensors().size(), static_cast<long long>(total_elements),
              total, total_elements ? 8.0 * static_cast<double>(total) / static_cast<double>(total_elements) : 0.0);
  std::printf("\nweights: %s (%zu bytes)\n", human_bytes(static_cast<double>(total)).c_str(), total);

  if (have_cfg) {
    const int64_t ctx = args.has("ctx") ? args.integer("ctx") : cfg.n_ctx_train;
    FATHOM_CHECK(ctx > 0, "--ctx must be positive, got ", ctx);
    const int64_t per_token = cfg.kv_bytes_per_token(2);
    std::printf("KV cache (fp16): %s per token (%lld layers x (%lld + %lld) x 2 bytes)\n",
                human_bytes(static_cast<double>(per_token)).c_str(), static_cast<long long>(cfg.n_layer),
                static_cast<long long>(cfg.kv_dim_k()), static_cast<long long>(cfg.kv_dim_v()));
    const double full = static_cast<double>(per_token) * static_cast<double>(ctx);
    std::printf("  for ctx %lld: %s", static_cast<long long>(ctx), human_bytes(full).c_str());
    if (cfg.sliding_window > 0 && cfg.sliding_window < ctx) {
      // Sliding-window layers only ever attend to their last `sliding_window` positions.
      const auto n_swa = std::count(cfg.layer_is_swa.begin(), cfg.layer_is_swa.end(), true);
      const double per_layer = static_cast<double>((cfg.kv_dim_k() + cfg.kv_dim_v()) * 2);
      const double windowed = per_layer * (static_cast<double>(cfg.n_layer - n_swa) * static_cast<double>(ctx) +
                                           static_cast<double>(n_swa) * static_cast<double>(cfg.sliding_window));
      std::printf(" (%s if sliding-window layers keep only their window)", human_bytes(windowed).c_str());
    }
    std::printf("\n");
  }

  if (args.enabled("meta")) print_meta(*f);
  return 0;
}

}  // namespace

FATHOM_COMMAND("info", "describe a GGUF model: architecture, tensors, memory", cmd_info);

}  // namespace fathom::cli
