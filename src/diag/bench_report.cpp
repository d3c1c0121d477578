#include "fathom/bench.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include "fathom/error.h"

namespace fathom::bench {

using nlohmann::json;

double percentile(std::vector<double> s, double q) {
  FATHOM_CHECK(!s.empty(), "percentile of an empty sample");
  std::sort(s.begin(), s.end());
  q = std::min(1.0, std::max(0.0, q));
  double pos = q * static_cast<double>(s.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(pos));
  size_t hi = std::min(lo + 1, s.size() - 1);
  return s[lo] + (pos - static_cast<double>(lo)) * (s[hi] - s[lo]);
}

Stats summarize(std::vector<double> samples) {
  Stats st;
  if (samples.empty()) return st;
  std::sort(samples.begin(), samples.end());
  st.n = static_cast<int>(samples.size());
  st.median = percentile(samples, 0.5);
  st.p95 = percentile(samples, 0.95);
  st.min = samples.front();
  st.max = samples.back();
  double sum = 0;
  for (double v : samples) sum += v;
  st.mean = sum / st.n;
  double var = 0;
  for (double v : samples) var += (v - st.mean) * (v - st.mean);
  st.stddev = st.n > 1 ? std::sqrt(var / (st.n - 1)) : 0.0;
  st.spread = st.median > 0 ? (st.p95 - st.min) / st.median : 0.0;
  return st;
}

static json stats_json(const Stats& s) {
  return json{{"n", s.n},     {"median", s.median}, {"p95", s.p95},       {"min", s.min},
              {"max", s.max}, {"mean", s.mean},     {"stddev", s.stddev}, {"spread", s.spread}};
}

static Stats stats_from(const json& j) {
  Stats s;
  s.n = j.at("n").get<int>();
  s.median = j.at("median").get<double>();
  s.p95 = j.at("p95").get<double>();
  s.min = j.at("min").get<double>();
  s.max = j.at("max").get<double>();
  s.mean = j.at("mean").get<double>();
  s.stddev = j.at("stddev").get<double>();
  s.spread = j.at("spread").get<double>();
  return s;
}

std::string to_json(const Report& r) {
  json j;
  j["schema"] = "fathom-bench/1";
  j["model"] = {{"name", r.model}, {"type", r.type}, {"shape", r.shape}, {"bytes", r.model_bytes},
                {"params", r.params}, {"sha256", r.model_sha256}};
  j["memory"] = {{"weights", r.mem_weights}, {"kv_cache", r.mem_kv}, {"workspace", r.mem_workspace},
                 {"peak_used", r.mem_peak_used}, {"max_kv_tokens", r.max_kv_tokens}};
  j["ceilings"] = {{"bandwidth_gbps", r.ceiling_gbps}, {"bf16_gemm_tflops", r.ceiling_tflops}};
  j["environment"] = {{"gpu", r.gpu_name},           {"sm_count", r.sm_count},
                      {"sm_clock_mhz", r.sm_clock_mhz}, {"mem_clock_mhz", r.mem_clock_mhz},
                      {"driver", r.driver},           {"runtime", r.runtime},
                      {"fathom_version", r.fathom_version}, {"git_commit", r.git_commit},
                      {"command", r.command}};
  json results = json::array();
  for (const auto& x : r.results) {
    results.push_back({{"test", x.test},
                       {"batch", x.batch},
                       {"depth", x.depth},
                       {"n_tokens", x.n_tokens},
                       {"gpu_ms", stats_json(x.gpu_ms)},
                       {"wall_ms", stats_json(x.wall_ms)},
                       {"tok_per_s", x.tok_per_s},
                       {"ms_per_tok", x.ms_per_tok},
                       {"ms_per_tok_p95", x.ms_per_tok_p95},
                       {"bytes_per_step", x.bytes_per_step},
                       {"flops", x.flops},
                       {"achieved", x.achieved},
                       {"pct_roofline", x.pct_roofline}});
  }
  j["results"] = results;
  return j.dump(2) + "\n";
}

static Report report_from(const json& j);

Report from_json(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("bench JSON is not valid JSON: ", e.what());
  }
  return report_from(j);
}

std::vector<Report> reports_from_json(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("bench JSON is not valid JSON: ", e.what());
  }
  std::vector<Report> out;
  if (j.is_array())
    for (const auto& x : j) out.push_back(report_from(x));
  else
    out.push_back(report_from(j));
  return out;
}

