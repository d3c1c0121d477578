// `fathom quantize IN.gguf OUT.gguf TYPE`: re-encodes the weight matrices of a GGUF model.
//
// Every tensor is either copied byte for byte (tensors the recipe leaves alone, and tensors that
// already have their target type) or dequantized to fp32 row by row and quantized to its target
// type (src/quant/recipe.h says which type each tensor gets). Metadata is copied in order, with
// general.file_type and general.quantization_version set. Rows are spread over threads; the
// output does not depend on the thread count.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "cli/args.h"
#include "cli/command.h"
#include "fathom/error.h"
#include "fathom/gguf.h"
#include "fathom/quant.h"
#include "quant/recipe.h"

namespace {

using fathom::GgmlType;

// Refuses to write over the input: the writer replaces OUT by rename, which would leave the
// mapped input intact but delete the user's only copy of it on success. Same inode = same file,
// whatever the path spelling (symlinks, hard links, "./").
void check_not_same_file(const std::string& in, const std::string& out) {
  struct stat si {}, so {};
  FATHOM_CHECK(stat(in.c_str(), &si) == 0, "cannot open input '", in, "': ", std::strerror(errno));
  if (stat(out.c_str(), &so) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
    fathom::fail("output '", out, "' is the same file as input '", in,
                 "'; refusing to overwrite the model being read: choose another output path");
}

// Progress on stderr: a redrawn bar on a terminal, a line per 10% otherwise (logs stay short).
class Progress {
 public:
  explicit Progress(uint64_t total) : total_(total), tty_(isatty(STDERR_FILENO) != 0) {}
  void update(uint64_t done, size_t index, size_t count, const std::string& what) {
    const int pct = total_ == 0 ? 100 : static_cast<int>(100 * std::min(done, total_) / total_);
    if (tty_) {
      constexpr int kWidth = 30;
      const int filled = pct * kWidth / 100;
      std::fprintf(stderr, "\r[%s%s] %3d%% %zu/%zu %-60.60s", std::string(filled, '#').c_str(),
                   std::string(kWidth - filled, '.').c_str(), pct, index, count, what.c_str());
      std::fflush(stderr);
    } else if (pct / 10 > last_decile_) {
      last_decile_ = pct / 10;
      std::fprintf(stderr, "quantize: %3d%% (%zu/%zu tensors) %s\n", pct, index, count, what.c_str());
    }
  }
  void finish() {
    if (tty_) std::fprintf(stderr, "\n");
  }

 private:
  uint64_t total_;
  bool tty_;
  int last_decile_ = -1;
};

// Rows handed to a worker at a time: few atomics, yet small tensors still spread over threads.
constexpr int64_t kChunk = 16;

// Converts a (rows, cols) tensor of type `src_type` into `dst_type`, rows split over threads.
void convert_rows(const fathom::GgufTensorInfo& t, GgmlType dst_type, uint8_t* dst, int n_threads) {
  const int64_t rows = t.rows(), cols = t.cols();
  const size_t src_row_bytes = fathom::ggml_row_bytes(t.type, cols);
  const size_t dst_row_bytes = fathom::ggml_row_bytes(dst_type, cols);
  std::atomic<int64_t> next{0};
  std::vector<std::string> errors(static_cast<size_t>(n_threads));
  auto work = [&](int tid) {
    try {
      std::vector<float> row(static_cast<size_t>(cols));
      for (int64_t r0 = next.fetch_add(kChunk); r0 < rows; r0 = next.fetch_add(kChunk)) {
        for (int64_t r = r0; r < std::min(rows, r0 + kChunk); ++r) {
          fathom::dequantize_row(t.type, t.data + r * src_row_bytes, row.data(), cols);
          fathom::quantize_row(dst_type, row.data(), dst + r * dst_row_bytes, cols);
        }
      }
    } catch (const std::exception& e) {
      errors[static_cast<size_t>(tid)] = e.what();
    }
  };
  const int n = static_cast<int>(std::min<int64_t>(n_threads, (rows + kChunk - 1) / kChunk));
  std::vector<std::thread> pool;
  for (int i = 1; i < n; ++i) pool.emplace_back(work, i);
  work(0);
  for (auto& th : pool) th.join();
  for (const auto& e : errors)
    if (!e.empty()) fathom::fail("tensor '", t.name, "': ", e);
}

std::string human_bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / double(1ull << 30));
  else
    std::snprintf(buf, sizeof buf, "%.2f MiB", b / double(1ull << 20));
  return buf;
}

