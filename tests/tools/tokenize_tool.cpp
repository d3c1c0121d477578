// Batch front-end to fathom's tokenizer and chat templates for the python oracle scripts.
//
//   tokenize_tool encode --gguf FILE | --spec FILE.json  --in STRINGS --out RESULTS
//                 [--parse-special 0|1] [--add-special 0|1] [--add-space-prefix 0|1]
//     STRINGS: one hex-encoded byte string per line. RESULTS: one line per input,
//     "id id id<TAB>hex(decode(ids))<TAB>hex(StreamDecoder output)" (decode with render_special=0).
//   tokenize_tool chat --in CASES.json --out RENDERED.json
//     CASES: [{"template": str, "arch": str, "messages": [{"role","content"}], "add_generation_prompt": bool}]
//     RENDERED: [{"kind": name, "bos": text, "text": str} or {"error": message}]
//
// --spec JSON: {"model": "llama"|"gpt2", "pre", "tokens", "scores", "types", "merges", "bos_id",
// "eos_id", "unk_id", "add_bos", "add_eos", "add_space_prefix"}, every key but tokens optional.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fathom/chat_template.h"
#include "fathom/error.h"
#include "fathom/gguf.h"
#include "fathom/tokenizer.h"

namespace {

std::string to_hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

std::string from_hex(const std::string& h) {
  FATHOM_CHECK(h.size() % 2 == 0, "odd-length hex line");
  std::string out;
  for (size_t i = 0; i < h.size(); i += 2) out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  return out;
}

std::unique_ptr<fathom::Tokenizer> load_spec(const std::string& path, const std::map<std::string, std::string>& opt) {
  std::ifstream f(path);
  FATHOM_CHECK(f, "cannot open ", path);
  const nlohmann::json j = nlohmann::json::parse(f);
  fathom::TokenizerSpec s;
  const std::string model = j.value("model", "llama");
  s.kind = model == "gpt2" ? fathom::TokenizerKind::BPE : fathom::TokenizerKind::SPM;
  s.pre = j.value("pre", "default");
  s.tokens = j.at("tokens").get<std::vector<std::string>>();
  if (j.contains("scores")) s.scores = j["scores"].get<std::vector<float>>();
  if (j.contains("types")) s.types = j["types"].get<std::vector<int32_t>>();
  if (j.contains("merges")) s.merges = j["merges"].get<std::vector<std::string>>();
  s.bos_id = j.value("bos_id", -1);
  s.eos_id = j.value("eos_id", -1);
  s.unk_id = j.value("unk_id", -1);
  s.add_bos = j.value("add_bos", false);
  s.add_eos = j.value("add_eos", false);
  s.add_space_prefix = j.value("add_space_prefix", false);
  return std::make_unique<fathom::Tokenizer>(std::move(s));
}

int run_encode(const std::map<std::string, std::string>& opt) {
  std::unique_ptr<fathom::Tokenizer> tok;
  std::unique_ptr<fathom::GgufFile> gguf;
  if (opt.count("--gguf")) {
    gguf = fathom::GgufFile::open(opt.at("--gguf"));
    tok = fathom::Tokenizer::from_gguf(*gguf);
  } else {
    FATHOM_CHECK(opt.count("--spec"), "encode needs --gguf or --spec");
    tok = load_spec(opt.at("--spec"), opt);
  }
  if (opt.count("--add-space-prefix")) {
    // Tests flip the flag on a real vocabulary: rebuild from the same tables.
    fathom::TokenizerSpec s;
    s.kind = tok->kind();
    for (int64_t i = 0; i < tok->n_vocab(); ++i) {
      s.tokens.push_back(tok->token_text(static_cast<int32_t>(i)));
      s.types.push_back(static_cast<int32_t>(tok->token_type(static_cast<int32_t>(i))));
    }
    FATHOM_CHECK(gguf && s.kind == fathom::TokenizerKind::SPM, "--add-space-prefix needs an SPM --gguf");
    s.scores = gguf->get_f32_array("tokenizer.ggml.scores");
    s.bos_id = tok->bos_id();
    s.eos_id = tok->eos_id();
    s.unk_id = tok->unk_id();
    s.add_bos = tok->add_bos();
    s.add_space_prefix = opt.at("--add-space-prefix") == "1";
    tok = std::make_unique<fathom::Tokenizer>(std::move(s));
  }
  const bool parse_special = !opt.count("--parse-special") || opt.at("--parse-special") == "1";
  const bool add_special = opt.count("--add-special") && opt.at("--add-special") == "1";

  std::ifstream in(opt.at("--in"));
  FATHOM_CHECK(in, "cannot open ", opt.at("--in"));
  std::ofstream out(opt.at("--out"));
  std::string line;
  while (std::getline(in, line)) {
    const std::vector<int32_t> ids = tok->encode(from_hex(line), add_special, parse_special);
    std::string sep;
    for (int32_t id : ids) {
      out << sep << id;
      sep = " ";
    }
    fathom::StreamDecoder dec(*tok);
    std::string streamed;
    for (int32_t id : ids) streamed += dec.push(id);
    streamed += dec.flush();
    out << '\t' << to_hex(tok->decode(ids)) << '\t' << to_hex(streamed) << '\n';
  }
  return 0;
}

int run_chat(const std::map<std::string, std::string>& opt) {
  std::ifstream in(opt.at("--in"));
  FATHOM_CHECK(in, "cannot open ", opt.at("--in"));
  const nlohmann::json cases = nlohmann::json::parse(in);
  nlohmann::json results = nlohmann::json::array();
  for (const auto& c : cases) {
    std::vector<fathom::ChatMessage> msgs;
    for (const auto& m : c.at("messages")) msgs.push_back({m.at("role"), m.at("content")});
    nlohmann::json r;
    try {
      const fathom::TemplateKind kind = fathom::detect_chat_template(c.value("template", ""), c.value("arch", ""));
      r["kind"] = fathom::template_kind_name(kind);
      r["bos"] = fathom::template_bos_text(kind);
      r["text"] = fathom::apply_chat_template(kind, msgs, c.value("add_generation_prompt", true));
    } catch (const fathom::Error& e) {
      r["error"] = e.what();
    }
    results.push_back(r);
  }
  std::ofstream out(opt.at("--out"));
  out << results.dump() << '\n';
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: tokenize_tool encode|chat --in FILE --out FILE [options]\n");
    return 2;
  }
  std::map<std::string, std::string> opt;
  for (int i = 2; i + 1 < argc; i += 2) opt[argv[i]] = argv[i + 1];
  try {
    const std::string cmd = argv[1];
    FATHOM_CHECK(opt.count("--in") && opt.count("--out"), "missing --in/--out");
    if (cmd == "encode") return run_encode(opt);
    if (cmd == "chat") return run_chat(opt);
    std::fprintf(stderr, "unknown command %s\n", cmd.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tokenize_tool: %s\n", e.what());
    return 1;
  }
}
