// Trace: JSON round trip, the analysis behind `fathom profile` / `fathom doctor`, and the report.
// Pure C++: no CUDA, so every number here is unit-tested on synthetic traces.
#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fathom/error.h"
#include "fathom/profiler.h"

namespace fathom {

using nlohmann::json;

const char* copy_kind_name(CopyKind k) {
  switch (k) {
    case CopyKind::H2D: return "H2D";
    case CopyKind::D2H: return "D2H";
    case CopyKind::D2D: return "D2D";
    case CopyKind::H2H: return "H2H";
    case CopyKind::OTHER: return "other";
  }
  return "other";
}

const char* sync_kind_name(SyncKind k) {
  switch (k) {
    case SyncKind::EVENT: return "event";
    case SyncKind::STREAM_WAIT_EVENT: return "stream_wait_event";
    case SyncKind::STREAM: return "stream";
    case SyncKind::CONTEXT: return "context";
    case SyncKind::OTHER: return "other";
  }
  return "other";
}

namespace {

CopyKind copy_kind_from(const std::string& s) {
  for (CopyKind k : {CopyKind::H2D, CopyKind::D2H, CopyKind::D2D, CopyKind::H2H, CopyKind::OTHER})
    if (s == copy_kind_name(k)) return k;
  fail("unknown memcpy kind '", s, "' (expected H2D, D2H, D2D, H2H or other)");
}

SyncKind sync_kind_from(const std::string& s) {
  for (SyncKind k : {SyncKind::EVENT, SyncKind::STREAM_WAIT_EVENT, SyncKind::STREAM, SyncKind::CONTEXT,
                     SyncKind::OTHER})
    if (s == sync_kind_name(k)) return k;
  fail("unknown sync kind '", s, "'");
}

// j[key] as T, or a fathom::Error naming where and what.
template <typename T>
T field(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  FATHOM_CHECK(it != j.end(), "trace JSON: ", where, " has no field '", key, "'");
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    fail("trace JSON: field '", key, "' of ", where, " has the wrong type (", it->type_name(), ")");
  }
}

template <typename T>
T optional_field(const json& j, const char* key, T def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    fail("trace JSON: field '", key, "' has the wrong type (", it->type_name(), ")");
  }
}

const json& array_field(const json& j, const char* key) {
  static const json empty = json::array();
  auto it = j.find(key);
  if (it == j.end()) return empty;
  FATHOM_CHECK(it->is_array(), "trace JSON: '", key, "' is not an array");
  return *it;
}

}  // namespace

std::string trace_to_json(const Trace& t, int indent) {
  json j;
  j["source"] = t.source;
  j["device"] = t.device;
  j["model"] = t.model;
  j["n_prompt"] = t.n_prompt;
  j["n_decode"] = t.n_decode;
  j["weight_bytes"] = t.weight_bytes;
  j["read_gbps"] = t.read_gbps;
  j["bf16_tflops"] = t.bf16_tflops;
  const DeviceLimits& d = t.limits;
  j["limits"] = {{"cc_major", d.cc_major}, {"cc_minor", d.cc_minor}, {"sm_count", d.sm_count},
                 {"warp_size", d.warp_size}, {"max_threads_per_sm", d.max_threads_per_sm},
                 {"max_blocks_per_sm", d.max_blocks_per_sm}, {"regs_per_sm", d.regs_per_sm},
                 {"regs_per_block", d.regs_per_block}, {"smem_per_sm", d.smem_per_sm},
                 {"smem_per_block_optin", d.smem_per_block_optin},
                 {"reserved_smem_per_block", d.reserved_smem_per_block}};
  j["begin_ns"] = t.begin_ns;
  j["end_ns"] = t.end_ns;
  j["dropped_records"] = t.dropped_records;
  json& ks = j["kernels"] = json::array();
  for (const KernelEvent& k : t.kernels)
    ks.push_back({{"name", k.name}, {"start_ns", k.start_ns}, {"end_ns", k.end_ns}, {"stream", k.stream},
                  {"grid", {k.grid[0], k.grid[1], k.grid[2]}}, {"block", {k.block[0], k.block[1], k.block[2]}},
                  {"registers", k.registers}, {"static_smem", k.static_smem},
                  {"dynamic_smem", k.dynamic_smem}, {"graph_id", k.graph_id}, {"correlation", k.correlation}});
  json& ms = j["memcpys"] = json::array();
  for (const MemcpyEvent& m : t.memcpys)
    ms.push_back({{"kind", copy_kind_name(m.kind)}, {"bytes", m.bytes}, {"start_ns", m.start_ns},
                  {"end_ns", m.end_ns}, {"stream", m.stream}, {"pageable", m.pageable}});
  json& ss = j["memsets"] = json::array();
  for (const MemsetEvent& m : t.memsets)
    ss.push_back({{"bytes", m.bytes}, {"start_ns", m.start_ns}, {"end_ns", m.end_ns}, {"stream", m.stream}});
  json& ys = j["syncs"] = json::array();
  for (const SyncEvent& s : t.syncs)
    ys.push_back({{"kind", sync_kind_name(s.kind)}, {"start_ns", s.start_ns}, {"end_ns", s.end_ns},
                  {"stream", s.stream}});
  json& as = j["api"] = json::array();
  for (const ApiEvent& a : t.api)
    as.push_back({{"name", a.name}, {"start_ns", a.start_ns}, {"end_ns", a.end_ns}, {"correlation", a.correlation}});
  json& st = j["steps"] = json::array();
  for (const StepMark& s : t.steps) st.push_back({{"t_ns", s.t_ns}, {"phase", s.phase}});
  json& rs = j["ranges"] = json::array();
  for (const RangeEvent& r : t.ranges)
    rs.push_back({{"name", r.name}, {"domain", r.domain}, {"start_ns", r.start_ns}, {"end_ns", r.end_ns}});
  auto costs_json = [](const std::vector<KernelCost>& v) {
    json cs = json::array();
    for (const KernelCost& c : v)
      cs.push_back({{"name", c.name}, {"launches", c.launches}, {"hinted", c.hinted}, {"bytes", c.bytes},
                    {"flops", c.flops}});
    return cs;
  };
  j["costs"] = costs_json(t.costs);
  j["prefill_costs"] = costs_json(t.prefill_costs);
  return j.dump(indent);
}