int cmd_quantize(const std::vector<std::string>& argv) {
  std::string types;
  for (const auto& n : fathom::quant_recipe_names()) types += (types.empty() ? "" : " ") + n;
  fathom::cli::Args args("usage: fathom quantize [options] IN.gguf OUT.gguf TYPE\n\n"
                         "Re-encodes the weight matrices of a GGUF model. TYPE is one of:\n  " +
                         types +
                         "\nQ4_K_M / Q5_K_M are llama.cpp's mixed recipes (Q6_K for the output, for attn_v and\n"
                         "ffn_down in some layers); a plain type is used for every weight matrix. 1-D tensors\n"
                         "(norms) are copied unchanged. Matrices whose rows do not fit a K-quant fall back to\n"
                         "Q5_0 / Q5_1 / Q8_0 (or F16). Tensors of any type fathom can dequantize are accepted.\n");
  args.option("-j,--threads", "worker threads (default: all cores)", "0")
      .flag("-q,--quiet", "no progress output");
  if (!args.parse(argv)) return 0;
  const auto& pos = args.positional();
  FATHOM_CHECK(pos.size() == 3, "expected IN.gguf OUT.gguf TYPE, got ", pos.size(), " argument(s) (see --help)");
  const std::string in_path = pos[0], out_path = pos[1];
  const fathom::QuantRecipe recipe = fathom::quant_recipe(pos[2]);
  long long n_threads = args.integer("threads");
  FATHOM_CHECK(n_threads >= 0, "--threads must be >= 0, got ", n_threads);
  if (n_threads == 0) n_threads = std::max(1u, std::thread::hardware_concurrency());

  check_not_same_file(in_path, out_path);
  const auto in = fathom::GgufFile::open(in_path);
  const auto& tensors = in->tensors();

  std::vector<std::string> names;
  for (const auto& t : tensors) names.push_back(t.name);
  const fathom::QuantModelInfo model = fathom::quant_model_info(names);

  // Decide every tensor's type up front, so an unsupported source type fails before any work.
  std::vector<GgmlType> target(tensors.size());
  uint64_t total_elems = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    target[i] = fathom::quant_recipe_tensor_type(recipe, model, t.name, t.ne, t.n_dims, t.type);
    if (target[i] != t.type) {
      FATHOM_CHECK(fathom::can_dequantize(t.type), in_path, ": tensor '", t.name, "' has type ",
                   fathom::ggml_type_name(t.type), ", which fathom cannot dequantize, so it cannot be converted to ",
                   fathom::ggml_type_name(target[i]));
      total_elems += static_cast<uint64_t>(t.n_elements());
    }
  }

  fathom::GgufWriter writer;
  for (const auto& [key, value] : in->metadata()) writer.set(key, value);
  writer.set("general.quantization_version", fathom::GgufValue::make_u32(2));
  writer.set("general.file_type", fathom::GgufValue::make_u32(recipe.file_type));

  const auto t0 = std::chrono::steady_clock::now();
  Progress progress(total_elems);
  const bool quiet = args.enabled("quiet");
  std::vector<std::vector<uint8_t>> converted;  // owns the new tensor data until write()
  converted.reserve(tensors.size());
  std::map<std::string, int> type_counts;
  uint64_t done_elems = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    const std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
    type_counts[fathom::ggml_type_name(target[i])]++;
    if (target[i] == t.type) {
      writer.add_tensor_ref(t.name, t.type, ne, t.data, t.nbytes);  // borrowed from the mapping
      continue;
    }
    if (!quiet)
      progress.update(done_elems, i + 1, tensors.size(),
                      t.name + " " + fathom::ggml_type_name(t.type) + " -> " + fathom::ggml_type_name(target[i]));
    converted.emplace_back(fathom::ggml_row_bytes(target[i], t.cols()) * static_cast<size_t>(t.rows()));
    convert_rows(t, target[i], converted.back().data(), static_cast<int>(n_threads));
    writer.add_tensor_ref(t.name, target[i], ne, converted.back().data(), converted.back().size());
    done_elems += static_cast<uint64_t>(t.n_elements());
  }
  if (!quiet) {
    progress.update(total_elems, tensors.size(), tensors.size(), "writing " + out_path);
    progress.finish();
  }
  writer.write(out_path);

  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  struct stat so {};
  const uint64_t out_size = stat(out_path.c_str(), &so) == 0 ? static_cast<uint64_t>(so.st_size) : 0;
  std::string counts;
  for (const auto& [name, n] : type_counts) counts += (counts.empty() ? "" : ", ") + std::to_string(n) + " " + name;
  std::printf("wrote %s (%s): %s -> %s in %.1f s; %zu tensors: %s\n", out_path.c_str(), recipe.name.c_str(),
              human_bytes(in->file_size()).c_str(), human_bytes(out_size).c_str(), secs, tensors.size(),
              counts.c_str());
  return 0;
}

}  // namespace

FATHOM_COMMAND("quantize", "re-encode a GGUF model's weights (Q4_K_M, Q8_0, F16, ...)", cmd_quantize);
