// Chat templates without a Jinja engine: the `tokenizer.chat_template` strings of the supported
// families are recognised by signature substrings and rendered by hand-written C++ that produces
// the same text the Jinja template would (tests/test_chat_template_jinja.py checks that with
// Jinja2), minus the leading BOS text: encode the result with add_special=true so the BOS comes
// from the vocabulary metadata, and parse_special=true so the turn markers become control tokens.
#pragma once

#include <string>
#include <vector>

namespace fathom {

enum class TemplateKind {
  LLAMA2,   // "<s>[INST] <<SYS>>\n...\n<</SYS>>\n\nuser [/INST] answer </s>"
  LLAMA3,   // "<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>"
  LLAMA31,  // LLAMA3 plus the always-present system header with "Cutting Knowledge Date"
  CHATML,   // "<|im_start|>role\ncontent<|im_end|>\n", no default system message
  QWEN2,    // CHATML with default system "You are a helpful assistant."
  QWEN25,   // CHATML with default system "You are Qwen, created by Alibaba Cloud. ..."
  QWEN3,    // CHATML; <think>...</think> dropped from assistant turns before the last user turn
  GEMMA,    // "<start_of_turn>user\n...<end_of_turn>\n", assistant -> "model", system folded into
            // the first user turn (Gemma 3)
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (others are passed through where the format allows)
  std::string content;
};

// Recognises a template string. An empty template falls back by architecture (gemma, gemma2,
// gemma3 -> GEMMA). Anything else unrecognised throws fathom::Error saying so; callers then use
// the plain prompt.
TemplateKind detect_chat_template(const std::string& tmpl, const std::string& arch);

// Renders the conversation; add_generation_prompt appends the assistant turn header. Throws
// fathom::Error where the original template raises (LLAMA2 and GEMMA need user/assistant turns
// to alternate).
std::string apply_chat_template(TemplateKind kind, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt);

const char* template_kind_name(TemplateKind kind);
// The BOS text the Jinja template prints first and apply_chat_template leaves out ("" if none).
const char* template_bos_text(TemplateKind kind);

}  // namespace fathom
