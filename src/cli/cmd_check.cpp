// `fathom check`: runs the CUDA engine and the fp32 CPU reference (CpuModel) on the same tokens
// and reports where they part: the relative error ||gpu - ref|| / ||ref|| of every op boundary of
// every layer for the prompt's last token, the logits' error and top-1 agreement over a generated
// sequence (the reference's greedy tokens are fed to both, so one early miss does not cascade),
// the first op producing NaN/Inf, the attention softmax row sums, and whether a second GPU run
// of the same tokens is bit-identical. Exits 1 when an error exceeds the tolerance.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "cli/args.h"
#include "cli/command.h"
#include "fathom/cpu_model.h"
#include "fathom/cuda_engine.h"
#include "fathom/error.h"
#include "fathom/model.h"
#include "fathom/sampler.h"
#include "fathom/tokenizer.h"

namespace fathom::cli {
namespace {

using Key = std::pair<int64_t, std::string>;  // (layer, op)

// ||a - b|| / ||b|| in double; an all-zero reference gives ||a||.
double rel_error(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  if (!std::isfinite(num)) return INFINITY;
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Tolerance on relative errors. The GPU dequantizes exactly like the CPU and keeps activations in
// fp32, so the gap comes from the fp16 KV cache (~5e-4 relative per element) and summation order,
// growing through the layers; the bound for logits is 1e-2.
double tolerance_for(const Model& m) { return m.config.n_layer > 24 ? 2e-2 : 1e-2; }

// Most common matrix type, for the header line.
std::string weight_types(const Model& m) {
  std::map<std::string, int> count;
  for (const GgufTensorInfo& t : m.file->tensors()) ++count[ggml_type_name(t.type)];
  std::string s;
  for (const auto& [name, n] : count) s += (s.empty() ? "" : " ") + name + "x" + std::to_string(n);
  return s;
}

int cmd_check(const std::vector<std::string>& argv) {
  Args args(
      "usage: fathom check [-m MODEL] [-p PROMPT] [-n N] [--nan-guard] [--tol X]\n\n"
      "Compares the CUDA engine with the fp32 CPU reference on the same tokens: per-layer and\n"
      "per-op relative errors of the hidden state for the prompt's last token, logits error and\n"
      "top-1 agreement over N generated tokens, the first op producing NaN/Inf, attention softmax\n"
      "row sums, and bit-identical repeatability. Exits 1 when an error exceeds the tolerance.");
  args.option("-m,--model", "GGUF model file (default: fathom's default model)")
      .option("-p,--prompt", "prompt text", "The capital of France is")
      .option("-n,--n-predict", "tokens to generate and compare", "16")
      .option("--tol", "relative-error tolerance (default: 1e-2, 2e-2 above 24 layers)")
      .option("--threads", "CPU reference threads (0 = all)", "0")
      .flag("--nan-guard", "check every op for NaN/Inf during the generated tokens too (slower)")
      .flag("-v,--verbose", "print every op of every layer and the GPU memory breakdown");
  if (!args.parse(argv)) return 0;
  FATHOM_CHECK(args.positional().empty(), "unexpected argument '", args.positional().front(), "'");
  const std::string path = args.has("model") ? args.str("model") : default_model_path();
  const int64_t n_gen = args.integer("n-predict");
  FATHOM_CHECK(n_gen >= 0, "-n must be non-negative, got ", n_gen);
  const bool verbose = args.enabled("verbose");
  const bool nan_guard = args.enabled("nan-guard");

  std::unique_ptr<Model> model = load_model(path);
  const ModelConfig& cfg = model->config;
  const double tol = args.has("tol") ? args.real("tol") : tolerance_for(*model);
  std::unique_ptr<Tokenizer> tok = Tokenizer::from_gguf(*model->file);
  const std::vector<int32_t> prompt = tok->encode(args.str("prompt"), true, true);
  FATHOM_CHECK(!prompt.empty(), "the prompt tokenized to nothing");
  const int64_t n_ctx = int64_t(prompt.size()) + n_gen + 1;

  CudaEngineOptions eo;
  eo.n_ctx = n_ctx;
  eo.verbose = verbose;
  CudaEngine gpu(*model, eo);
  CpuModel cpu(*model, n_ctx, int(args.integer("threads")));
  const int64_t V = cfg.n_vocab;

  std::printf("fathom check: %s\n  %s, %lld layers, n_embd %lld, vocab %lld; tensors %s\n",
              path.c_str(), arch_name(cfg.arch), (long long)cfg.n_layer, (long long)cfg.n_embd,
              (long long)V, weight_types(*model).c_str());
  std::printf("  GPU %s; prompt %zu tokens, %lld generated; tolerance %.1e\n\n",
              gpu.device_name().c_str(), prompt.size(), (long long)n_gen, tol);

  // ---- prefill, traced on both sides ----
  std::map<Key, std::vector<float>> ref_rows;
  cpu.set_hook([&](int64_t layer, const char* name, const float* data, int64_t n_tokens, int64_t n) {
    ref_rows[{layer, name}].assign(data + (n_tokens - 1) * n, data + n_tokens * n);
  });
  std::map<Key, std::vector<float>> gpu_rows;
  std::vector<Key> gpu_order;
  std::string first_nonfinite;
  double sum_min = INFINITY, sum_max = -INFINITY;
  auto on_trace = [&](const CudaTraceEntry& e) {
    if (!e.all_finite && first_nonfinite.empty())
      first_nonfinite = str_cat(e.op, " of layer ", e.layer, " (token ", gpu.n_past(), ")");
    if (e.op == "softmax_row_sum") {
      for (float v : e.values) {
        sum_min = std::min<double>(sum_min, v);
        sum_max = std::max<double>(sum_max, v);
      }
      return;
    }
    Key k{e.layer, e.op};
    if (!gpu_rows.count(k)) gpu_order.push_back(k);
    gpu_rows[k].assign(e.last_row(), e.last_row() + e.n);
  };
  gpu.set_trace(on_trace, true);

  std::vector<float> ref_logits(static_cast<size_t>(V)), gpu_logits(static_cast<size_t>(V));
  cpu.forward(prompt.data(), int64_t(prompt.size()), ref_logits.data());
  gpu.eval(prompt.data(), int64_t(prompt.size()), gpu_logits.data());
  if (!nan_guard) gpu.set_trace(nullptr);
  cpu.set_hook(nullptr);

  // Per-layer table: one row per layer, one column per op boundary.
  const std::vector<std::string> ops = {"attn_norm", "Qcur",     "Kcur",    "Vcur",
                                        "kqv_out",   "attn_out", "attn_post_norm", "ffn_inp",
                                        "ffn_norm",  "ffn_out",  "ffn_post_norm",  "l_out"};
  std::vector<std::string> cols;
  for (const std::string& op : ops)
    if (ref_rows.count({0, op})) cols.push_back(op);
  double worst = 0;
  Key worst_key{-2, ""};
  int missing = 0;
  auto err_of = [&](const Key& k) -> double {
    auto r = ref_rows.find(k);
    auto g = gpu_rows.find(k);
    if (r == ref_rows.end()) return -1;
    if (g == gpu_rows.end() || g->second.size() != r->second.size()) {
      ++missing;
      return INFINITY;
    }
    const double e = rel_error(g->second.data(), r->second.data(), int64_t(r->second.size()));
    if (!(e <= worst)) {
      worst = e;
      worst_key = k;
    }
    return e;
  };
  std::printf("prefill, last prompt token: relative error ||gpu - ref|| / ||ref|| per op\n");
  std::printf("%5s", "layer");
  for (const std::string& c : cols) std::printf(" %10.10s", c.c_str());
  std::printf("\n%5s inp_embd %.2e\n", "-", err_of({-1, "inp_embd"}));
  for (int64_t il = 0; il < cfg.n_layer; ++il) {
    std::printf("%5lld", (long long)il);
    for (const std::string& c : cols) std::printf(" %10.2e", err_of({il, c}));
    std::printf("\n");
  }
  std::printf("%5s result_norm %.2e  result_output %.2e\n", "out", err_of({cfg.n_layer, "result_norm"}),
              err_of({cfg.n_layer, "result_output"}));
  const double prefill_logit_err = rel_error(gpu_logits.data(), ref_logits.data(), V);
  std::printf("worst op: %s of layer %lld, %.2e%s\n", worst_key.second.c_str(),
              (long long)worst_key.first, worst, missing ? str_cat(" (", missing, " ops missing on the GPU)").c_str() : "");
  std::printf("attention softmax row sums (attention against V = 1): min %.7f max %.7f\n",
              sum_min, sum_max);

  // ---- generation: the reference's greedy tokens go to both ----
  std::vector<int32_t> fed;  // tokens after the prompt
  double max_logit_err = prefill_logit_err, sum_logit_err = prefill_logit_err;
  int64_t max_err_step = 0, agree = 0;
  std::vector<std::vector<float>> gpu_logit_log = {gpu_logits};
  const int32_t ref_top0 = sampling::argmax(ref_logits.data(), V);
  agree += sampling::argmax(gpu_logits.data(), V) == ref_top0;
  int32_t next = ref_top0;
  for (int64_t step = 1; step <= n_gen; ++step) {
    fed.push_back(next);
    cpu.forward(&next, 1, ref_logits.data());
    gpu.eval(&next, 1, gpu_logits.data());
    gpu_logit_log.push_back(gpu_logits);
    const double e = rel_error(gpu_logits.data(), ref_logits.data(), V);
    sum_logit_err += e;
    if (!(e <= max_logit_err)) {
      max_logit_err = e;
      max_err_step = step;
    }
    next = sampling::argmax(ref_logits.data(), V);
    agree += sampling::argmax(gpu_logits.data(), V) == next;
  }
  gpu.set_trace(nullptr);
  std::printf("\nlogits over %lld evaluations (prompt + %lld tokens): relative error max %.2e (eval %lld), "
              "mean %.2e; top-1 agreement %lld/%lld\n",
              (long long)(n_gen + 1), (long long)n_gen, max_logit_err, (long long)max_err_step,
              sum_logit_err / double(n_gen + 1), (long long)agree, (long long)(n_gen + 1));
  std::printf("reference continuation: %s\n", tok->decode(fed).c_str());
  std::printf("first op producing NaN/Inf: %s%s\n", first_nonfinite.empty() ? "none" : first_nonfinite.c_str(),
              nan_guard ? " (every op of every eval checked)" : " (prefill ops checked; --nan-guard for all)");

  // ---- repeatability: the same tokens again, on the same paths (a traced prefill takes the
  // unfused residual path, so it is traced again; decode steps now replay captured graphs) ----
  gpu.truncate(0);
  bool identical = true;
  int64_t first_diff = -1;
  auto ignore = [](const CudaTraceEntry&) {};
  gpu.set_trace(ignore, true);
  gpu.eval(prompt.data(), int64_t(prompt.size()), gpu_logits.data());
  if (!nan_guard) gpu.set_trace(nullptr);
  for (int64_t step = 0; step <= n_gen; ++step) {
    if (step > 0) gpu.eval(&fed[size_t(step - 1)], 1, gpu_logits.data());
    if (std::memcmp(gpu_logits.data(), gpu_logit_log[size_t(step)].data(), size_t(V) * 4) != 0) {
      if (identical) first_diff = step;
      identical = false;
    }
  }
  std::printf("second GPU run of the same tokens: %s\n",
              identical ? "bit-identical logits" : str_cat("logits differ from eval ", first_diff).c_str());

  // ---- decode speed: GPU greedy (argmax on the device, graph replay), ids only ----
  if (n_gen > 0) {
    gpu.set_trace(nullptr);  // untraced: graphs on
    gpu.truncate(0);
    int32_t t = gpu.eval_greedy(prompt.data(), int64_t(prompt.size()));
    t = gpu.eval_greedy(&t, 1);  // first step captures the graph
    const auto t0 = std::chrono::steady_clock::now();
    int64_t steps = 0;
    while (gpu.n_past() < gpu.n_ctx()) {
      t = gpu.eval_greedy(&t, 1);
      ++steps;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (steps > 0) {
      const double tok_s = double(steps) / s;
      std::printf("GPU greedy decode: %lld steps, %.1f tok/s, %.3f ms/tok, %.1f GB/s of weights\n",
                  (long long)steps, tok_s, 1e3 / tok_s, double(gpu.memory().weights) * tok_s / 1e9);
    }
  }

  // ---- verdict ----
  std::vector<std::string> fails;
  if (!(worst <= tol)) fails.push_back(str_cat("hidden-state error ", worst, " > ", tol));
  if (!(max_logit_err <= tol)) fails.push_back(str_cat("logits error ", max_logit_err, " > ", tol));
  if (!first_nonfinite.empty()) fails.push_back("NaN/Inf in " + first_nonfinite);
  if (!(std::fabs(sum_min - 1.0) < 1e-3 && std::fabs(sum_max - 1.0) < 1e-3))
    fails.push_back(str_cat("softmax row sums in [", sum_min, ", ", sum_max, "]"));
  if (!identical) fails.push_back("GPU runs are not repeatable");
  if (agree < n_gen + 1)
    std::printf("note: top-1 disagreed at %lld of %lld evaluations (near-ties can flip)\n",
                (long long)(n_gen + 1 - agree), (long long)(n_gen + 1));
  if (fails.empty()) {
    std::printf("PASS\n");
    return 0;
  }
  std::printf("FAIL:");
  for (const std::string& f : fails) std::printf(" %s;", f.c_str());
  std::printf("\n");
  return 1;
}

}  // namespace

FATHOM_COMMAND("check", "compare the GPU engine with the CPU reference, op by op", cmd_check);

}  // namespace fathom::cli
