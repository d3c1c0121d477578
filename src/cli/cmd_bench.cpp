// `fathom bench`: prefill and decode speed, memory, and the roofline, llama-bench style.
//
// For each model (a file, or a synthetic shape x type built on the GPU):
//   ppN          prefill of N prompt tokens into an empty cache, one sequence (-b > 1: that many
//                sequences, prefilled one after another: the engine has no batched prefill yet);
//                tok/s = batch * N / median time.
//   tgN @ dD     N greedy decode steps after a D-token prompt; batch B decodes B sequences per
//                step (one graph replay); ms/token median and p95 over every step of every rep.
// Times: device events around the engine's work (gpu_ms) and the host clock around the call
// (wall_ms). Warm-up (--warmup reps, default 1) excluded; -r repetitions; medians reported with
// the spread. A long prompt (-p 32768) is prefilled in the engine's chunks (--ubatch, default the
// engine's pick under its workspace budget); "device used" is the most device memory in use at
// load or after any test (the engine allocates nothing after load, so this is the peak).
// Roofline: a decode step must read every weight once (the token-embedding table only for the
// rows it gathers, unless tied to the output) plus each sequence's KV cache; its floor is those
// bytes over the measured streaming-read ceiling. A prefill's floor is its flops over the
// measured bf16 GEMM rate.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/command.h"
#include "fathom/bench.h"
#include "fathom/cuda_engine.h"
#include "fathom/error.h"
#include "fathom/gpu_info.h"
#include "fathom/model.h"
#include "fathom/sha256.h"
#include "fathom/synthetic.h"
#include "fathom/sampler.h"
#include "quant/recipe.h"

namespace fathom::cli {
namespace {

using bench::Report;
using bench::Result;

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Bytes every decode step reads from the weights: all tensors, except that an untied token
// embedding table is only gathered (one row per token).
double decode_weight_bytes(const Model& m, int batch) {
  double total = 0;
  for (const auto& t : m.file->tensors()) total += double(t.nbytes);
  if (!m.config.tied_embeddings && m.weights.tok_embd) {
    const auto* e = m.weights.tok_embd.info;
    total -= double(e->nbytes);
    total += double(batch) * double(e->nbytes) / double(std::max<int64_t>(e->rows(), 1));
  }
  return total;
}

// KV bytes one decode step reads for one sequence whose cache holds `len` tokens (fp16),
// sliding-window layers reading at most their window.
double kv_read_bytes(const ModelConfig& c, int64_t len) {
  double bytes = 0;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const bool swa = l < int64_t(c.layer_is_swa.size()) && c.layer_is_swa[size_t(l)] && c.sliding_window > 0;
    const int64_t n = swa ? std::min(len, c.sliding_window) : len;
    bytes += double(n) * double(c.kv_dim_k() + c.kv_dim_v()) * 2.0;
  }
  return bytes;
}

// Flops of a prefill of n tokens: 2 per weight per token for every matrix (the LM head only for
// the last token, which is all the engine computes), plus causal attention QK^T and PV.
double prefill_flops(const Model& m, int64_t n) {
  const ModelConfig& c = m.config;
  double mat = 0;
  for (const auto& L : m.weights.layers)
    for (const WeightRef* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down})
      if (*w) mat += double(w->rows()) * double(w->cols());
  double flops = 2.0 * mat * double(n);
  const WeightRef& head = m.weights.output ? m.weights.output : m.weights.tok_embd;
  flops += 2.0 * double(head.rows()) * double(head.cols());
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const bool swa = l < int64_t(c.layer_is_swa.size()) && c.layer_is_swa[size_t(l)] && c.sliding_window > 0;
    double pairs = 0;  // (query, key) pairs attended
    for (int64_t i = 0; i < n; ++i) pairs += double(swa ? std::min<int64_t>(i + 1, c.sliding_window) : i + 1);
    flops += 2.0 * pairs * double(c.n_head) * double(c.head_dim_k + c.head_dim_v);
  }
  return flops;
}

double model_params(const Model& m) {
  double p = 0;
  for (const auto& t : m.file->tensors()) p += double(t.n_elements());
  return p;
}

std::vector<int32_t> bench_tokens(int64_t n, int64_t n_vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = int32_t(rng.next_u64() % uint64_t(std::max<int64_t>(n_vocab, 1)));
  return t;
}