namespace {

Trace trace_from(const json& j) {
  FATHOM_CHECK(j.is_object(), "trace JSON: expected an object, got ", j.type_name());
  Trace t;
  t.source = optional_field<std::string>(j, "source", "");
  t.device = optional_field<std::string>(j, "device", "");
  t.model = optional_field<std::string>(j, "model", "");
  t.n_prompt = optional_field<int64_t>(j, "n_prompt", 0);
  t.n_decode = optional_field<int64_t>(j, "n_decode", 0);
  t.weight_bytes = optional_field<double>(j, "weight_bytes", 0);
  t.read_gbps = optional_field<double>(j, "read_gbps", 0);
  t.bf16_tflops = optional_field<double>(j, "bf16_tflops", 0);
  if (auto it = j.find("limits"); it != j.end() && it->is_object()) {
    const json& l = *it;
    DeviceLimits& d = t.limits;
    d.cc_major = optional_field<int>(l, "cc_major", 0);
    d.cc_minor = optional_field<int>(l, "cc_minor", 0);
    d.sm_count = optional_field<int>(l, "sm_count", 0);
    d.warp_size = optional_field<int>(l, "warp_size", 32);
    d.max_threads_per_sm = optional_field<int>(l, "max_threads_per_sm", 0);
    d.max_blocks_per_sm = optional_field<int>(l, "max_blocks_per_sm", 0);
    d.regs_per_sm = optional_field<int>(l, "regs_per_sm", 0);
    d.regs_per_block = optional_field<int>(l, "regs_per_block", 0);
    d.smem_per_sm = optional_field<int>(l, "smem_per_sm", 0);
    d.smem_per_block_optin = optional_field<int>(l, "smem_per_block_optin", 0);
    d.reserved_smem_per_block = optional_field<int>(l, "reserved_smem_per_block", 0);
  }
  t.begin_ns = optional_field<uint64_t>(j, "begin_ns", 0);
  t.end_ns = optional_field<uint64_t>(j, "end_ns", 0);
  t.dropped_records = optional_field<uint64_t>(j, "dropped_records", 0);
  size_t i = 0;
  for (const json& e : array_field(j, "kernels")) {
    const std::string w = str_cat("kernel ", i++);
    KernelEvent k;
    k.name = field<std::string>(e, "name", w);
    k.start_ns = field<uint64_t>(e, "start_ns", w);
    k.end_ns = field<uint64_t>(e, "end_ns", w);
    k.stream = optional_field<uint32_t>(e, "stream", 0);
    const auto grid = optional_field<std::vector<int32_t>>(e, "grid", {1, 1, 1});
    const auto block = optional_field<std::vector<int32_t>>(e, "block", {1, 1, 1});
    FATHOM_CHECK(grid.size() == 3 && block.size() == 3, "trace JSON: ", w, ": grid and block need 3 values");
    std::copy(grid.begin(), grid.end(), k.grid);
    std::copy(block.begin(), block.end(), k.block);
    k.registers = optional_field<int32_t>(e, "registers", 0);
    k.static_smem = optional_field<int32_t>(e, "static_smem", 0);
    k.dynamic_smem = optional_field<int32_t>(e, "dynamic_smem", 0);
    k.graph_id = optional_field<uint32_t>(e, "graph_id", 0);
    k.correlation = optional_field<uint32_t>(e, "correlation", 0);
    t.kernels.push_back(std::move(k));
  }
  i = 0;
  for (const json& e : array_field(j, "memcpys")) {
    const std::string w = str_cat("memcpy ", i++);
    MemcpyEvent m;
    m.kind = copy_kind_from(field<std::string>(e, "kind", w));
    m.bytes = field<uint64_t>(e, "bytes", w);
    m.start_ns = field<uint64_t>(e, "start_ns", w);
    m.end_ns = field<uint64_t>(e, "end_ns", w);
    m.stream = optional_field<uint32_t>(e, "stream", 0);
    m.pageable = optional_field<bool>(e, "pageable", false);
    t.memcpys.push_back(m);
  }
  i = 0;
  for (const json& e : array_field(j, "memsets")) {
    const std::string w = str_cat("memset ", i++);
    MemsetEvent m;
    m.bytes = field<uint64_t>(e, "bytes", w);
    m.start_ns = field<uint64_t>(e, "start_ns", w);
    m.end_ns = field<uint64_t>(e, "end_ns", w);
    m.stream = optional_field<uint32_t>(e, "stream", 0);
    t.memsets.push_back(m);
  }
  i = 0;
  for (const json& e : array_field(j, "syncs")) {
    const std::string w = str_cat("sync ", i++);
    SyncEvent s;
    s.kind = sync_kind_from(field<std::string>(e, "kind", w));
    s.start_ns = field<uint64_t>(e, "start_ns", w);
    s.end_ns = field<uint64_t>(e, "end_ns", w);
    s.stream = optional_field<uint32_t>(e, "stream", 0);
    t.syncs.push_back(s);
  }
  i = 0;
  for (const json& e : array_field(j, "api")) {
    const std::string w = str_cat("api call ", i++);
    ApiEvent a;
    a.name = field<std::string>(e, "name", w);
    a.start_ns = field<uint64_t>(e, "start_ns", w);
    a.end_ns = field<uint64_t>(e, "end_ns", w);
    a.correlation = optional_field<uint32_t>(e, "correlation", 0);
    t.api.push_back(std::move(a));
  }
  i = 0;
  for (const json& e : array_field(j, "steps")) {
    const std::string w = str_cat("step ", i++);
    t.steps.push_back(StepMark{field<uint64_t>(e, "t_ns", w), field<std::string>(e, "phase", w)});
  }
  i = 0;
  for (const json& e : array_field(j, "ranges")) {
    const std::string w = str_cat("range ", i++);
    RangeEvent r;
    r.name = field<std::string>(e, "name", w);
    r.domain = optional_field<std::string>(e, "domain", "");
    r.start_ns = field<uint64_t>(e, "start_ns", w);
    r.end_ns = field<uint64_t>(e, "end_ns", w);
    t.ranges.push_back(std::move(r));
  }
  const struct {
    const char* key;
    const char* what;
    std::vector<KernelCost>* out;
  } cost_tables[] = {{"costs", "cost ", &t.costs}, {"prefill_costs", "prefill cost ", &t.prefill_costs}};
  for (const auto& [key, what, out] : cost_tables) {
    i = 0;
    for (const json& e : array_field(j, key)) {
      const std::string w = str_cat(what, i++);
      KernelCost c;
      c.name = field<std::string>(e, "name", w);
      c.launches = field<int64_t>(e, "launches", w);
      c.hinted = optional_field<int64_t>(e, "hinted", c.launches);
      c.bytes = field<double>(e, "bytes", w);
      c.flops = field<double>(e, "flops", w);
      out->push_back(std::move(c));
    }
  }
  return t;
}

}  // namespace

Trace trace_from_json(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    fail("trace JSON does not parse: ", e.what());
  }
  return trace_from(j);
}

Trace read_trace_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  FATHOM_CHECK(in, "cannot open trace file '", path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    json j;
    try {
      j = json::parse(ss.str());
    } catch (const json::parse_error& e) {
      fail("it is not JSON (", e.what(), ")");
    }
    // `fathom profile --json` writes {"trace": ..., "summary": ...}.
    if (j.is_object() && j.contains("trace")) return trace_from(j["trace"]);
    return trace_from(j);
  } catch (const Error& e) {
    fail("trace file '", path, "': ", e.what());
  }
}

// ---- analysis ---------------------------------------------------------------------------------

std::string kernel_display_name(const std::string& demangled) {
  std::string s = demangled;
  if (s.rfind("void ", 0) == 0) s = s.substr(5);
  // The parameter list is the last top-level "(...)": scan back from the end over balanced parens.
  if (!s.empty() && s.back() == ')') {
    int depth = 0;
    for (size_t i = s.size(); i-- > 0;) {
      if (s[i] == ')') ++depth;
      if (s[i] == '(' && --depth == 0) {
        if (i > 0) s.resize(i);
        break;
      }
    }
  }
  return s;
}

const char* kernel_category_name(KernelCategory c) {
  switch (c) {
    case KernelCategory::SAMPLING: return "sampling";
    case KernelCategory::ATTENTION: return "attention";
    case KernelCategory::GEMM: return "gemm/gemv";
    case KernelCategory::QUANT: return "quant/dequant";
    case KernelCategory::NORM: return "norm";
    case KernelCategory::COPY: return "copy/memset";
    case KernelCategory::ELEMENTWISE: return "elementwise";
    case KernelCategory::OTHER: return "other";
  }
  return "other";
}

KernelCategory classify_kernel(const std::string& name) {
  // The name without its parameter list (a parameter type like "AttentionParams" says nothing
  // about the kernel it is passed to), lower-cased; template arguments stay: PyTorch's
  // elementwise kernels name what they do only in their functor argument.
  std::string n = kernel_display_name(name);
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  auto has = [&](std::initializer_list<const char*> keys) {
    for (const char* k : keys)
      if (n.find(k) != std::string::npos) return true;
    return false;
  };
  // Order matters: FlashAttention-3 kernels are "cutlass::device_kernel<flash::...>", ggml's
  // "dequantize_mul_mat_vec" is a GEMV, PyTorch's copies are "elementwise_kernel<...copy...>".
  if (has({"argmax", "sample_kernel", "sampling", "topk", "top_k", "top_p", "multinomial"}))
    return KernelCategory::SAMPLING;
  if (has({"flash", "fmha", "attention", "attn", "soft_max", "softmax", "flash_fwd", "decode_mla", "batchprefill",
           "batchdecode", "mergestate", "merge_state"}))
    return KernelCategory::ATTENTION;
  if (has({"gemm", "gemv", "cutlass", "xmma", "cublas", "mul_mat", "matmul", "mmvq", "mmq", "splitkreduce",
           "wgmma", "hmma", "imma"}))
    return KernelCategory::GEMM;
  if (has({"quantize", "dequant", "quant_"})) return KernelCategory::QUANT;
  if (has({"rms_norm", "rmsnorm", "layer_norm", "layernorm", "group_norm", "l2_norm", "norm_kernel", "norm_f32"}))
    return KernelCategory::NORM;
  if (has({"memcpy", "memset", "copy", "cpy", "fillfunctor", "get_rows", "embedding", "concat", "cat_array", "catarray",
           "gather", "scatter", "index_select", "transpose", "convert_kernel"}) ||
      n.rfind("fill", 0) == 0)
    return KernelCategory::COPY;
  if (has({"elementwise", "reduce_kernel", "rope", "glu", "silu", "gelu", "relu", "swish", "sigmoid", "tanh",
           "bin_bcast", "unary", "binary", "pointwise", "add_kernel", "mul_kernel", "scale", "residual", "bias",
           "act_and_mul", "activation", "softcap"}))
    return KernelCategory::ELEMENTWISE;
  return KernelCategory::OTHER;
}

namespace {
std::string lower_name(const std::string& name) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return n;
}
}  // namespace

bool is_layout_kernel(const std::string& name) {
  std::string n = lower_name(kernel_display_name(name));
  if (n.find("embedding") != std::string::npos || n.find("get_rows") != std::string::npos) return false;
  // A GEMM's or an attention kernel's template arguments name layouts and converters
  // ("cutlass::layout::RowMajor", "NumericConverter"): for those only the kernel's own name counts
  // ("cublasLt::reformat_kernel<...>" still does). PyTorch's copies name themselves only in their
  // template arguments ("elementwise_kernel<..., direct_copy_kernel_cuda...>"), so others keep them.
  const KernelCategory c = classify_kernel(name);
  if (c == KernelCategory::GEMM || c == KernelCategory::ATTENTION) {
    std::string outer;
    int depth = 0;
    for (char ch : n) {
      if (ch == '<') ++depth;
      if (depth == 0) outer += ch;
      if (ch == '>' && depth > 0) --depth;
    }
    n = outer;
  }
  for (const char* key : {"transpose", "permute", "contiguous", "copy", "cpy", "convert", "cat_array", "catarray",
                          "concat", "reformat", "layout"})
    if (n.find(key) != std::string::npos) return true;
  return false;
}

