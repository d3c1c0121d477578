// `fathom bench` bookkeeping that needs no GPU: sample statistics, the result record and its JSON
// form, the llama-bench style markdown table, and the regression guard against a baseline file.
#pragma once

#include <string>
#include <vector>

namespace fathom::bench {

// Summary of repeated timings (any unit). Median and p95 use linear interpolation between order
// statistics (numpy's default), so 5 samples give p95 = s[3] + 0.8 (s[4] - s[3]).
struct Stats {
  int n = 0;
  double median = 0, p95 = 0, min = 0, max = 0, mean = 0, stddev = 0;
  // Noise measure used by the regression guard: (p95 - min) / median, as a fraction.
  double spread = 0;
};
Stats summarize(std::vector<double> samples);
double percentile(std::vector<double> sorted_samples, double q);  // q in [0, 1]

// One line of the table: a prefill test ("pp512"), a decode test ("tg128") or a memory record.
struct Result {
  std::string test;            // "pp512", "tg128"
  int batch = 1;               // sequences
  int depth = 0;               // prompt tokens already in the KV cache before a decode test
  int n_tokens = 0;            // tokens processed per repetition (per sequence)
  Stats gpu_ms;                // device-event time per repetition
  Stats wall_ms;               // host wall clock per repetition, including the host
  double tok_per_s = 0;        // batch * n_tokens / median(gpu_ms)
  double ms_per_tok = 0;       // decode: median per step; prefill: median / n_tokens
  double ms_per_tok_p95 = 0;
  double bytes_per_step = 0;   // decode: weights touched + KV read per step
  double flops = 0;            // prefill: flops per repetition
  double achieved = 0;         // decode GB/s or prefill TFLOP/s
  double pct_roofline = 0;     // achieved over the measured ceiling, percent
};

struct Report {
  std::string model, type, shape;  // model name / file, weight type, synthetic shape if any
  double model_bytes = 0;          // weight bytes on the device
  double params = 0;               // parameter count
  std::vector<Result> results;
  // Memory, bytes.
  double mem_weights = 0, mem_kv = 0, mem_workspace = 0, mem_peak_used = 0;
  long long max_kv_tokens = 0;
  // Ceilings measured on this GPU.
  double ceiling_gbps = 0, ceiling_tflops = 0;
  // Environment.
  std::string gpu_name, driver, runtime, fathom_version, git_commit, model_sha256, command;
  int sm_count = 0, sm_clock_mhz = 0, mem_clock_mhz = 0;
};

std::string to_json(const Report& r);  // pretty, stable key order
Report from_json(const std::string& text);  // throws fathom::Error on a malformed file
// A --json file holds one report (one model) or an array of them (several models).
std::vector<Report> reports_from_json(const std::string& text);
std::string markdown_table(const Report& r);

// The regression guard. A metric regresses when the current median is worse than the baseline's
// by more than max_regress (a fraction: 0.03 = 3%): tok/s lower, ms/token higher. Tests are
// matched by (test, batch, depth); tests missing on either side are reported as notes.
struct Comparison {
  std::vector<std::string> regressions;  // one line each, with both numbers and the change
  std::vector<std::string> warnings;     // spread above the threshold: the verdict may be noise
  std::vector<std::string> notes;
  bool failed() const { return !regressions.empty(); }
};
Comparison compare(const Report& current, const Report& baseline, double max_regress);

// "3%" / "0.03" / "3" -> 0.03. Throws on garbage.
double parse_fraction(const std::string& s);

}  // namespace fathom::bench
