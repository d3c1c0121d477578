// CPU reference matmul and weight dequantization: y = x @ W^T for any dequantizable W.
#include <algorithm>
#include <thread>
#include <vector>

#include "fathom/cpu_ops.h"
#include "fathom/error.h"
#include "fathom/quant.h"

namespace fathom {
namespace cpu {
namespace {
MatmulOperandHook g_operand_hook = nullptr;  // test-only, see set_matmul_operand_hook
}  // namespace

void set_matmul_operand_hook(MatmulOperandHook hook) { g_operand_hook = hook; }

void matmul(GgmlType type, const void* w, int64_t rows, int64_t cols, const float* x, float* y,
            int64_t n_tokens, int n_threads) {
  FATHOM_CHECK(can_dequantize(type), "matmul: weight type ", ggml_type_name(type),
               " has no CPU dequantizer");
  const size_t row_bytes = ggml_row_bytes(type, cols);
  const auto* w_bytes = static_cast<const uint8_t*>(w);
  const MatmulOperandHook hook = g_operand_hook;
  std::vector<float> x_hooked;
  if (hook) {
    x_hooked.assign(x, x + n_tokens * cols);
    hook(type, n_tokens, false, x_hooked.data(), n_tokens * cols);
    x = x_hooked.data();
  }
  // W (rows, cols) @ x[t] (cols,) -> y[t] (rows,). Each weight row is dequantized once and
  // dotted with every token (a prefill would otherwise dequantize it n_tokens times); the dot
  // accumulates in double so the oracle carries no fp32 summation error.
  auto run_rows = [&](int64_t r0, int64_t r1) {
    std::vector<float> w_row(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      dequantize_row(type, w_bytes + static_cast<size_t>(r) * row_bytes, w_row.data(), cols);
      if (hook) hook(type, n_tokens, true, w_row.data(), cols);
      for (int64_t t = 0; t < n_tokens; ++t) {
        const float* xt = x + t * cols;
        double acc = 0.0;
        for (int64_t i = 0; i < cols; ++i) acc += static_cast<double>(w_row[i]) * xt[i];
        y[t * rows + r] = static_cast<float>(acc);
      }
    }
  };
  if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // Small products are not worth a thread launch.
  const int64_t work = rows * cols * n_tokens;
  if (n_threads == 1 || work < (1 << 18) || rows < 2 * n_threads) {
    run_rows(0, rows);
    return;
  }
  std::vector<std::thread> threads;
  const int64_t chunk = (rows + n_threads - 1) / n_threads;
  for (int i = 0; i < n_threads; ++i) {
    const int64_t r0 = i * chunk, r1 = std::min(rows, r0 + chunk);
    if (r0 >= r1) break;
    threads.emplace_back(run_rows, r0, r1);
  }
  for (auto& th : threads) th.join();
}

void matmul(const WeightRef& w, const float* x, float* y, int64_t n_tokens, int n_threads) {
  FATHOM_CHECK(w, "matmul: missing weight");
  FATHOM_CHECK(w.info->ne[2] == 1 && w.info->ne[3] == 1, "matmul: weight '", w.info->name,
               "' is not 2-D");
  matmul(w.type(), w.data(), w.rows(), w.cols(), x, y, n_tokens, n_threads);
}

void dequantize_weight(const WeightRef& w, float* out) {
  FATHOM_CHECK(w, "dequantize_weight: missing weight");
  const size_t row_bytes = ggml_row_bytes(w.type(), w.cols());
  for (int64_t r = 0; r < w.rows(); ++r) {
    dequantize_row(w.type(), w.data() + static_cast<size_t>(r) * row_bytes, out + r * w.cols(),
                   w.cols());
  }
}

}  // namespace cpu
}  // namespace fathom