struct Plan {
  std::vector<long long> prompts, depths, batches;
  long long n_gen = 128;
  int reps = 5;
  int warmup = 1;
  long long ubatch = 0;  // prefill chunk; 0 = the engine's choice
  bool quiet = false;
  bool graphs = true;
};

// Device memory in use now (total - free), 0 when it cannot be read.
double device_used_bytes() {
  const GpuInfo g = query_gpu();
  return g.present && g.total_mem >= g.free_mem ? double(g.total_mem - g.free_mem) : 0.0;
}

void progress(const Plan& plan, const std::string& what) {
  if (!plan.quiet) std::fprintf(stderr, "\rfathom bench: %-60s", what.c_str()), std::fflush(stderr);
}

Report bench_model(const Model& model, const std::string& label, const std::string& type_label,
                   const std::string& shape, uint64_t synthetic_seed, const Plan& plan, const GpuInfo& gpu,
                   const Ceilings& ceil, long long ctx_opt, long long* ubatch_out) {
  const ModelConfig& cfg = model.config;
  const long long max_batch = *std::max_element(plan.batches.begin(), plan.batches.end());
  long long need_ctx = 16;
  for (long long p : plan.prompts) need_ctx = std::max(need_ctx, p);
  // Decoding at depth 0 still prefills one token first.
  for (long long d : plan.depths) need_ctx = std::max(need_ctx, std::max<long long>(d, 1) + plan.n_gen);
  CudaEngineOptions opt;
  opt.n_ctx = ctx_opt > 0 ? ctx_opt : need_ctx;
  opt.max_batch = int(max_batch);
  opt.synthetic_seed = synthetic_seed;
  opt.use_graphs = plan.graphs;
  opt.progress = !plan.quiet;
  opt.ubatch = plan.ubatch;
  CudaEngine engine(model, opt);
  FATHOM_CHECK(engine.n_ctx() >= need_ctx, "the benchmark needs a context of ", need_ctx,
               " tokens per sequence but the engine holds ", engine.n_ctx(), "; lower -p/-d/-n or --ctx");

  Report r;
  r.model = label;
  r.type = type_label;
  r.shape = shape;
  r.model_bytes = 0;
  for (const auto& t : model.file->tensors()) r.model_bytes += double(t.nbytes);
  r.params = model_params(model);
  const CudaMemoryReport& mem = engine.memory();
  r.mem_weights = double(mem.weights);
  r.mem_kv = double(mem.kv_cache);
  r.mem_workspace = double(mem.workspace);
  r.mem_peak_used = double(mem.total - mem.free_after);
  if (ubatch_out) *ubatch_out = mem.ubatch;
  auto note_peak = [&] { r.mem_peak_used = std::max(r.mem_peak_used, device_used_bytes()); };
  // The largest KV cache that fits next to these weights and this workspace: the free memory
  // after load plus the cache the engine already holds, over the fp16 bytes per token.
  r.max_kv_tokens = (long long)((mem.free_after + mem.kv_cache) / size_t(std::max<int64_t>(cfg.kv_bytes_per_token(2), 1)));
  r.ceiling_gbps = ceil.read_gbps;
  r.ceiling_tflops = ceil.bf16_tflops;
  r.gpu_name = gpu.name;
  r.sm_count = gpu.sm_count;
  r.sm_clock_mhz = gpu.sm_clock_mhz;
  r.mem_clock_mhz = gpu.mem_clock_mhz;
  r.driver = gpu.driver_version;
  r.runtime = gpu.runtime_version;
  r.fathom_version = FATHOM_VERSION;
  r.git_commit = FATHOM_GIT_COMMIT;

  // ---- prefill ----
  for (long long p : plan.prompts) {
    for (long long b : plan.batches) {
      std::vector<int32_t> seqs{0};
      for (long long i = 1; i < b; ++i) seqs.push_back(engine.add_sequence());
      std::vector<double> gpu_ms, wall_ms;
      for (int rep = -plan.warmup; rep < plan.reps; ++rep) {
        progress(plan, str_cat(label, " pp", p, " b", b, " rep ", rep + 1, "/", plan.reps));
        double g = 0;
        const double w0 = now_ms();
        for (size_t s = 0; s < seqs.size(); ++s) {
          const auto toks = bench_tokens(p, cfg.n_vocab, 1000 + s + 7 * uint64_t(rep + 1));
          if (seqs[s] == 0) engine.truncate(0);
          else {
            engine.remove_sequence(seqs[s]);
            seqs[s] = engine.add_sequence();
          }
          engine.eval_seq(seqs[s], toks.data(), p, nullptr);
          g += engine.last_gpu_ms();
        }
        const double w = now_ms() - w0;
        if (rep >= 0) {
          gpu_ms.push_back(g);
          wall_ms.push_back(w);
        }
      }
      note_peak();
      for (size_t s = 1; s < seqs.size(); ++s) engine.remove_sequence(seqs[s]);
      engine.truncate(0);
      Result x;
      x.test = str_cat("pp", p);
      x.batch = int(b);
      x.n_tokens = int(p);
      x.gpu_ms = bench::summarize(gpu_ms);
      x.wall_ms = bench::summarize(wall_ms);
      x.tok_per_s = double(b) * double(p) / (x.gpu_ms.median * 1e-3);
      x.ms_per_tok = x.gpu_ms.median / (double(b) * double(p));
      x.ms_per_tok_p95 = x.gpu_ms.p95 / (double(b) * double(p));
      x.flops = double(b) * prefill_flops(model, p);
      x.achieved = x.flops / (x.gpu_ms.median * 1e-3) / 1e12;
      x.pct_roofline = ceil.bf16_tflops > 0 ? 100.0 * x.achieved / ceil.bf16_tflops : 0;
      r.results.push_back(x);
    }
  }

  // ---- decode ----
  for (long long d : plan.depths) {
    for (long long b : plan.batches) {
      std::vector<int32_t> seqs{0};
      for (long long i = 1; i < b; ++i) seqs.push_back(engine.add_sequence());
      std::vector<double> rep_gpu, rep_wall, step_ms;
      for (int rep = -plan.warmup; rep < plan.reps; ++rep) {
        progress(plan, str_cat(label, " tg", plan.n_gen, " d", d, " b", b, " rep ", rep + 1, "/", plan.reps));
        std::vector<int32_t> next(seqs.size());
        for (size_t s = 0; s < seqs.size(); ++s) {
          if (seqs[s] == 0) engine.truncate(0);
          else {
            engine.remove_sequence(seqs[s]);
            seqs[s] = engine.add_sequence();
          }
          const auto toks = bench_tokens(std::max<long long>(d, 1), cfg.n_vocab, 2000 + s);
          next[s] = engine.eval_seq(seqs[s], toks.data(), std::max<long long>(d, 1), nullptr);
        }
        double g = 0;
        const double w0 = now_ms();
        for (long long i = 0; i < plan.n_gen; ++i) {
          std::vector<int32_t> out(seqs.size());
          engine.decode_batch(seqs.data(), next.data(), int(seqs.size()), out.data());
          next = out;
          g += engine.last_gpu_ms();
          if (rep >= 0) step_ms.push_back(engine.last_gpu_ms());
        }
        const double w = now_ms() - w0;
        if (rep >= 0) {
          rep_gpu.push_back(g);
          rep_wall.push_back(w);
        }
      }
      note_peak();
      for (size_t s = 1; s < seqs.size(); ++s) engine.remove_sequence(seqs[s]);
      engine.truncate(0);
      Result x;
      x.test = str_cat("tg", plan.n_gen);
      x.batch = int(b);
      x.depth = int(d);
      x.n_tokens = int(plan.n_gen);
      x.gpu_ms = bench::summarize(rep_gpu);
      x.wall_ms = bench::summarize(rep_wall);
      x.tok_per_s = double(b) * double(plan.n_gen) / (x.gpu_ms.median * 1e-3);
      const bench::Stats steps = bench::summarize(step_ms);
      x.ms_per_tok = steps.median;
      x.ms_per_tok_p95 = steps.p95;
      // Average KV length over the steps: d+1 .. d+n_gen tokens (the first prompt token when d = 0).
      const double kv = kv_read_bytes(cfg, std::max<long long>(d, 1) + plan.n_gen / 2);
      x.bytes_per_step = decode_weight_bytes(model, int(b)) + double(b) * kv;
      x.achieved = x.bytes_per_step / (x.gpu_ms.median / double(plan.n_gen) * 1e-3) / 1e9;
      x.pct_roofline = ceil.read_gbps > 0 ? 100.0 * x.achieved / ceil.read_gbps : 0;
      r.results.push_back(x);
    }
  }
  if (!plan.quiet) std::fprintf(stderr, "\r%80s\r", "");
  return r;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  FATHOM_CHECK(in.good(), "cannot read '", path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int cmd_bench(const std::vector<std::string>& argv) {
  Args args(
      "usage: fathom bench [-m MODEL[,MODEL..] | --synthetic SHAPE[,SHAPE..] --type TYPE[,TYPE..]] [options]\n\n"
      "Measures prefill (ppN) and decode (tgN @ depth) speed on the GPU against the ceilings fathom\n"
      "measures on the GPU (cached per GPU). Synthetic shapes get random weights built on the GPU:\n"
      "llama3-8b, llama3.2-1b, qwen2.5-7b, gemma3-270m (and the tiny-* test shapes).");
  args.option("-m,--model", "GGUF model file(s), comma-separated")
      .option("--synthetic", "synthetic shape(s), comma-separated")
      .option("--type", "weight type(s) of the synthetic models: F16 BF16 Q8_0 Q4_0 Q4_K_M Q6_K ...", "Q4_K_M")
      .option("-p,--prompt-tokens", "prefill lengths", "512")
      .option("-n,--gen-tokens", "decode steps per repetition", "128")
      .option("-d,--depth", "prompt tokens before decoding", "0")
      .option("-b,--batch", "sequences decoded together", "1")
      .option("-r,--reps", "repetitions (after the warm-up)", "5")
      .option("--warmup", "warm-up repetitions before the timed ones (0 for a long -p)", "1")
      .option("--ubatch", "prefill chunk in tokens (default: the engine's pick, printed with the memory)", "0")
      .option("--ctx", "KV cache tokens per sequence (default: what the tests need)", "0")
      .option("--json", "write every number and the environment to this file")
      .option("--baseline", "compare with a stored --json run; exit 1 on a regression")
      .option("--max-regress", "regression threshold for --baseline", "3%")
      .flag("--no-graphs", "decode without CUDA graphs (shows what the graphs save)")
      .flag("--remeasure", "measure the GPU ceilings again instead of using the cache")
      .flag("-q,--quiet", "no progress line");
  if (!args.parse(argv)) return 0;
  FATHOM_CHECK(args.has("model") || args.has("synthetic"), "give -m MODEL or --synthetic SHAPE (see --help)");

  Plan plan;
  plan.prompts = args.int_list("prompt-tokens");
  plan.depths = args.int_list("depth");
  plan.batches = args.int_list("batch");
  plan.n_gen = args.integer("gen-tokens");
  plan.reps = int(args.integer("reps"));
  plan.warmup = int(args.integer("warmup"));
  plan.ubatch = args.integer("ubatch");
  FATHOM_CHECK(plan.warmup >= 0, "--warmup must not be negative");
  FATHOM_CHECK(plan.ubatch >= 0, "--ubatch must not be negative");
  plan.quiet = args.enabled("quiet");
  plan.graphs = !args.enabled("no-graphs");
  FATHOM_CHECK(plan.reps >= 1, "-r must be at least 1");
  FATHOM_CHECK(plan.n_gen >= 1, "-n must be at least 1");
  FATHOM_CHECK(!plan.batches.empty() && !plan.depths.empty(), "-b and -d need at least one value");
  for (long long b : plan.batches) FATHOM_CHECK(b >= 1 && b <= 256, "batch ", b, " is outside 1..256");
  for (long long p : plan.prompts) FATHOM_CHECK(p >= 1, "prompt length ", p, " must be positive");
  for (long long d : plan.depths) FATHOM_CHECK(d >= 0, "depth ", d, " must not be negative");

  const GpuInfo gpu = query_gpu();
  FATHOM_CHECK(gpu.present, "fathom bench needs a GPU: ", gpu.why_absent);
  if (!plan.quiet) std::fprintf(stderr, "fathom bench: %s, %d SMs; measuring ceilings (cached per GPU)...\n",
                                gpu.name.c_str(), gpu.sm_count);
  const Ceilings ceil = gpu_ceilings(gpu, args.enabled("remeasure"));
  std::printf("GPU: %s (%d SMs, driver %s, runtime %s). Ceilings%s: streaming read %.0f GB/s, D2D copy %.0f GB/s, "
              "bf16 GEMM %.0f TFLOP/s\n\n",
              gpu.name.c_str(), gpu.sm_count, gpu.driver_version.c_str(), gpu.runtime_version.c_str(),
              ceil.from_cache ? " (cached)" : "", ceil.read_gbps, ceil.copy_gbps, ceil.bf16_tflops);

  std::string command = "fathom bench";
  for (const auto& a : argv) command += " " + a;
  std::vector<Report> reports;
  std::vector<long long> ubatches;  // per report: the engine's prefill chunk
  bool header_printed = false;
  auto emit = [&](Report r) {
    r.command = command;
    std::string table = bench::markdown_table(r);
    if (header_printed) table = table.substr(table.find('\n', table.find('\n') + 1) + 1);
    header_printed = true;
    std::printf("%s", table.c_str());
    std::fflush(stdout);
    reports.push_back(std::move(r));
  };
  if (args.has("model")) {
    for (const auto& path : split_list(args.str("model"))) {
      std::unique_ptr<Model> model = load_model(path);
      const std::string type_label = file_type_name(model->file->get_int("general.file_type", -1));
      long long ub = 0;
      Report r = bench_model(*model, path.substr(path.find_last_of('/') + 1), type_label, "", 0, plan, gpu, ceil,
                             args.integer("ctx"), &ub);
      ubatches.push_back(ub);
      r.model_sha256 = sha256_file(path);
      emit(std::move(r));
    }
  }
  if (args.has("synthetic")) {
    for (const auto& shape : split_list(args.str("synthetic"))) {
      for (const auto& type : split_list(args.str("type"))) {
        std::unique_ptr<Model> model = make_synthetic_model(shape, type);
        long long ub = 0;
        Report r = bench_model(*model, shape, type, shape, 42, plan, gpu, ceil, args.integer("ctx"), &ub);
        ubatches.push_back(ub);
        emit(std::move(r));
      }
    }
  }
  std::printf("\nbuild %s (%s); %d reps after %d warm-up; t/s from device-event medians; %% roofline: decode "
              "bytes/step over streaming read, prefill flops over bf16 GEMM.\n",
              FATHOM_VERSION, FATHOM_GIT_COMMIT, plan.reps, plan.warmup);
  for (size_t i = 0; i < reports.size(); ++i) {
    const Report& r = reports[i];
    std::printf("memory %s %s: weights %.2f GB, KV cache %.2f GB, workspace %.1f MB, device used %.2f GB; "
                "largest KV cache that fits: %lld tokens; prefill chunks of %lld tokens\n",
                r.shape.empty() ? r.model.c_str() : r.shape.c_str(), r.type.c_str(), r.mem_weights / 1e9,
                r.mem_kv / 1e9, r.mem_workspace / 1e6, r.mem_peak_used / 1e9, r.max_kv_tokens, ubatches[i]);
  }

  if (args.has("json")) {
    // One report per file when a single model is benchmarked; otherwise an array of reports.
    std::ofstream out(args.str("json"));
    FATHOM_CHECK(out.good(), "cannot write '", args.str("json"), "'");
    if (reports.size() == 1) out << bench::to_json(reports[0]);
    else {
      out << "[\n";
      for (size_t i = 0; i < reports.size(); ++i) out << bench::to_json(reports[i]) << (i + 1 < reports.size() ? ",\n" : "\n");
      out << "]\n";
    }
  }
  if (args.has("baseline")) {
    const double thr = bench::parse_fraction(args.str("max-regress"));
    std::vector<Report> base = bench::reports_from_json(read_file(args.str("baseline")));
    bool failed = false;
    for (const auto& cur : reports) {
      const Report* match = nullptr;
      for (const auto& b : base)
        if (b.model == cur.model && b.type == cur.type && b.shape == cur.shape) match = &b;
      if (!match) {
        std::printf("baseline: no entry for %s %s\n", cur.model.c_str(), cur.type.c_str());
        continue;
      }
      bench::Comparison c = bench::compare(cur, *match, thr);
      for (const auto& w : c.warnings) std::printf("baseline warning: %s %s: %s\n", cur.model.c_str(), cur.type.c_str(), w.c_str());
      for (const auto& n : c.notes) std::printf("baseline note: %s %s: %s\n", cur.model.c_str(), cur.type.c_str(), n.c_str());
      for (const auto& g : c.regressions) std::printf("REGRESSION: %s %s: %s\n", cur.model.c_str(), cur.type.c_str(), g.c_str());
      failed |= c.failed();
    }
    std::printf(failed ? "baseline: regression beyond %.1f%%\n" : "baseline: no regression beyond %.1f%%\n", 100 * thr);
    return failed ? 1 : 0;
  }
  return 0;
}

}  // namespace

FATHOM_COMMAND("bench", "measure prefill/decode speed against the GPU's measured roofline", cmd_bench);

}  // namespace fathom::cli
