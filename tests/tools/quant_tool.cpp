// quant_tool: a thin file-in/file-out wrapper around fathom's CPU quantizers, driven by the
// python oracle check (tests/python/check_quant_oracle.py).
//
//   quant_tool dequantize TYPE IN OUT   IN: raw blocks of TYPE; OUT: fp32 little-endian
//   quant_tool quantize   TYPE IN OUT   IN: fp32 little-endian; OUT: raw blocks of TYPE
//
// TYPE is a ggml type name (Q4_K, f16, ...). The element count must be a multiple of the block.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fathom/error.h"
#include "fathom/ggml_type.h"
#include "fathom/quant.h"

namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  FATHOM_CHECK(f.good(), "cannot open '", path, "' for reading");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const void* data, size_t n) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  FATHOM_CHECK(f.good(), "cannot write '", path, "'");
}

int run(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: quant_tool dequantize|quantize TYPE IN OUT\n");
    return 2;
  }
  const std::string mode = argv[1];
  const fathom::GgmlType type = fathom::ggml_type_from_name(argv[2]);
  const auto& tr = fathom::ggml_type_traits(type);
  const std::vector<uint8_t> in = read_file(argv[3]);
  if (mode == "dequantize") {
    FATHOM_CHECK(in.size() % tr.block_bytes == 0, argv[3], ": ", in.size(), " bytes is not a whole number of ",
                 tr.name, " blocks of ", tr.block_bytes, " bytes");
    const int64_t n = static_cast<int64_t>(in.size() / tr.block_bytes) * tr.block_elems;
    std::vector<float> out(static_cast<size_t>(n));
    fathom::dequantize_row(type, in.data(), out.data(), n);
    write_file(argv[4], out.data(), out.size() * sizeof(float));
  } else if (mode == "quantize") {
    FATHOM_CHECK(in.size() % sizeof(float) == 0, argv[3], ": size is not a multiple of 4 bytes");
    const int64_t n = static_cast<int64_t>(in.size() / sizeof(float));
    std::vector<float> x(static_cast<size_t>(n));
    std::copy(in.begin(), in.end(), reinterpret_cast<uint8_t*>(x.data()));
    std::vector<uint8_t> out(fathom::ggml_row_bytes(type, n));
    fathom::quantize_row(type, x.data(), out.data(), n);
    write_file(argv[4], out.data(), out.size());
  } else {
    fathom::fail("unknown mode '", mode, "' (expected dequantize or quantize)");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const fathom::Error& e) {
    std::fprintf(stderr, "quant_tool: error: %s\n", e.what());
    return 1;
  }
}
