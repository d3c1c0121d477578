/* ggml_ref_tool: ggml's own C reference quantizers (quantize_row_*_ref) behind the same
 * command line as fathom_quant_tool, for an optional, local, byte-for-byte check of fathom's
 * K-quant quantizers, which the `gguf` python package cannot quantize. Not built by CMake:
 * it needs ggml's sources, e.g. from the ggml-python sdist on PyPI:
 *
 *   pip download --no-deps --no-binary :all: ggml-python==0.0.45 -d /tmp/g
 *   tar xzf /tmp/g/ggml_python-0.0.45.tar.gz -C /tmp/g
 *   G=/tmp/g/ggml_python-0.0.45/vendor/ggml
 *   cc -O2 tests/tools/ggml_ref_tool.c $G/src/ggml-quants.c -I$G/include -I$G/src -lm -o /tmp/ggml_ref_tool
 *   python3 tests/python/check_quant_oracle.py --tool build/tests/fathom_quant_tool --ggml-ref /tmp/ggml_ref_tool
 *
 *   ggml_ref_tool quantize TYPE IN.f32 OUT.bin
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-quants.h"
#include "ggml.h"

/* ggml-quants.c calls these from code paths the reference quantizers never take. */
void ggml_abort(const char* file, int line, const char* fmt, ...) {
  fprintf(stderr, "ggml_abort at %s:%d\n", file, line);
  abort();
}
size_t ggml_row_size(enum ggml_type t, int64_t ne) { abort(); }
size_t ggml_type_size(enum ggml_type t) { abort(); }
const char* ggml_type_name(enum ggml_type t) { return "?"; }

typedef void (*quantize_fn)(const float* x, void* y, int64_t k);
struct ref_type {
  const char* name;
  quantize_fn fn;
  int64_t block_elems;
  size_t block_bytes;
};

#define REF(NAME, FN, QK, BYTES) {NAME, (quantize_fn)FN, QK, BYTES}
static const struct ref_type kTypes[] = {
    REF("Q4_0", quantize_row_q4_0_ref, 32, 18),   REF("Q4_1", quantize_row_q4_1_ref, 32, 20),
    REF("Q5_0", quantize_row_q5_0_ref, 32, 22),   REF("Q5_1", quantize_row_q5_1_ref, 32, 24),
    REF("Q8_0", quantize_row_q8_0_ref, 32, 34),   REF("Q2_K", quantize_row_q2_K_ref, 256, 84),
    REF("Q3_K", quantize_row_q3_K_ref, 256, 110), REF("Q4_K", quantize_row_q4_K_ref, 256, 144),
    REF("Q5_K", quantize_row_q5_K_ref, 256, 176), REF("Q6_K", quantize_row_q6_K_ref, 256, 210),
};

int main(int argc, char** argv) {
  if (argc != 5 || strcmp(argv[1], "quantize") != 0) {
    fprintf(stderr, "usage: ggml_ref_tool quantize TYPE IN.f32 OUT.bin\n");
    return 2;
  }
  const struct ref_type* t = NULL;
  for (size_t i = 0; i < sizeof(kTypes) / sizeof(kTypes[0]); ++i)
    if (strcmp(kTypes[i].name, argv[2]) == 0) t = &kTypes[i];
  if (!t) {
    fprintf(stderr, "ggml_ref_tool: unsupported type %s\n", argv[2]);
    return 2;
  }
  FILE* f = fopen(argv[3], "rb");
  if (!f) return 1;
  fseek(f, 0, SEEK_END);
  const long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  const int64_t n = size / 4;
  if (n % t->block_elems != 0) {
    fprintf(stderr, "ggml_ref_tool: %lld values is not a whole number of blocks\n", (long long)n);
    return 1;
  }
  float* x = malloc((size_t)size);
  if (fread(x, 1, (size_t)size, f) != (size_t)size) return 1;
  fclose(f);
  const size_t bytes = (size_t)(n / t->block_elems) * t->block_bytes;
  void* y = malloc(bytes);
  t->fn(x, y, n);
  f = fopen(argv[4], "wb");
  if (!f || fwrite(y, 1, bytes, f) != bytes) return 1;
  fclose(f);
  free(x);
  free(y);
  return 0;
}