bool is_splitk_reduce_kernel(const std::string& name) {
  return lower_name(kernel_display_name(name)).find("splitkreduce") != std::string::npos;
}

const char* occupancy_limiter_name(OccupancyLimiter l) {
  switch (l) {
    case OccupancyLimiter::WARPS: return "warps";
    case OccupancyLimiter::BLOCKS: return "blocks";
    case OccupancyLimiter::REGISTERS: return "registers";
    case OccupancyLimiter::SHARED_MEMORY: return "smem";
    case OccupancyLimiter::NONE: return "none";
  }
  return "none";
}

Occupancy theoretical_occupancy(const DeviceLimits& d, int threads, int regs, int smem) {
  Occupancy o;
  if (!d.known() || threads <= 0) return o;
  auto round_up = [](int64_t v, int64_t unit) { return (v + unit - 1) / unit * unit; };
  constexpr int kRegUnit = 256;       // registers are allocated per warp in units of 256
  constexpr int kSubPartitions = 4;   // an SM's register file is split over 4 schedulers
  constexpr int kSmemUnit = 128;      // shared memory allocation granularity (sm_80, sm_90)
  constexpr int kMaxRegsPerThread = 255;
  constexpr int kUnlimited = 1 << 30;
  const int warps_per_block = int((threads + d.warp_size - 1) / d.warp_size);
  const int max_warps = d.max_threads_per_sm / d.warp_size;

  o.limit_warps = max_warps / warps_per_block;
  o.limit_blocks = d.max_blocks_per_sm > 0 ? d.max_blocks_per_sm : kUnlimited;
  if (regs <= 0) {
    o.limit_regs = kUnlimited;
  } else {
    const int64_t regs_per_warp = round_up(int64_t(regs) * d.warp_size, kRegUnit);
    const int64_t regs_per_block = regs_per_warp * warps_per_block;
    // The hardware reserves registers for a block as if its warps filled whole sub-partitions.
    const int64_t assumed_per_block = regs_per_warp * round_up(warps_per_block, kSubPartitions);
    const int64_t block_cap = d.regs_per_block > 0 ? d.regs_per_block : d.regs_per_sm;
    if (regs > kMaxRegsPerThread || regs_per_block > block_cap || assumed_per_block > block_cap) {
      o.limit_regs = 0;
    } else {
      const int64_t warps_per_sub = (d.regs_per_sm / kSubPartitions) / regs_per_warp;
      o.limit_regs = int(warps_per_sub * kSubPartitions / warps_per_block);
    }
  }
  const int64_t smem_block = round_up(int64_t(smem) + d.reserved_smem_per_block, kSmemUnit);
  const int64_t smem_cap = d.smem_per_block_optin > 0 ? d.smem_per_block_optin + d.reserved_smem_per_block
                                                      : d.smem_per_sm;
  if (smem_block > smem_cap) {
    o.limit_smem = 0;
  } else {
    o.limit_smem = smem_block > 0 ? int(d.smem_per_sm / smem_block) : kUnlimited;
  }
  if (threads > d.max_threads_per_sm) o.limit_warps = 0;

  o.blocks_per_sm = std::min({o.limit_warps, o.limit_blocks, o.limit_regs, o.limit_smem});
  // The first limit that binds, in the order an optimiser would read them: a block-size or
  // blocks-per-SM cap before a resource cap that happens to tie with it.
  const std::pair<int, OccupancyLimiter> order[] = {{o.limit_warps, OccupancyLimiter::WARPS},
                                                    {o.limit_blocks, OccupancyLimiter::BLOCKS},
                                                    {o.limit_regs, OccupancyLimiter::REGISTERS},
                                                    {o.limit_smem, OccupancyLimiter::SHARED_MEMORY}};
  o.limiter = OccupancyLimiter::NONE;
  if (o.blocks_per_sm > 0)
    for (const auto& [lim, which] : order)
      if (lim == o.blocks_per_sm) {
        o.limiter = which;
        break;
      }
  if (o.limit_blocks == kUnlimited) o.limit_blocks = 0;
  if (o.limit_regs == kUnlimited) o.limit_regs = 0;
  if (o.limit_smem == kUnlimited) o.limit_smem = 0;
  o.warps_per_sm = o.blocks_per_sm * warps_per_block;
  o.pct = max_warps > 0 ? 100.0 * o.warps_per_sm / max_warps : 0;
  return o;
}

namespace {

// "decode step 12" -> "decode step N"; names without a trailing number stay.
std::string range_group_name(const std::string& name) {
  size_t e = name.size();
  while (e > 0 && std::isdigit(static_cast<unsigned char>(name[e - 1]))) --e;
  if (e == name.size() || e == 0 || name[e - 1] != ' ') return name;
  return name.substr(0, e) + "N";
}

enum class StepRange { NONE, PREFILL, DECODE };
StepRange step_range_kind(const std::string& name) {
  if (name == "prefill") return StepRange::PREFILL;
  if (name == "decode" || name.rfind("decode step", 0) == 0) return StepRange::DECODE;
  return StepRange::NONE;
}

}  // namespace

std::vector<StepMark> step_marks_from_ranges(const std::vector<RangeEvent>& ranges) {
  std::vector<StepMark> marks;
  std::vector<const RangeEvent*> sorted;
  for (const RangeEvent& r : ranges)
    if (step_range_kind(r.name) != StepRange::NONE) sorted.push_back(&r);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const RangeEvent* a, const RangeEvent* b) { return a->start_ns < b->start_ns; });
  bool seen_decode = false;
  for (const RangeEvent* r : sorted) {
    if (step_range_kind(r->name) == StepRange::PREFILL) {
      marks.push_back({r->start_ns, "prefill"});
    } else {
      marks.push_back({r->start_ns, seen_decode ? "decode" : "decode-first"});
      seen_decode = true;
    }
  }
  return marks;
}

const PhaseStats* TraceAnalysis::phase(const std::string& name) const {
  for (const PhaseStats& p : phases)
    if (p.phase == name) return &p;
  return nullptr;
}

const PhaseStats& TraceAnalysis::steady() const {
  const PhaseStats* d = phase("decode");
  return d ? *d : overall;
}

