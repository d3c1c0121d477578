// Chat template detection and rendering. tests/python/check_tokenizer_chat_templates.py compares
// every family against Jinja2 renderings of the template strings; these pin the exact text of the
// common cases and the error paths.
#include <gtest/gtest.h>

#include "fathom/chat_template.h"
#include "fathom/error.h"

namespace fathom {
namespace {

const std::vector<ChatMessage> kConv = {{"system", "Be brief."}, {"user", " Hi there \n"}};

TEST(ChatTemplate, DetectsFamiliesBySignature) {
  EXPECT_EQ(detect_chat_template("{{ '<|start_header_id|>' + role + '<|end_header_id|>' }}", ""),
            TemplateKind::LLAMA3);
  EXPECT_EQ(detect_chat_template("<|start_header_id|><|end_header_id|> Cutting Knowledge Date", ""),
            TemplateKind::LLAMA31);
  EXPECT_EQ(detect_chat_template("{{ '<|im_start|>' }}", ""), TemplateKind::CHATML);
  EXPECT_EQ(detect_chat_template("<|im_start|>system\nYou are a helpful assistant.", ""), TemplateKind::QWEN2);
  EXPECT_EQ(detect_chat_template("<|im_start|> You are Qwen, created by Alibaba Cloud.", ""), TemplateKind::QWEN25);
  EXPECT_EQ(detect_chat_template("<|im_start|> <think>", ""), TemplateKind::QWEN3);
  EXPECT_EQ(detect_chat_template("<start_of_turn>user ... <end_of_turn>", ""), TemplateKind::GEMMA);
  EXPECT_EQ(detect_chat_template("[INST] <<SYS>>\n", ""), TemplateKind::LLAMA2);
  EXPECT_EQ(detect_chat_template("", "gemma3"), TemplateKind::GEMMA);
}

TEST(ChatTemplate, UnknownTemplatesFailClearly) {
  try {
    detect_chat_template("{{ bos_token }}{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}", "llama");
    FAIL() << "a Mistral template was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unrecognised chat template"), std::string::npos) << e.what();
  }
  try {
    detect_chat_template("", "llama");
    FAIL() << "an empty template was accepted for llama";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no tokenizer.chat_template"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, RendersEachFamily) {
  EXPECT_EQ(apply_chat_template(TemplateKind::GEMMA, kConv, true),
            "<start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_EQ(apply_chat_template(TemplateKind::LLAMA3, kConv, true),
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(apply_chat_template(TemplateKind::QWEN25, {{"user", "Hi"}}, true),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(apply_chat_template(TemplateKind::LLAMA2, {kConv[0], kConv[1], {"assistant", "Hello!"}, {"user", "x"}}, true),
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi there [/INST] Hello! </s><s>[INST] x [/INST]");
  EXPECT_EQ(apply_chat_template(TemplateKind::QWEN3,
                                {{"user", "q"}, {"assistant", "<think>\nr\n</think>\n\na"}, {"user", "q2"}}, true),
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n"
            "<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(apply_chat_template(TemplateKind::GEMMA, {{"user", "Hi"}}, false), "<start_of_turn>user\nHi<end_of_turn>\n");
}

TEST(ChatTemplate, AlternationIsEnforcedWhereTheTemplateRaises) {
  const std::vector<ChatMessage> bad = {{"user", "a"}, {"user", "b"}};
  EXPECT_THROW(apply_chat_template(TemplateKind::GEMMA, bad, true), Error);
  EXPECT_THROW(apply_chat_template(TemplateKind::LLAMA2, bad, true), Error);
  EXPECT_NO_THROW(apply_chat_template(TemplateKind::LLAMA3, bad, true));
}

}  // namespace
}  // namespace fathom
