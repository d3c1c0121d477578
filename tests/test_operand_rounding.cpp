// How much of the CUDA engine's prefill error is the inherent cost of 16-bit matmul operands?
// The fp32 CPU reference runs the GPU engine test's case (tests/gpu/test_engine.cpp: test model
// seed 7, the same 40-token prompt, then 32 greedy decode steps fed with the exact run's tokens)
// once exactly and once with the matmul operands rounded through cpu::set_matmul_operand_hook
// (round-to-nearest-even) as a bf16 tensor-core GEMM rounds them: the tiled kernel of
// matmul_gemm.cu before its operand split, and the cuBLASLt path on dequantized bf16 chunks.
// Only matmuls of more than 16 tokens with non-F32 weights are rounded (the GEMM paths); the rest
// (decode GEMVs, the 1-row logits matmul of a prefill) stay exact here, as do the GPU's fp16 KV
// cache and fp16 prefill attention, so this isolates the GEMM operands. (Since 5260522 the engine
// sends matmuls of 2..64 tokens of the types matmul_mma_q8.cu handles -- not Q2_K / Q3_K -- to
// that int8 two-plane kernel instead; this emulation does not model it.)
// The hook's "bf16 hi+lo" mode is what the split tiled kernel multiplies, except that the kernel
// also drops the xl wl product (~2^-18 of |w x|).
// FATHOM_ROUNDING_REPORT=1 prints the table of every case and mode (docs/perf/q2k_prefill_bf16.md).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fathom/cpu_model.h"
#include "fathom/cpu_ops.h"
#include "fathom/model.h"
#include "fathom/sampler.h"
#include "fathom/testgen.h"