namespace {

struct Interval {
  uint64_t begin = 0, end = 0;
};

double us(uint64_t ns) { return double(ns) * 1e-3; }
double span_us(uint64_t a, uint64_t b) { return b > a ? us(b - a) : 0.0; }

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Index of the interval holding t (sorted, disjoint intervals), or -1.
int find_interval(const std::vector<Interval>& iv, uint64_t t) {
  auto it = std::upper_bound(iv.begin(), iv.end(), t, [](uint64_t x, const Interval& i) { return x < i.begin; });
  if (it == iv.begin()) return -1;
  --it;
  return t < it->end ? int(it - iv.begin()) : -1;
}

// Runtime API names by what they cost an inference loop.
bool is_alloc_api(const std::string& n) {
  static const char* names[] = {"cudaMalloc", "cudaFree", "cudaMallocHost", "cudaHostAlloc", "cudaFreeHost",
                                "cudaMallocAsync", "cudaFreeAsync", "cudaMallocManaged", "cudaMallocPitch",
                                "cudaMalloc3D", "cudaMallocFromPoolAsync"};
  for (const char* x : names)
    if (n == x) return true;
  return false;
}
bool is_sync_api(const std::string& n) {
  return n == "cudaStreamSynchronize" || n == "cudaDeviceSynchronize" || n == "cudaEventSynchronize" ||
         n == "cudaThreadSynchronize";
}
// Calls that return only when the copy or set is done: an implicit host sync.
bool is_blocking_copy_api(const std::string& n) {
  return n == "cudaMemcpy" || n == "cudaMemset" || n == "cudaMemcpy2D" || n == "cudaMemcpyToSymbol" ||
         n == "cudaMemcpyFromSymbol";
}
bool is_launch_api(const std::string& n) {
  return n == "cudaLaunchKernel" || n == "cudaLaunchKernelExC" || n == "cudaLaunchCooperativeKernel" ||
         n == "cuLaunchKernel" || n == "cuLaunchKernelEx";
}

// Achieved bandwidth / flop rate from the launch-cost hints, and theoretical occupancy.
void annotate_kernel(const Trace& t, const std::map<std::string, const KernelCost*>& costs, KernelStat& ks) {
  auto it = costs.find(ks.name);
  if (it != costs.end() && it->second->hinted > 0) {
    const KernelCost& c = *it->second;
    ks.has_cost = true;
    ks.bytes = c.bytes_per_launch() * double(ks.count);
    ks.flops = c.flops_per_launch() * double(ks.count);
    if (ks.total_us > 0) {
      ks.gbps = ks.bytes / (ks.total_us * 1e-6) / 1e9;
      ks.tflops = ks.flops / (ks.total_us * 1e-6) / 1e12;
    }
    ks.pct_bw = t.read_gbps > 0 ? 100.0 * ks.gbps / t.read_gbps : 0;
    ks.pct_flops = t.bf16_tflops > 0 ? 100.0 * ks.tflops / t.bf16_tflops : 0;
  }
  const int threads = ks.block[0] * ks.block[1] * ks.block[2];
  ks.occupancy = theoretical_occupancy(t.limits, threads, ks.registers, ks.smem);
  const double blocks = double(ks.grid[0]) * ks.grid[1] * ks.grid[2];
  if (ks.occupancy.blocks_per_sm > 0 && t.limits.sm_count > 0)
    ks.waves = blocks / (double(ks.occupancy.blocks_per_sm) * t.limits.sm_count);
}

PhaseStats compute(const Trace& t, const std::vector<Interval>& iv, const std::string& name, size_t top_n) {
  PhaseStats p;
  p.phase = name;
  p.n_steps = int64_t(iv.size());
  std::vector<double> step_us;
  for (const Interval& i : iv) {
    step_us.push_back(span_us(i.begin, i.end));
    p.wall_us += step_us.back();
  }
  p.median_step_us = median(step_us);

  std::vector<Interval> busy;  // clipped activity intervals, merged below
  auto add_busy = [&](uint64_t s, uint64_t e, int idx) {
    const uint64_t end = std::min(e, iv[size_t(idx)].end);
    if (end > s) busy.push_back({s, end});
  };

  // Kernels: stats by name, and per-stream lists for the gaps.
  struct Run {
    uint64_t s, e;
    int idx;
  };
  std::map<uint32_t, std::vector<Run>> by_stream;
  std::map<std::string, KernelStat> by_name;
  CategoryStat cats[kNumKernelCategories];
  for (int c = 0; c < kNumKernelCategories; ++c) cats[c].category = KernelCategory(c);
  for (const KernelEvent& k : t.kernels) {
    const int idx = find_interval(iv, k.start_ns);
    if (idx < 0) continue;
    const double d = span_us(k.start_ns, k.end_ns);
    ++p.kernels;
    p.kernel_us += d;
    add_busy(k.start_ns, k.end_ns, idx);
    by_stream[k.stream].push_back({k.start_ns, k.end_ns, idx});
    const std::string dn = kernel_display_name(k.name);
    auto [it, fresh] = by_name.try_emplace(dn);
    KernelStat& ks = it->second;
    if (fresh) {
      ks.name = dn;
      std::copy(k.grid, k.grid + 3, ks.grid);
      std::copy(k.block, k.block + 3, ks.block);
      ks.registers = k.registers;
      ks.smem = k.static_smem + k.dynamic_smem;
      ks.min_us = d;
      ks.max_us = d;
      ks.category = classify_kernel(k.name);
    }
    CategoryStat& cs = cats[int(ks.category)];
    ++cs.count;
    cs.total_us += d;
    ++ks.count;
    ks.total_us += d;
    ks.min_us = std::min(ks.min_us, d);
    ks.max_us = std::max(ks.max_us, d);
  }

  for (const MemcpyEvent& m : t.memcpys) {
    const int idx = find_interval(iv, m.start_ns);
    if (idx < 0) continue;
    add_busy(m.start_ns, m.end_ns, idx);
    by_stream[m.stream].push_back({m.start_ns, m.end_ns, idx});
    p.copy_us += span_us(m.start_ns, m.end_ns);
    if (m.pageable) ++p.pageable_copies;
    switch (m.kind) {
      case CopyKind::H2D: ++p.h2d; p.h2d_bytes += double(m.bytes); break;
      case CopyKind::D2H: ++p.d2h; p.d2h_bytes += double(m.bytes); break;
      case CopyKind::D2D: ++p.d2d; p.d2d_bytes += double(m.bytes); break;
      default: ++p.other_copies; break;
    }
  }
  for (const MemsetEvent& m : t.memsets) {
    const int idx = find_interval(iv, m.start_ns);
    if (idx < 0) continue;
    add_busy(m.start_ns, m.end_ns, idx);
    by_stream[m.stream].push_back({m.start_ns, m.end_ns, idx});
    ++p.memsets;
  }

  // Gaps: idle time between consecutive operations (kernels, copies, memsets) of one stream.
  std::vector<double> gaps;
  for (auto& [stream, runs] : by_stream) {
    std::sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) { return a.s < b.s; });
    // Gap = start of an operation - latest end of those before it in the same step (operations of
    // one stream can overlap in a trace under programmatic dependent launch).
    uint64_t prev_end = 0;
    for (size_t i = 0; i < runs.size(); ++i) {
      // The host's turn between steps is not a launch gap: restart at each step.
      if (i > 0 && runs[i].idx == runs[i - 1].idx) {
        const double g = span_us(prev_end, runs[i].s);
        if (g > kLongGapUs) {
          ++p.long_gaps;
          p.long_gap_us += g;
        } else {
          gaps.push_back(g);
          p.gap_us += g;
        }
        prev_end = std::max(prev_end, runs[i].e);
      } else {
        prev_end = runs[i].e;
      }
    }
  }
  p.median_gap_us = median(gaps);

  // Host syncs: the SYNCHRONIZATION records when the trace has any, else the sync API calls
  // (counting both would count every cudaStreamSynchronize twice).
  const bool have_sync_records = !t.syncs.empty();
  for (const SyncEvent& s : t.syncs) {
    if (!s.blocks_host() || find_interval(iv, s.start_ns) < 0) continue;
    ++p.host_syncs;
    p.host_sync_us += span_us(s.start_ns, s.end_ns);
  }
  for (const ApiEvent& a : t.api) {
    if (find_interval(iv, a.start_ns) < 0) continue;
    const double d = span_us(a.start_ns, a.end_ns);
    if (is_alloc_api(a.name)) {
      ++p.allocs;
      p.alloc_us += d;
    } else if (a.name == "cudaGraphLaunch") {
      ++p.graph_launches;
      p.launch_us += d;
    } else if (is_launch_api(a.name)) {
      ++p.launch_calls;
      p.launch_us += d;
    } else if (is_blocking_copy_api(a.name) || (!have_sync_records && is_sync_api(a.name))) {
      ++p.host_syncs;
      p.host_sync_us += d;
    }
  }

  std::sort(busy.begin(), busy.end(), [](const Interval& a, const Interval& b) { return a.begin < b.begin; });
  uint64_t cur_b = 0, cur_e = 0;
  bool open = false;
  for (const Interval& b : busy) {
    if (open && b.begin <= cur_e) {
      cur_e = std::max(cur_e, b.end);
      continue;
    }
    if (open) p.busy_us += span_us(cur_b, cur_e);
    cur_b = b.begin;
    cur_e = b.end;
    open = true;
  }
  if (open) p.busy_us += span_us(cur_b, cur_e);
  p.busy_pct = p.wall_us > 0 ? 100.0 * p.busy_us / p.wall_us : 0;
  p.gap_pct = p.wall_us > 0 ? 100.0 * p.gap_us / p.wall_us : 0;

  // The hints were noted during decode steps (t.costs): they describe the decode phases' launches
  // only; those noted during the prefill (t.prefill_costs) the prefill's.
  std::map<std::string, const KernelCost*> costs;
  if (name.rfind("decode", 0) == 0)
    for (const KernelCost& c : t.costs) costs[c.name] = &c;
  if (name == "prefill")
    for (const KernelCost& c : t.prefill_costs) costs[c.name] = &c;
  for (auto& [n, ks] : by_name) {
    ks.mean_us = ks.total_us / double(ks.count);
    ks.pct_gpu = p.kernel_us > 0 ? 100.0 * ks.total_us / p.kernel_us : 0;
    annotate_kernel(t, costs, ks);
    if (ks.has_cost) {
      p.hinted_bytes += ks.bytes;
      p.hinted_flops += ks.flops;
      p.hinted_us += ks.total_us;
    }
    p.top_kernels.push_back(ks);
  }
  std::sort(p.top_kernels.begin(), p.top_kernels.end(), [](const KernelStat& a, const KernelStat& b) {
    return a.total_us != b.total_us ? a.total_us > b.total_us : a.name < b.name;
  });
  if (top_n > 0 && p.top_kernels.size() > top_n) p.top_kernels.resize(top_n);

  for (CategoryStat& c : cats) {
    if (c.count == 0) continue;
    c.pct_kernel = p.kernel_us > 0 ? 100.0 * c.total_us / p.kernel_us : 0;
    p.categories.push_back(c);
  }
  std::stable_sort(p.categories.begin(), p.categories.end(),
                   [](const CategoryStat& a, const CategoryStat& b) { return a.total_us > b.total_us; });
  return p;
}