static Report report_from(const json& j) {
  try {
    FATHOM_CHECK(j.value("schema", std::string()) == "fathom-bench/1",
                 "bench JSON has schema '", j.value("schema", std::string("<none>")),
                 "', expected 'fathom-bench/1'");
    Report r;
    const auto& m = j.at("model");
    r.model = m.at("name").get<std::string>();
    r.type = m.at("type").get<std::string>();
    r.shape = m.at("shape").get<std::string>();
    r.model_bytes = m.at("bytes").get<double>();
    r.params = m.at("params").get<double>();
    r.model_sha256 = m.at("sha256").get<std::string>();
    const auto& mem = j.at("memory");
    r.mem_weights = mem.at("weights").get<double>();
    r.mem_kv = mem.at("kv_cache").get<double>();
    r.mem_workspace = mem.at("workspace").get<double>();
    r.mem_peak_used = mem.at("peak_used").get<double>();
    r.max_kv_tokens = mem.at("max_kv_tokens").get<long long>();
    r.ceiling_gbps = j.at("ceilings").at("bandwidth_gbps").get<double>();
    r.ceiling_tflops = j.at("ceilings").at("bf16_gemm_tflops").get<double>();
    const auto& e = j.at("environment");
    r.gpu_name = e.at("gpu").get<std::string>();
    r.sm_count = e.at("sm_count").get<int>();
    r.sm_clock_mhz = e.at("sm_clock_mhz").get<int>();
    r.mem_clock_mhz = e.at("mem_clock_mhz").get<int>();
    r.driver = e.at("driver").get<std::string>();
    r.runtime = e.at("runtime").get<std::string>();
    r.fathom_version = e.at("fathom_version").get<std::string>();
    r.git_commit = e.at("git_commit").get<std::string>();
    r.command = e.at("command").get<std::string>();
    for (const auto& x : j.at("results")) {
      Result res;
      res.test = x.at("test").get<std::string>();
      res.batch = x.at("batch").get<int>();
      res.depth = x.at("depth").get<int>();
      res.n_tokens = x.at("n_tokens").get<int>();
      res.gpu_ms = stats_from(x.at("gpu_ms"));
      res.wall_ms = stats_from(x.at("wall_ms"));
      res.tok_per_s = x.at("tok_per_s").get<double>();
      res.ms_per_tok = x.at("ms_per_tok").get<double>();
      res.ms_per_tok_p95 = x.at("ms_per_tok_p95").get<double>();
      res.bytes_per_step = x.at("bytes_per_step").get<double>();
      res.flops = x.at("flops").get<double>();
      res.achieved = x.at("achieved").get<double>();
      res.pct_roofline = x.at("pct_roofline").get<double>();
      r.results.push_back(res);
    }
    return r;
  } catch (const json::exception& e) {
    fail("bench JSON is missing a field or has a wrong type: ", e.what());
  }
}

static std::string human_bytes(double b) {
  if (b >= 1e9) return str_printf("%.2f GB", b / 1e9);
  if (b >= 1e6) return str_printf("%.1f MB", b / 1e6);
  return str_printf("%.0f B", b);
}

static bool is_decode(const Result& x) { return x.test.rfind("tg", 0) == 0; }

std::string markdown_table(const Report& r) {
  std::ostringstream os;
  os << "| model | size | type | test | batch | t/s | ms/tok (p95) | achieved | % roofline |\n";
  os << "|---|---:|---|---|---:|---:|---:|---:|---:|\n";
  for (const auto& x : r.results) {
    std::string test = x.test + (x.depth > 0 ? " @ d" + std::to_string(x.depth) : "");
    std::string achieved = is_decode(x) ? str_printf("%.0f GB/s", x.achieved) : str_printf("%.1f TFLOP/s", x.achieved);
    os << "| " << (r.shape.empty() ? r.model : r.shape) << " | " << human_bytes(r.model_bytes) << " | " << r.type
       << " | " << test << " | " << x.batch << " | " << str_printf("%.1f", x.tok_per_s) << " ± "
       << str_printf("%.1f", x.tok_per_s * x.gpu_ms.stddev / std::max(1e-12, x.gpu_ms.median)) << " | "
       << str_printf("%.3f", x.ms_per_tok) << " (" << str_printf("%.3f", x.ms_per_tok_p95) << ") | " << achieved << " | "
       << str_printf("%.1f%%", x.pct_roofline) << " |\n";
  }
  return os.str();
}

Comparison compare(const Report& cur, const Report& base, double max_regress) {
  Comparison c;
  using Key = std::tuple<std::string, int, int>;
  std::map<Key, const Result*> base_by_key;
  for (const auto& b : base.results) base_by_key[Key{b.test, b.batch, b.depth}] = &b;
  std::map<Key, bool> seen;
  for (const auto& x : cur.results) {
    Key k{x.test, x.batch, x.depth};
    std::string name = x.test + " b" + std::to_string(x.batch) + (x.depth ? " d" + std::to_string(x.depth) : "");
    auto it = base_by_key.find(k);
    if (it == base_by_key.end()) {
      c.notes.push_back(name + ": not in the baseline");
      continue;
    }
    seen[k] = true;
    const Result& b = *it->second;
    // tok/s: higher is better; compare medians.
    if (b.tok_per_s > 0) {
      double change = x.tok_per_s / b.tok_per_s - 1.0;
      if (change < -max_regress)
        c.regressions.push_back(name + ": " + str_printf("%.1f", x.tok_per_s) + " tok/s vs baseline " +
                                str_printf("%.1f", b.tok_per_s) + " (" + str_printf("%+.1f%%", 100 * change) + ", limit -" +
                                str_printf("%.1f%%", 100 * max_regress) + ")");
    }
    double spread = std::max(x.gpu_ms.spread, b.gpu_ms.spread);
    if (spread > max_regress)
      c.warnings.push_back(name + ": run-to-run spread " + str_printf("%.1f%%", 100 * spread) +
                           " exceeds the threshold; the comparison may be noise");
  }
  for (const auto& [k, b] : base_by_key)
    if (!seen.count(k))
      c.notes.push_back(std::get<0>(k) + " b" + std::to_string(std::get<1>(k)) + ": in the baseline, not measured now");
  return c;
}

double parse_fraction(const std::string& s) {
  std::string t = s;
  bool pct = !t.empty() && t.back() == '%';
  if (pct) t.pop_back();
  char* end = nullptr;
  double v = std::strtod(t.c_str(), &end);
  FATHOM_CHECK(!t.empty() && end && *end == '\0' && v >= 0, "'", s, "' is not a threshold like 3% or 0.03");
  if (pct || v >= 1.0) v /= 100.0;
  return v;
}

}  // namespace fathom::bench