namespace fathom {
namespace {

// v rounded to nearest-even with p significant bits; below 2^e_min the spacing stays at its
// subnormal value (fp16: p 11, e_min -14; bf16: p 8, e_min -126). No overflow handling (|v| is
// far below either format's maximum here).
float round_sig(float v, int p, int e_min) {
  if (v == 0.0f || !std::isfinite(v)) return v;
  int e = 0;
  std::frexp(v, &e);  // v = m 2^e, 0.5 <= |m| < 1: the leading bit is 2^(e-1)
  const int lead = std::max(e - 1, e_min);
  const double ulp = std::ldexp(1.0, lead - (p - 1));
  return float(std::nearbyint(double(v) / ulp) * ulp);  // default rounding mode: ties to even
}
float to_bf16(float v) { return round_sig(v, 8, -126); }
float to_fp16(float v) { return round_sig(v, 11, -14); }

enum class Op {
  kExact,
  kBf16,      // one bf16 value
  kBf16HiLo,  // hi = bf16(v), lo = bf16(v - hi): what two bf16 MMAs (hi and lo) multiply
  kFp16,
};
const char* op_name(Op o) {
  switch (o) {
    case Op::kExact: return "fp32";
    case Op::kBf16: return "bf16";
    case Op::kBf16HiLo: return "bf16 hi+lo";
    case Op::kFp16: return "fp16";
  }
  return "?";
}
float apply(Op o, float v) {
  switch (o) {
    case Op::kExact: return v;
    case Op::kBf16: return to_bf16(v);
    case Op::kBf16HiLo: {
      const float hi = to_bf16(v);
      return hi + to_bf16(v - hi);
    }
    case Op::kFp16: return to_fp16(v);
  }
  return v;
}

struct Mode {
  Op w, x;
};
Mode g_mode{Op::kExact, Op::kExact};  // read by the hook; set only between forward passes

void hook(GgmlType type, int64_t n_tokens, bool weight, float* data, int64_t n) {
  if (n_tokens <= 16 || type == GgmlType::F32) return;  // GEMV paths: not the GEMM's operands
  const Op o = weight ? g_mode.w : g_mode.x;
  for (int64_t i = 0; i < n; ++i) data[i] = apply(o, data[i]);
}

const Model& model_of(const std::string& shape, const std::string& type) {
  static std::map<std::string, std::unique_ptr<Model>> cache;
  const std::string key = shape + "-" + type;
  auto it = cache.find(key);
  if (it != cache.end()) return *it->second;
  TestModelSpec spec;
  spec.shape = shape;
  spec.type = type;
  spec.seed = 7;  // tests/gpu/test_engine.cpp test_model()
  const std::string path = ::testing::TempDir() + "/fathom_rounding_" + key + ".gguf";
  write_test_model(spec, path);
  cache[key] = load_model(path);
  return *cache[key];
}

// tests/gpu/test_engine.cpp make_prompt (salt 0).
std::vector<int32_t> make_prompt(int64_t n, int64_t n_vocab) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[size_t(i)] = int32_t((i * 37 + 11) % (n_vocab - 300) + 259);
  return p;
}

// sqrt(sum (a - b)^2 / sum b^2): the GPU test's measure.
double rel_error(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = double(got[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / den);
}

struct Errors {
  double step0 = 0;       // logits of the last prompt token after the 40-token prefill
  double decode_max = 0;  // worst of the 32 decode steps after it
};

constexpr int64_t kPrompt = 40, kSteps = 32;

// The exact run's logits at every step (step 0 after the prompt, then one per greedy token).
const std::vector<std::vector<float>>& exact_logits(const std::string& shape, const std::string& type) {
  static std::map<std::string, std::vector<std::vector<float>>> cache;
  const std::string key = shape + "-" + type;
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  const Model& model = model_of(shape, type);
  const int64_t V = model.config.n_vocab;
  CpuModel cpu(model, 128, 0);
  std::vector<std::vector<float>> out(size_t(kSteps + 1), std::vector<float>(static_cast<size_t>(V)));
  const std::vector<int32_t> prompt = make_prompt(kPrompt, V);
  cpu.forward(prompt.data(), kPrompt, out[0].data());
  for (int64_t step = 1; step <= kSteps; ++step) {
    const int32_t want = sampling::argmax(out[size_t(step - 1)].data(), V);
    cpu.forward(&want, 1, out[size_t(step)].data());
  }
  return cache[key] = std::move(out);
}

// The emulated run, fed with the exact run's greedy tokens (as the GPU test feeds the reference's).
Errors run_case(const std::string& shape, const std::string& type, Mode mode) {
  const Model& model = model_of(shape, type);
  const int64_t V = model.config.n_vocab;
  const std::vector<std::vector<float>>& ref = exact_logits(shape, type);
  CpuModel emu(model, 128, 0);
  std::vector<float> got(static_cast<size_t>(V));
  auto emulated = [&](const int32_t* t, int64_t n) {
    g_mode = mode;
    cpu::set_matmul_operand_hook(hook);
    emu.forward(t, n, got.data());
    cpu::set_matmul_operand_hook(nullptr);
  };
  const std::vector<int32_t> prompt = make_prompt(kPrompt, V);
  emulated(prompt.data(), kPrompt);
  Errors e;
  e.step0 = rel_error(got, ref[0]);
  for (int64_t step = 1; step <= kSteps; ++step) {
    const int32_t want = sampling::argmax(ref[size_t(step - 1)].data(), V);
    emulated(&want, 1);
    e.decode_max = std::max(e.decode_max, rel_error(got, ref[size_t(step)]));
  }
  return e;
}

// The hook sees what it should: an identity hook changes nothing, rounding reaches the prefill.
TEST(OperandRounding, HookIsExactWhenIdentity) {
  const Errors same = run_case("tiny-llama", "Q4_K", Mode{Op::kExact, Op::kExact});
  EXPECT_EQ(same.step0, 0.0);
  EXPECT_EQ(same.decode_max, 0.0);
}

TEST(OperandRounding, RoundingHelpers) {
  EXPECT_EQ(to_bf16(1.0f + 1.0f / 256), 1.0f);               // tie -> even (down)
  EXPECT_EQ(to_bf16(1.0f + 3.0f / 256), 1.0f + 4.0f / 256);  // tie -> even (up)
  EXPECT_EQ(to_bf16(-1.0f - 3.0f / 256), -1.0f - 4.0f / 256);
  EXPECT_EQ(to_fp16(1.0f + 1.0f / 2048), 1.0f);
  EXPECT_EQ(to_fp16(std::ldexp(3.0f, -26)), std::ldexp(1.0f, -24));  // subnormal spacing 2^-24
  const float v = 0.123456789f;
  EXPECT_LT(std::fabs(apply(Op::kBf16HiLo, v) - v), std::ldexp(std::fabs(v), -16));
}

// The engine test's quantized cases under the GPU prefill GEMM's operands. Measured here
// (step 0, relative l2 of the logits; docs/perf/q2k_prefill_bf16.md has the full table):
//   bf16 x bf16 (the tiled kernel before the split, and cuBLASLt on dequantized bf16 chunks):
//     tiny-llama Q2_K 1.02e-2, Q4_K 7.1e-3, Q8_0 8.0e-3; tiny-qwen3 Q2_K 8.3e-3;
//     tiny-qwen2 Q3_K 7.8e-3; tiny-gemma3 Q3_K 8.8e-3 -- the H200 gave 1.15e-2 on tiny-llama
//     Q2_K (a58da61): the engine test's 1e-2 is within the spread of the bf16 error itself;
//   bf16 hi+lo x bf16 hi+lo (the split tiled kernel): ~1e-5 on all of them.
// Bounds: bf16 within [3e-3, 2e-2] (it is the cost of 2^-9 operands, not a bug: a broken decoder
// is off by O(1)); the split below 1e-4. FATHOM_ROUNDING_REPORT=1 adds the other modes and prints.
TEST(OperandRounding, PrefillErrorOfTheEngineTestModels) {
  struct C {
    const char* shape;
    const char* type;
  };
  const C cases[] = {{"tiny-llama", "Q2_K"}, {"tiny-llama", "Q4_K"}, {"tiny-llama", "Q8_0"},
                     {"tiny-qwen3", "Q2_K"}, {"tiny-qwen2", "Q3_K"}, {"tiny-gemma3", "Q3_K"}};
  const bool report = std::getenv("FATHOM_ROUNDING_REPORT") != nullptr;
  std::vector<Mode> modes = {{Op::kBf16, Op::kBf16}, {Op::kBf16HiLo, Op::kBf16HiLo}};
  if (report) {
    modes.insert(modes.end(), {{Op::kBf16, Op::kExact},
                               {Op::kExact, Op::kBf16},
                               {Op::kBf16HiLo, Op::kBf16},
                               {Op::kFp16, Op::kBf16},
                               {Op::kFp16, Op::kFp16}});
    std::printf("%-12s %-5s %-26s %-11s %-11s\n", "shape", "type", "w x x", "step 0", "decode max");
  }
  for (const C& c : cases) {
    for (const Mode& m : modes) {
      const Errors e = run_case(c.shape, c.type, m);
      const std::string mname = std::string(op_name(m.w)) + " x " + op_name(m.x);
      if (report)
        std::printf("%-12s %-5s %-26s %-11.3g %-11.3g\n", c.shape, c.type, mname.c_str(), e.step0,
                    e.decode_max);
      SCOPED_TRACE(std::string(c.shape) + " " + c.type + " " + mname);
      if (m.w == Op::kBf16 && m.x == Op::kBf16) {
        EXPECT_GT(e.step0, 3e-3);
        EXPECT_LT(e.step0, 2e-2);
      } else if (m.w == Op::kBf16HiLo && m.x == Op::kBf16HiLo) {
        EXPECT_LT(e.step0, 1e-4);
        EXPECT_LT(e.decode_max, 1e-4);
      }
    }
  }
}

}  // namespace
}  // namespace fathom