std::vector<RangeStat> range_stats(const Trace& t) {
  std::map<std::string, std::vector<Interval>> groups;
  for (const RangeEvent& r : t.ranges)
    if (r.end_ns > r.start_ns) groups[range_group_name(r.name)].push_back({r.start_ns, r.end_ns});
  if (groups.empty()) return {};
  std::map<uint32_t, uint64_t> launch_time;  // correlation id -> host start of the launching call
  for (const ApiEvent& a : t.api)
    if (a.correlation) launch_time[a.correlation] = a.start_ns;
  std::map<std::string, const KernelCost*> costs, prefill_costs;
  for (const KernelCost& c : t.costs) costs[c.name] = &c;
  for (const KernelCost& c : t.prefill_costs) prefill_costs[c.name] = &c;
  const bool have_sync_records = !t.syncs.empty();

  std::vector<RangeStat> out;
  for (auto& [name, iv] : groups) {
    std::sort(iv.begin(), iv.end(), [](const Interval& a, const Interval& b) { return a.begin < b.begin; });
    RangeStat r;
    r.name = name;
    r.count = int64_t(iv.size());
    for (const Interval& i : iv) r.total_us += span_us(i.begin, i.end);
    r.mean_us = r.total_us / double(r.count);
    auto inside = [&](uint64_t ts) {  // ranges of one name are taken as disjoint
      auto it = std::upper_bound(iv.begin(), iv.end(), ts, [](uint64_t x, const Interval& i) { return x < i.begin; });
      return it != iv.begin() && ts < std::prev(it)->end;
    };
    for (const KernelEvent& k : t.kernels) {
      auto lt = k.correlation ? launch_time.find(k.correlation) : launch_time.end();
      if (!inside(lt != launch_time.end() ? lt->second : k.start_ns)) continue;
      ++r.kernels;
      r.kernel_us += span_us(k.start_ns, k.end_ns);
      // The hints are per-launch means of the DECODE step's launches (t.costs) or of the
      // prefill's (t.prefill_costs): other ranges launch the same kernels on other shapes, so
      // they get no byte figure.
      const StepRange kind = step_range_kind(name);
      if (kind == StepRange::NONE) continue;
      const auto& table = kind == StepRange::DECODE ? costs : prefill_costs;
      auto c = table.find(kernel_display_name(k.name));
      if (c != table.end()) r.bytes += c->second->bytes_per_launch();
    }
    for (const MemcpyEvent& m : t.memcpys) {
      if (!inside(m.start_ns)) continue;
      ++r.copies;
      r.copy_bytes += double(m.bytes);
    }
    for (const SyncEvent& s : t.syncs)
      if (s.blocks_host() && inside(s.start_ns)) ++r.host_syncs;
    for (const ApiEvent& a : t.api) {
      if (!inside(a.start_ns)) continue;
      if (is_alloc_api(a.name)) ++r.allocs;
      else if (a.name == "cudaGraphLaunch") ++r.graph_launches;
      else if (is_launch_api(a.name)) ++r.launch_calls;
      else if (is_blocking_copy_api(a.name) || (!have_sync_records && is_sync_api(a.name))) ++r.host_syncs;
    }
    out.push_back(std::move(r));
  }
  std::stable_sort(out.begin(), out.end(), [](const RangeStat& a, const RangeStat& b) { return a.total_us > b.total_us; });
  return out;
}

// The prefill section over the "prefill" phase's intervals (`scope`).
PrefillStats prefill_stats(const Trace& t, const std::vector<Interval>& scope) {
  PrefillStats s;
  for (const RangeEvent& r : t.ranges) {
    if (step_range_kind(r.name) != StepRange::PREFILL) continue;
    s.present = true;
    ++s.ranges;
    s.wall_us += span_us(r.start_ns, r.end_ns);
  }
  if (!s.present) return s;
  s.tokens = t.n_prompt;
  s.tokens_per_s = s.tokens > 0 && s.wall_us > 0 ? double(s.tokens) / (s.wall_us * 1e-6) : 0;
  if (scope.empty()) return s;

  // The kernels by name, every one of them, with the prefill's hints (compute() picks
  // t.prefill_costs for the phase "prefill").
  PhaseStats p = compute(t, scope, "prefill", 0);
  s.kernels = p.kernels;
  s.kernel_us = p.kernel_us;
  s.busy_us = p.busy_us;
  s.hinted_bytes = p.hinted_bytes;
  s.hinted_flops = p.hinted_flops;
  s.hinted_us = p.hinted_us;
  s.kernel_list = std::move(p.top_kernels);
  for (const KernelStat& k : s.kernel_list) {
    if (!is_layout_kernel(k.name) && !is_splitk_reduce_kernel(k.name)) continue;
    s.layout_kernels.push_back(k);
    s.layout_us += k.total_us;
  }
  s.layout_pct = s.kernel_us > 0 ? 100.0 * s.layout_us / s.kernel_us : 0;

  // GPU idle: per scope interval, the operations that start in it, merged over every stream.
  std::vector<std::vector<Interval>> ops(scope.size());
  auto add = [&](uint64_t b, uint64_t e) {
    const int idx = find_interval(scope, b);
    if (idx >= 0) ops[size_t(idx)].push_back({b, std::max(b, e)});
  };
  for (const KernelEvent& k : t.kernels) add(k.start_ns, k.end_ns);
  for (const MemcpyEvent& m : t.memcpys) add(m.start_ns, m.end_ns);
  for (const MemsetEvent& m : t.memsets) add(m.start_ns, m.end_ns);
  std::vector<double> idle;
  for (std::vector<Interval>& v : ops) {
    if (v.empty()) continue;
    std::sort(v.begin(), v.end(), [](const Interval& a, const Interval& b) { return a.begin < b.begin; });
    uint64_t first = v.front().begin, reach = v.front().end;
    for (const Interval& o : v) {
      if (o.begin > reach) {
        const double g = span_us(reach, o.begin);
        idle.push_back(g);
        s.idle_us += g;
        if (g > kLongGapUs) {
          ++s.long_idle_gaps;
          s.long_idle_us += g;
        }
        s.max_idle_us = std::max(s.max_idle_us, g);
      }
      reach = std::max(reach, o.end);
    }
    s.gpu_span_us += span_us(first, reach);
  }
  s.idle_gaps = int64_t(idle.size());
  s.median_idle_us = median(idle);
  return s;
}

}  // namespace

TraceWindow trace_window(const Trace& t) {
  uint64_t lo = UINT64_MAX, hi = 0;
  auto see = [&](uint64_t s, uint64_t e) {
    lo = std::min(lo, s);
    hi = std::max(hi, e);
  };
  for (const auto& k : t.kernels) see(k.start_ns, k.end_ns);
  for (const auto& m : t.memcpys) see(m.start_ns, m.end_ns);
  for (const auto& m : t.memsets) see(m.start_ns, m.end_ns);
  for (const auto& s : t.syncs) see(s.start_ns, s.end_ns);
  for (const auto& a : t.api) see(a.start_ns, a.end_ns);
  for (const auto& s : t.steps) see(s.t_ns, s.t_ns);
  for (const auto& r : t.ranges) see(r.start_ns, r.end_ns);
  TraceWindow w;
  w.begin_ns = t.begin_ns ? t.begin_ns : (lo == UINT64_MAX ? 0 : lo);
  // +1: an interval is [begin, end), so the last event's start must lie before the end.
  w.end_ns = std::max(t.end_ns, hi == 0 ? w.begin_ns : hi + 1);
  return w;
}

TraceAnalysis analyze(const Trace& t, size_t top_n) {
  const TraceWindow win = trace_window(t);
  const uint64_t begin = win.begin_ns;
  const uint64_t end = win.end_ns;

  TraceAnalysis a;
  std::vector<StepMark> marks = step_marks_from_ranges(t.ranges);
  a.step_source = "nvtx";
  if (marks.empty()) {
    marks = t.steps;
    a.step_source = marks.empty() ? "" : "markers";
  }
  std::stable_sort(marks.begin(), marks.end(), [](const StepMark& a, const StepMark& b) { return a.t_ns < b.t_ns; });

  a.overall = compute(t, {Interval{begin, end}}, "all", top_n);
  a.ranges = range_stats(t);
  if (marks.empty()) return a;
  // The whole window as one scope, its per-step figures over every marked step (mean, not median).
  a.overall.n_steps = int64_t(marks.size());
  a.overall.median_step_us = a.overall.wall_us / double(marks.size());

  std::vector<std::string> order;
  std::map<std::string, std::vector<Interval>> by_phase;
  for (size_t i = 0; i < marks.size(); ++i) {
    const uint64_t e = i + 1 < marks.size() ? marks[i + 1].t_ns : end;
    if (!by_phase.count(marks[i].phase)) order.push_back(marks[i].phase);
    if (e > marks[i].t_ns) by_phase[marks[i].phase].push_back({marks[i].t_ns, e});
  }
  for (const std::string& ph : order) {
    PhaseStats p = compute(t, by_phase[ph], ph, top_n);
    a.phases.push_back(std::move(p));
  }
  if (a.step_source == "nvtx") a.prefill = prefill_stats(t, by_phase["prefill"]);
  return a;
}

// ---- report -----------------------------------------------------------------------------------

