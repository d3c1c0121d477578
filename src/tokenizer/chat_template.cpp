// Hand-written renderers for the chat templates the supported model families ship. Each function
// mirrors its Jinja original statement by statement; the comments quote the Jinja they replace.
#include "fathom/chat_template.h"

#include <cstdint>
#include <cstring>

#include "fathom/error.h"

namespace fathom {
namespace {

bool contains(const std::string& s, const char* needle) { return s.find(needle) != std::string::npos; }

// Python's str.isspace() set, which Jinja's `trim` filter and str.strip() use.
bool is_py_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// Code point at s[i] and its byte length (malformed bytes count as one non-space byte).
uint32_t cp_at(const std::string& s, size_t i, size_t* len) {
  const auto b = static_cast<unsigned char>(s[i]);
  int n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) {
    *len = 1;
    return 0xFFFFFFFF;
  }
  uint32_t cp = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
  for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  *len = static_cast<size_t>(n);
  return cp;
}

// Jinja `| trim` / Python `.strip()`.
std::string trim(const std::string& s) {
  size_t b = 0;
  while (b < s.size()) {
    size_t len = 0;
    if (!is_py_space(cp_at(s, b, &len))) break;
    b += len;
  }
  size_t e = b, i = b;  // e: end of the last non-space character
  while (i < s.size()) {
    size_t len = 0;
    const bool sp = is_py_space(cp_at(s, i, &len));
    i += len;
    if (!sp) e = i;
  }
  return s.substr(b, e - b);
}

std::string lstrip_newlines(const std::string& s) {
  size_t b = s.find_first_not_of('\n');
  return b == std::string::npos ? std::string() : s.substr(b);
}

std::string rstrip_newlines(const std::string& s) {
  size_t e = s.find_last_not_of('\n');
  return e == std::string::npos ? std::string() : s.substr(0, e + 1);
}

void check_alternation(const std::vector<ChatMessage>& msgs, size_t first, const char* family) {
  // {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception(...) }}
  for (size_t i = first; i < msgs.size(); ++i) {
    const bool expect_user = (i - first) % 2 == 0;
    FATHOM_CHECK((msgs[i].role == "user") == expect_user, family, " chat template: conversation roles must alternate ",
                 "user/assistant/user/assistant/..., but message ", i, " has role '", msgs[i].role, "'");
  }
}

std::string render_llama2(const std::vector<ChatMessage>& msgs, bool add_gen) {
  size_t first = 0;
  bool has_system = false;
  std::string system;
  if (!msgs.empty() && msgs[0].role == "system") {
    has_system = true;
    system = msgs[0].content;
    first = 1;
  }
  check_alternation(msgs, first, "Llama 2");
  std::string out;
  for (size_t i = first; i < msgs.size(); ++i) {
    std::string content = msgs[i].content;
    if (i == first && has_system) content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
    if (msgs[i].role == "user") {
      // {{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}; the first BOS comes from encode()
      if (i != first) out += "<s>";
      out += "[INST] " + trim(content) + " [/INST]";
    } else if (msgs[i].role == "assistant") {
      out += " " + trim(content) + " </s>";
    }
  }
  (void)add_gen;  // the Llama 2 template has no generation prompt: "[/INST]" already ends the turn
  return out;
}

std::string render_llama3(const std::vector<ChatMessage>& msgs, bool add_gen, bool v31) {
  std::string out;
  size_t first = 0;
  if (v31) {
    std::string system;
    if (!msgs.empty() && msgs[0].role == "system") {
      system = trim(msgs[0].content);
      first = 1;
    }
    out += "<|start_header_id|>system<|end_header_id|>\n\n";
    out += "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";
    out += system + "<|eot_id|>";
  }
  for (size_t i = first; i < msgs.size(); ++i) {
    out += "<|start_header_id|>" + msgs[i].role + "<|end_header_id|>\n\n" + trim(msgs[i].content) + "<|eot_id|>";
  }
  if (add_gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string chatml_turn(const std::string& role, const std::string& content) {
  return "<|im_start|>" + role + "\n" + content + "<|im_end|>\n";
}

// default_system: printed when the first message is not a system message. Qwen2 prints it inside
// its message loop (so not for an empty conversation), Qwen2.5 before the loop (always).
std::string render_chatml(const std::vector<ChatMessage>& msgs, bool add_gen, const char* default_system,
                          bool default_system_if_empty) {
  std::string out;
  const bool has_system = !msgs.empty() && msgs[0].role == "system";
  if (default_system && !has_system && (!msgs.empty() || default_system_if_empty)) {
    out += chatml_turn("system", default_system);
  }
  for (const ChatMessage& m : msgs) out += chatml_turn(m.role, m.content);
  if (add_gen) out += "<|im_start|>assistant\n";
  return out;
}

std::string render_qwen3(const std::vector<ChatMessage>& msgs, bool add_gen) {
  // ns.last_query_index: the last user message (Qwen3 also skips tool responses; none here).
  long last_query = static_cast<long>(msgs.size()) - 1;
  for (long i = static_cast<long>(msgs.size()) - 1; i >= 0; --i) {
    if (msgs[i].role == "user") {
      last_query = i;
      break;
    }
  }
  std::string out;
  for (size_t i = 0; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    if (m.role != "assistant") {
      out += chatml_turn(m.role, m.content);
      continue;
    }
    std::string content = m.content, reasoning;
    const size_t close = content.rfind("</think>");
    if (close != std::string::npos) {
      // reasoning = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n')
      std::string before = rstrip_newlines(content.substr(0, content.find("</think>")));
      const size_t open = before.rfind("<think>");
      if (open != std::string::npos) before = before.substr(open + 7);
      reasoning = lstrip_newlines(before);
      content = lstrip_newlines(content.substr(close + 8));
    }
    const bool last = i + 1 == msgs.size();
    if (static_cast<long>(i) > last_query && (last || !reasoning.empty())) {
      out += "<|im_start|>assistant\n<think>\n" + rstrip_newlines(lstrip_newlines(reasoning)) + "\n</think>\n\n" +
             lstrip_newlines(content) + "<|im_end|>\n";
    } else {
      out += "<|im_start|>assistant\n" + content + "<|im_end|>\n";
    }
  }
  if (add_gen) out += "<|im_start|>assistant\n";
  return out;
}

std::string render_gemma(const std::vector<ChatMessage>& msgs, bool add_gen) {
  size_t first = 0;
  std::string prefix;
  if (!msgs.empty() && msgs[0].role == "system") {
    prefix = msgs[0].content + "\n\n";  // first_user_prefix
    first = 1;
  }
  check_alternation(msgs, first, "Gemma");
  std::string out;
  for (size_t i = first; i < msgs.size(); ++i) {
    const std::string role = msgs[i].role == "assistant" ? "model" : msgs[i].role;
    out += "<start_of_turn>" + role + "\n" + (i == first ? prefix : std::string()) + trim(msgs[i].content) +
           "<end_of_turn>\n";
  }
  if (add_gen) out += "<start_of_turn>model\n";
  return out;
}

}  // namespace

TemplateKind detect_chat_template(const std::string& tmpl, const std::string& arch) {
  if (tmpl.empty()) {
    if (arch == "gemma" || arch == "gemma2" || arch == "gemma3") return TemplateKind::GEMMA;
    fail("the model has no tokenizer.chat_template and architecture '", arch,
         "' has no built-in chat format; use a plain prompt");
  }
  if (contains(tmpl, "<|start_header_id|>") && contains(tmpl, "<|end_header_id|>")) {
    return contains(tmpl, "Cutting Knowledge Date") ? TemplateKind::LLAMA31 : TemplateKind::LLAMA3;
  }
  if (contains(tmpl, "<|im_start|>")) {
    if (contains(tmpl, "<think>") || contains(tmpl, "reasoning_content")) return TemplateKind::QWEN3;
    if (contains(tmpl, "You are Qwen, created by Alibaba Cloud")) return TemplateKind::QWEN25;
    if (contains(tmpl, "You are a helpful assistant")) return TemplateKind::QWEN2;
    return TemplateKind::CHATML;
  }
  if (contains(tmpl, "<start_of_turn>") && contains(tmpl, "<end_of_turn>")) return TemplateKind::GEMMA;
  if (contains(tmpl, "[INST]") && contains(tmpl, "<<SYS>>")) return TemplateKind::LLAMA2;
  std::string head = tmpl.substr(0, 60);
  for (char& c : head) {
    if (c == '\n') c = ' ';
  }
  fail("unrecognised chat template (begins \"", head, "\"); supported: Llama 2 [INST]/<<SYS>>, Llama 3 ",
       "<|start_header_id|>, ChatML/Qwen <|im_start|>, Gemma <start_of_turn>; use a plain prompt");
}

std::string apply_chat_template(TemplateKind kind, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt) {
  switch (kind) {
    case TemplateKind::LLAMA2: return render_llama2(messages, add_generation_prompt);
    case TemplateKind::LLAMA3: return render_llama3(messages, add_generation_prompt, false);
    case TemplateKind::LLAMA31: return render_llama3(messages, add_generation_prompt, true);
    case TemplateKind::CHATML: return render_chatml(messages, add_generation_prompt, nullptr, false);
    case TemplateKind::QWEN2:
      return render_chatml(messages, add_generation_prompt, "You are a helpful assistant.", false);
    case TemplateKind::QWEN25:
      return render_chatml(messages, add_generation_prompt,
                           "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", true);
    case TemplateKind::QWEN3: return render_qwen3(messages, add_generation_prompt);
    case TemplateKind::GEMMA: return render_gemma(messages, add_generation_prompt);
  }
  fail("apply_chat_template: unknown template kind ", static_cast<int>(kind));
}

const char* template_kind_name(TemplateKind kind) {
  switch (kind) {
    case TemplateKind::LLAMA2: return "llama2";
    case TemplateKind::LLAMA3: return "llama3";
    case TemplateKind::LLAMA31: return "llama3.1";
    case TemplateKind::CHATML: return "chatml";
    case TemplateKind::QWEN2: return "qwen2";
    case TemplateKind::QWEN25: return "qwen2.5";
    case TemplateKind::QWEN3: return "qwen3";
    case TemplateKind::GEMMA: return "gemma";
  }
  return "?";
}

const char* template_bos_text(TemplateKind kind) {
  switch (kind) {
    case TemplateKind::LLAMA2: return "<s>";
    case TemplateKind::LLAMA3:
    case TemplateKind::LLAMA31: return "<|begin_of_text|>";
    case TemplateKind::GEMMA: return "<bos>";
    default: return "";
  }
}

}  // namespace fathom