namespace {

std::string bytes_str(double b) {
  if (b >= 1e9) return str_printf("%.2f GB", b / 1e9);
  if (b >= 1e6) return str_printf("%.2f MB", b / 1e6);
  if (b >= 1e3) return str_printf("%.1f kB", b / 1e3);
  return str_printf("%.0f B", b);
}

std::string phase_row(const PhaseStats& p) {
  return str_printf("  %-13s %6lld %10.1f %6.1f %10.1f %10.1f %10.2f %9.2f %7.2f %7.2f %8.2f %8.2f\n", p.phase.c_str(),
             (long long)p.n_steps, p.median_step_us, p.busy_pct, p.per_step(double(p.kernels)), p.gap_pct,
             p.median_gap_us, p.per_step(double(p.host_syncs)), p.per_step(double(p.h2d)),
             p.per_step(double(p.d2h)), p.per_step(double(p.allocs)), p.per_step(double(p.graph_launches)));
}

// "layout" / "split-K reduce" for a kernel the prefill section flags, else "".
const char* prefill_flag(const std::string& name) {
  if (is_splitk_reduce_kernel(name)) return "split-K reduce";
  if (is_layout_kernel(name)) return "layout";
  return "";
}

// Kernels the prefill table lists; the rest get one summary line (--json lists every kernel).
constexpr size_t kPrefillRows = 40;

std::string format_prefill(const Trace& t, const PrefillStats& p) {
  std::string s = "\n  prefill (NVTX range \"prefill\"";
  s += p.ranges > 1 ? str_printf(", %lld ranges)", (long long)p.ranges) : ")";
  if (p.tokens > 0)
    s += str_printf(": %lld tokens in %.2f ms = %.0f tok/s", (long long)p.tokens, p.wall_us / 1e3, p.tokens_per_s);
  else
    s += str_printf(": %.2f ms", p.wall_us / 1e3);
  s += str_printf("; %lld kernels (%zu distinct), %.2f ms of kernel time, GPU busy %.2f ms\n", (long long)p.kernels,
                  p.kernel_list.size(), p.kernel_us / 1e3, p.busy_us / 1e3);
  if (p.kernels > 0) {
    s += str_printf("  GPU idle between the prefill's kernels/copies: %.1f us of its %.1f us on the GPU (%.1f%%) in %lld "
                    "gaps, median %.2f us, largest %.1f us",
                    p.idle_us, p.gpu_span_us, p.gpu_span_us > 0 ? 100.0 * p.idle_us / p.gpu_span_us : 0.0,
                    (long long)p.idle_gaps, p.median_idle_us, p.max_idle_us);
    if (p.long_idle_gaps > 0)
      s += str_printf("; %lld over %.0f us (%.1f us: host work, e.g. building GEMM plans on a first pass)",
                      (long long)p.long_idle_gaps, kLongGapUs, p.long_idle_us);
    s += "\n";
  }
  if (p.hinted_us > 0)
    s += str_printf("  launch-cost hints (the prefill's own launches): %s and %.3f GFLOP in %.1f us of hinted kernels\n",
                    bytes_str(p.hinted_bytes).c_str(), p.hinted_flops / 1e9, p.hinted_us);
  // The flag line: layout-change kernels (transposes, reformats, conversions, copies) and split-K
  // reductions, which a well-laid-out prefill does not need.
  if (p.layout_kernels.empty()) {
    s += str_printf("  layout kernels (transpose/reformat/convert/copy/split-K reduce): none among the %zu distinct kernels\n",
                    p.kernel_list.size());
  } else {
    s += str_printf("  layout kernels (transpose/reformat/convert/copy/split-K reduce): %.1f us = %.1f%% of the prefill's "
                    "kernel time:",
                    p.layout_us, p.layout_pct);
    const char* sep = " ";
    for (const KernelStat& k : p.layout_kernels) {
      s += str_printf("%s%s (%s, %lld calls, %.1f us)", sep, k.name.c_str(), prefill_flag(k.name), (long long)k.count,
                      k.total_us);
      sep = ", ";
    }
    s += "\n";
  }
  if (p.kernel_list.empty()) return s;
  bool any_cost = false;
  for (const KernelStat& k : p.kernel_list) any_cost |= k.has_cost;
  s += str_printf("\n  prefill kernels (by total time; %% of the prefill's kernel time%s)\n",
                  any_cost ? "; GB/s and TFLOP/s from the prefill's launch-cost hints" : "");
  s += "     #  time%   total ms    calls   mean us    GB/s  TFLOP/s  grid x block  flag            name\n";
  int rank = 0;
  double rest_us = 0;
  size_t rest = 0;
  for (const KernelStat& k : p.kernel_list) {
    if (size_t(rank) >= kPrefillRows) {
      ++rest;
      rest_us += k.total_us;
      continue;
    }
    std::string launch = str_printf("%dx%dx%d x %dx%dx%d", k.grid[0], k.grid[1], k.grid[2], k.block[0], k.block[1], k.block[2]);
    std::string name = k.name.size() > 90 ? k.name.substr(0, 87) + "..." : k.name;
    s += str_printf("  %4d %6.1f %10.3f %8lld %9.2f %7s %8s  %s  %-14s  %s\n", ++rank, k.pct_gpu, k.total_us / 1e3,
                    (long long)k.count, k.mean_us, k.has_cost ? str_printf("%.0f", k.gbps).c_str() : "-",
                    k.has_cost ? str_printf("%.2f", k.tflops).c_str() : "-", launch.c_str(), prefill_flag(k.name),
                    name.c_str());
  }
  if (rest > 0)
    s += str_printf("     (%zu more kernels, %.1f us: --json lists every one)\n", rest, rest_us);
  if (!any_cost && t.source == "engine")
    s += "     (no launch-cost hints for the prefill in this trace: cuBLASLt's kernels never have any)\n";
  return s;
}

}  // namespace

std::string format_report(const Trace& t, const TraceAnalysis& a) {
  std::string s;
  s += str_printf("fathom profile: %s%s%s\n", t.model.empty() ? "(unnamed run)" : t.model.c_str(),
           t.device.empty() ? "" : " on ", t.device.c_str());
  if (t.n_prompt > 0 || t.n_decode > 0)
    s += str_printf("  prompt %lld tokens (one prefill step), %lld greedy decode steps\n", (long long)t.n_prompt,
             (long long)t.n_decode);
  const PhaseStats& o = a.overall;
  s += str_printf("  window %.2f ms: %lld kernels (%.2f ms of kernel time), GPU busy %.1f%%, %lld memcpys, %lld host syncs, %lld allocations\n",
           o.wall_us / 1e3, (long long)o.kernels, o.kernel_us / 1e3, o.busy_pct,
           (long long)(o.h2d + o.d2h + o.d2d + o.other_copies), (long long)o.host_syncs, (long long)o.allocs);
  if (!t.api.empty()) {
    std::map<std::string, std::pair<int64_t, double>> calls;  // name -> (count, host us)
    for (const ApiEvent& e : t.api) {
      auto& c = calls[e.name];
      ++c.first;
      c.second += span_us(e.start_ns, e.end_ns);
    }
    s += "  runtime API calls (count, host time):";
    const char* sep = " ";
    for (const auto& [name, c] : calls) {
      s += str_printf("%s%s %lld (%.0f us)", sep, name.c_str(), (long long)c.first, c.second);
      sep = ", ";
    }
    s += "\n";
  }
  if (t.dropped_records)
    s += str_printf("  WARNING: CUPTI dropped %llu records (buffers full): counts below are low\n",
             (unsigned long long)t.dropped_records);
  s += "\n" + str_printf("  %-13s %6s %10s %6s %10s %10s %10s %9s %7s %7s %8s %8s\n", "phase", "steps", "median us",
                  "busy%", "kern/step", "idle-gap%", "med-gap us", "syncs/st", "H2D/st", "D2H/st", "alloc/st",
                  "graph/st");
  for (const PhaseStats& p : a.phases) s += phase_row(p);
  s += phase_row(o);
  s += str_printf("  (idle-gap%%: GPU idle between consecutive kernels/copies of a stream, inside a step, as %% of the step;\n"
           "   gaps over %.0f us are host work, not launch overhead, and are left out)\n", kLongGapUs);
  if (a.step_source == "nvtx")
    s += "  (steps from the NVTX ranges \"prefill\" / \"decode step N\": each from its range's start to the next)\n";
  else if (a.step_source == "markers")
    s += "  (steps from the profiler's host markers; no NVTX step ranges in the trace)\n";

  const PhaseStats& st = a.steady();
  if (st.n_steps > 0 && st.phase == "decode") {
    s += "\n";
    s += str_printf("  decode per token: %.1f us (%.1f tok/s), kernels %.1f us, GPU busy %.1f us; copies H2D %s, D2H %s, D2D %s\n",
             st.median_step_us, st.median_step_us > 0 ? 1e6 / st.median_step_us : 0.0, st.per_step(st.kernel_us),
             st.per_step(st.busy_us),
             bytes_str(st.per_step(st.h2d_bytes)).c_str(), bytes_str(st.per_step(st.d2h_bytes)).c_str(),
             bytes_str(st.per_step(st.d2d_bytes)).c_str());
    if (t.weight_bytes > 0 && st.median_step_us > 0) {
      const double gbps = t.weight_bytes / (st.median_step_us * 1e-6) / 1e9;
      s += str_printf("  weights %s/token over the median step = %.0f GB/s", bytes_str(t.weight_bytes).c_str(), gbps);
      if (t.read_gbps > 0)
        s += str_printf(" = %.1f%% of the measured %.0f GB/s read ceiling (ideal step %.1f us)", 100.0 * gbps / t.read_gbps,
                 t.read_gbps, t.weight_bytes / (t.read_gbps * 1e9) * 1e6);
      s += "\n";
    }
    if (st.hinted_us > 0) {
      const double gbps = st.hinted_bytes / (st.hinted_us * 1e-6) / 1e9;
      s += str_printf("  launch-cost hints: %s and %.3f GFLOP per token in %.1f us of hinted kernels = %.0f GB/s",
                      bytes_str(st.per_step(st.hinted_bytes)).c_str(), st.per_step(st.hinted_flops) / 1e9,
                      st.per_step(st.hinted_us), gbps);
      if (t.read_gbps > 0) s += str_printf(" (%.1f%% of the read ceiling)", 100.0 * gbps / t.read_gbps);
      s += "\n";
    }
  }

  if (!st.categories.empty()) {
    const bool per_token = st.n_steps > 0 && st.phase == "decode";
    s += str_printf("\n  time by category (%s)\n", st.phase.c_str());
    s += str_printf("    %-14s %8s %10s %7s%s\n", "category", "calls", "total us", "kern%", per_token ? "  us/token" : "");
    for (const CategoryStat& c : st.categories) {
      s += str_printf("    %-14s %8lld %10.1f %7.1f", kernel_category_name(c.category), (long long)c.count, c.total_us,
                      c.pct_kernel);
      if (per_token) s += str_printf(" %10.2f", st.per_step(c.total_us));
      s += "\n";
    }
  }

  s += str_printf("\n  top kernels (%s, by total time)\n", st.phase.c_str());
  s += "     #  time%   total ms    calls  calls/st   mean us    min us    max us  regs   smem  grid x block  name\n";
  int rank = 0;
  for (const KernelStat& k : st.top_kernels) {
    std::string launch = str_printf("%dx%dx%d x %dx%dx%d", k.grid[0], k.grid[1], k.grid[2], k.block[0], k.block[1], k.block[2]);
    std::string name = k.name.size() > 90 ? k.name.substr(0, 87) + "..." : k.name;
    s += str_printf("  %4d %6.1f %10.3f %8lld %9.1f %9.2f %9.2f %9.2f %5d %6d  %s  %s\n", ++rank, k.pct_gpu,
             k.total_us / 1e3, (long long)k.count, st.per_step(double(k.count)), k.mean_us, k.min_us, k.max_us,
             k.registers, k.smem, launch.c_str(), name.c_str());
  }
  if (st.top_kernels.empty()) s += "     (no kernels)\n";

  // Achieved bandwidth / flop rate (launch-cost hints) and theoretical occupancy per kernel.
  bool any_cost = false, any_occ = false;
  for (const KernelStat& k : st.top_kernels) {
    any_cost |= k.has_cost;
    any_occ |= k.occupancy.blocks_per_sm > 0;
  }
  if (any_cost || any_occ) {
    s += str_printf("\n  kernel efficiency (%s; GB/s and TFLOP/s from fathom's launch-cost hints over the kernel time;\n"
                    "   %% of the measured %s read and %s bf16 GEMM ceilings; theoretical occupancy)\n",
                    st.phase.c_str(), t.read_gbps > 0 ? str_printf("%.0f GB/s", t.read_gbps).c_str() : "(unmeasured)",
                    t.bf16_tflops > 0 ? str_printf("%.0f TFLOP/s", t.bf16_tflops).c_str() : "(unmeasured)");
    s += "     #    us/call   bytes/call   GB/s   %read  TFLOP/s  %bf16   occ%  blk/SM  limiter     waves  name\n";
    rank = 0;
    for (const KernelStat& k : st.top_kernels) {
      std::string row = str_printf("  %4d %10.2f", ++rank, k.mean_us);
      if (k.has_cost) {
        row += str_printf(" %12s %6.0f %7s %8.2f %6s", bytes_str(k.bytes / double(k.count)).c_str(), k.gbps,
                          k.pct_bw > 0 ? str_printf("%.1f", k.pct_bw).c_str() : "-", k.tflops,
                          k.pct_flops > 0 ? str_printf("%.1f", k.pct_flops).c_str() : "-");
      } else {
        row += str_printf(" %12s %6s %7s %8s %6s", "-", "-", "-", "-", "-");
      }
      if (k.occupancy.blocks_per_sm > 0)
        row += str_printf(" %6.1f %7d  %-9s %7.2f", k.occupancy.pct, k.occupancy.blocks_per_sm,
                          occupancy_limiter_name(k.occupancy.limiter), k.waves);
      else
        row += str_printf(" %6s %7s  %-9s %7s", "-", "-", "-", "-");
      std::string name = k.name.size() > 70 ? k.name.substr(0, 67) + "..." : k.name;
      s += row + "  " + name + "\n";
    }
    if (!any_cost) s += "     (no launch-cost hints in this trace: GB/s and TFLOP/s need fathom's own launchers)\n";
  }

  if (!a.ranges.empty()) {
    s += "\n  NVTX ranges (per range; kernels by their launching call's host time)\n";
    s += str_printf("    %-28s %7s %10s %9s %9s %8s %7s %7s %7s %11s %11s\n", "range", "count", "mean us", "kernels",
                    "launches", "graphs", "syncs", "allocs", "copies", "copy bytes", "kern bytes");
    for (const RangeStat& r : a.ranges) {
      std::string name = r.name.size() > 28 ? r.name.substr(0, 25) + "..." : r.name;
      s += str_printf("    %-28s %7lld %10.1f %9.1f %9.1f %8.2f %7.2f %7.2f %7.2f %11s %11s\n", name.c_str(),
                      (long long)r.count, r.mean_us, r.per_range(double(r.kernels)),
                      r.per_range(double(r.launch_calls)), r.per_range(double(r.graph_launches)),
                      r.per_range(double(r.host_syncs)), r.per_range(double(r.allocs)), r.per_range(double(r.copies)),
                      bytes_str(r.per_range(r.copy_bytes)).c_str(),
                      r.bytes > 0 ? bytes_str(r.per_range(r.bytes)).c_str() : "-");
    }
  }
  if (a.prefill.present) s += format_prefill(t, a.prefill);
  return s;
}

namespace {

json kernel_json(const KernelStat& s) {
  return {{"name", s.name}, {"count", s.count}, {"total_us", s.total_us}, {"mean_us", s.mean_us},
                 {"min_us", s.min_us}, {"max_us", s.max_us}, {"pct_gpu", s.pct_gpu},
                 {"grid", {s.grid[0], s.grid[1], s.grid[2]}}, {"block", {s.block[0], s.block[1], s.block[2]}},
                 {"registers", s.registers}, {"smem", s.smem}, {"category", kernel_category_name(s.category)},
                 {"has_cost", s.has_cost}, {"bytes", s.bytes}, {"flops", s.flops}, {"gbps", s.gbps},
                 {"tflops", s.tflops}, {"pct_bw", s.pct_bw}, {"pct_flops", s.pct_flops},
                 {"occupancy", {{"pct", s.occupancy.pct}, {"blocks_per_sm", s.occupancy.blocks_per_sm},
                                {"warps_per_sm", s.occupancy.warps_per_sm},
                                {"limiter", occupancy_limiter_name(s.occupancy.limiter)},
                                {"limit_warps", s.occupancy.limit_warps}, {"limit_blocks", s.occupancy.limit_blocks},
                                {"limit_regs", s.occupancy.limit_regs}, {"limit_smem", s.occupancy.limit_smem}}},
                 {"waves", s.waves}};
}

json phase_json(const PhaseStats& p) {
  json k = json::array();
  for (const KernelStat& s : p.top_kernels) k.push_back(kernel_json(s));
  json c = json::array();
  for (const CategoryStat& s : p.categories)
    c.push_back({{"category", kernel_category_name(s.category)}, {"count", s.count}, {"total_us", s.total_us},
                 {"pct_kernel", s.pct_kernel}, {"per_step_us", p.per_step(s.total_us)}});
  return {{"phase", p.phase}, {"n_steps", p.n_steps}, {"wall_us", p.wall_us}, {"median_step_us", p.median_step_us},
          {"kernel_us", p.kernel_us}, {"busy_us", p.busy_us}, {"busy_pct", p.busy_pct}, {"kernels", p.kernels},
          {"gap_us", p.gap_us}, {"gap_pct", p.gap_pct}, {"median_gap_us", p.median_gap_us},
          {"long_gaps", p.long_gaps}, {"long_gap_us", p.long_gap_us},
          {"host_syncs", p.host_syncs}, {"host_sync_us", p.host_sync_us}, {"h2d", p.h2d}, {"d2h", p.d2h},
          {"d2d", p.d2d}, {"other_copies", p.other_copies}, {"pageable_copies", p.pageable_copies},
          {"h2d_bytes", p.h2d_bytes}, {"d2h_bytes", p.d2h_bytes}, {"d2d_bytes", p.d2d_bytes},
          {"copy_us", p.copy_us}, {"memsets", p.memsets}, {"allocs", p.allocs}, {"alloc_us", p.alloc_us},
          {"graph_launches", p.graph_launches}, {"launch_calls", p.launch_calls},
          {"launch_us", p.launch_us}, {"hinted_bytes", p.hinted_bytes}, {"hinted_flops", p.hinted_flops},
          {"hinted_us", p.hinted_us}, {"top_kernels", k}, {"categories", c}};
}

json prefill_json(const PrefillStats& p) {
  json k = json::array();
  for (const KernelStat& s : p.kernel_list) {
    json e = kernel_json(s);
    e["flag"] = prefill_flag(s.name);
    k.push_back(std::move(e));
  }
  json l = json::array();
  for (const KernelStat& s : p.layout_kernels)
    l.push_back({{"name", s.name}, {"flag", prefill_flag(s.name)}, {"count", s.count}, {"total_us", s.total_us},
                 {"pct_gpu", s.pct_gpu}});
  return {{"ranges", p.ranges}, {"tokens", p.tokens}, {"wall_us", p.wall_us}, {"tokens_per_s", p.tokens_per_s},
          {"kernels", p.kernels}, {"kernel_us", p.kernel_us}, {"busy_us", p.busy_us},
          {"gpu_span_us", p.gpu_span_us}, {"idle_us", p.idle_us}, {"idle_gaps", p.idle_gaps},
          {"median_idle_us", p.median_idle_us}, {"max_idle_us", p.max_idle_us},
          {"long_idle_gaps", p.long_idle_gaps}, {"long_idle_us", p.long_idle_us},
          {"hinted_bytes", p.hinted_bytes}, {"hinted_flops", p.hinted_flops}, {"hinted_us", p.hinted_us},
          {"kernel_list", k}, {"layout_kernels", l}, {"layout_us", p.layout_us}, {"layout_pct", p.layout_pct}};
}

}  // namespace

std::string analysis_to_json(const TraceAnalysis& a, int indent) {
  json j;
  j["overall"] = phase_json(a.overall);
  j["phases"] = json::array();
  for (const PhaseStats& p : a.phases) j["phases"].push_back(phase_json(p));
  j["step_source"] = a.step_source;
  j["ranges"] = json::array();
  for (const RangeStat& r : a.ranges)
    j["ranges"].push_back({{"name", r.name}, {"count", r.count}, {"total_us", r.total_us}, {"mean_us", r.mean_us},
                           {"kernels", r.kernels}, {"kernel_us", r.kernel_us}, {"launch_calls", r.launch_calls},
                           {"graph_launches", r.graph_launches}, {"host_syncs", r.host_syncs}, {"allocs", r.allocs},
                           {"copies", r.copies}, {"copy_bytes", r.copy_bytes}, {"bytes", r.bytes}});
  if (a.prefill.present) j["prefill"] = prefill_json(a.prefill);
  return j.dump(indent);
}

// ---- Chrome trace -----------------------------------------------------------------------------

std::string trace_to_chrome_json(const Trace& t, int indent) {
  uint64_t origin = t.begin_ns;
  if (origin == 0) {
    origin = UINT64_MAX;
    for (const auto& k : t.kernels) origin = std::min(origin, k.start_ns);
    for (const auto& m : t.memcpys) origin = std::min(origin, m.start_ns);
    for (const auto& m : t.memsets) origin = std::min(origin, m.start_ns);
    for (const auto& a : t.api) origin = std::min(origin, a.start_ns);
    for (const auto& s : t.steps) origin = std::min(origin, s.t_ns);
    for (const auto& r : t.ranges) origin = std::min(origin, r.start_ns);
    if (origin == UINT64_MAX) origin = 0;
  }
  // Microseconds from the origin; events before it (a window set after they began) clamp to 0.
  auto ts = [&](uint64_t ns) { return ns > origin ? double(ns - origin) * 1e-3 : 0.0; };
  auto dur = [&](uint64_t s, uint64_t e) { return e > s ? double(e - s) * 1e-3 : 0.0; };
  constexpr int kGpuPid = 0, kHostPid = 1, kStepTid = 0, kApiTid = 1, kNvtxTid = 2;

  json ev = json::array();
  auto meta = [&](const char* what, int pid, int64_t tid, const std::string& name) {
    json m = {{"ph", "M"}, {"name", what}, {"pid", pid}, {"args", {{"name", name}}}};
    if (tid >= 0) m["tid"] = tid;
    ev.push_back(std::move(m));
  };
  meta("process_name", kGpuPid, -1, t.device.empty() ? std::string("GPU") : "GPU: " + t.device);
  std::map<uint32_t, bool> streams;
  for (const auto& k : t.kernels) streams[k.stream] = true;
  for (const auto& m : t.memcpys) streams[m.stream] = true;
  for (const auto& m : t.memsets) streams[m.stream] = true;
  for (const auto& [st, _] : streams) meta("thread_name", kGpuPid, st, str_cat("stream ", st));
  if (!t.steps.empty() || !t.api.empty()) {
    meta("process_name", kHostPid, -1, "host");
    if (!t.steps.empty()) meta("thread_name", kHostPid, kStepTid, "steps");
    if (!t.api.empty()) meta("thread_name", kHostPid, kApiTid, "runtime API");
  }
  if (!t.ranges.empty()) {
    if (t.steps.empty() && t.api.empty()) meta("process_name", kHostPid, -1, "host");
    meta("thread_name", kHostPid, kNvtxTid, "NVTX");
  }
  for (const RangeEvent& r : t.ranges)
    ev.push_back({{"ph", "X"}, {"cat", "nvtx"}, {"name", r.name}, {"pid", kHostPid}, {"tid", kNvtxTid},
                  {"ts", ts(r.start_ns)}, {"dur", dur(r.start_ns, r.end_ns)}, {"args", {{"domain", r.domain}}}});

  for (const KernelEvent& k : t.kernels)
    ev.push_back({{"ph", "X"}, {"cat", "kernel"}, {"name", kernel_display_name(k.name)}, {"pid", kGpuPid},
                  {"tid", k.stream}, {"ts", ts(k.start_ns)}, {"dur", dur(k.start_ns, k.end_ns)},
                  {"args",
                   {{"grid", {k.grid[0], k.grid[1], k.grid[2]}}, {"block", {k.block[0], k.block[1], k.block[2]}},
                    {"registers", k.registers}, {"smem", k.static_smem + k.dynamic_smem},
                    {"static_smem", k.static_smem}, {"dynamic_smem", k.dynamic_smem},
                    {"category", kernel_category_name(classify_kernel(k.name))}, {"graph_id", k.graph_id},
                    {"demangled", k.name}}}});
  for (const MemcpyEvent& m : t.memcpys)
    ev.push_back({{"ph", "X"}, {"cat", "memcpy"}, {"name", str_cat("memcpy ", copy_kind_name(m.kind))},
                  {"pid", kGpuPid}, {"tid", m.stream}, {"ts", ts(m.start_ns)}, {"dur", dur(m.start_ns, m.end_ns)},
                  {"args", {{"bytes", m.bytes}, {"kind", copy_kind_name(m.kind)}, {"pageable", m.pageable},
                            {"category", "copy/memset"}}}});
  for (const MemsetEvent& m : t.memsets)
    ev.push_back({{"ph", "X"}, {"cat", "memset"}, {"name", "memset"}, {"pid", kGpuPid}, {"tid", m.stream},
                  {"ts", ts(m.start_ns)}, {"dur", dur(m.start_ns, m.end_ns)},
                  {"args", {{"bytes", m.bytes}, {"category", "copy/memset"}}}});
  for (const ApiEvent& a : t.api)
    ev.push_back({{"ph", "X"}, {"cat", "api"}, {"name", a.name}, {"pid", kHostPid}, {"tid", kApiTid},
                  {"ts", ts(a.start_ns)}, {"dur", dur(a.start_ns, a.end_ns)}});

  // Steps: each lasts until the next mark, the last one until the window's end.
  std::vector<StepMark> marks = t.steps;
  std::stable_sort(marks.begin(), marks.end(), [](const StepMark& a, const StepMark& b) { return a.t_ns < b.t_ns; });
  uint64_t last = t.end_ns;
  for (const auto& k : t.kernels) last = std::max(last, k.end_ns);
  for (const auto& m : t.memcpys) last = std::max(last, m.end_ns);
  for (const auto& m : t.memsets) last = std::max(last, m.end_ns);
  for (const auto& a : t.api) last = std::max(last, a.end_ns);
  for (size_t i = 0; i < marks.size(); ++i) {
    const uint64_t e = i + 1 < marks.size() ? marks[i + 1].t_ns : std::max(last, marks[i].t_ns);
    ev.push_back({{"ph", "X"}, {"cat", "step"}, {"name", marks[i].phase}, {"pid", kHostPid}, {"tid", kStepTid},
                  {"ts", ts(marks[i].t_ns)}, {"dur", dur(marks[i].t_ns, e)}, {"args", {{"step", i}}}});
  }

  json j = {{"traceEvents", std::move(ev)}, {"displayTimeUnit", "ns"},
            {"otherData", {{"source", t.source}, {"device", t.device}, {"model", t.model}}}};
  return j.dump(indent);
}

}  // namespace fathom
