#include "fathom/synthetic.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "fathom/error.h"
#include "fathom/testgen.h"

namespace fathom {

std::unique_ptr<Model> make_synthetic_model(const std::string& shape, const std::string& type) {
  TestModelSpec spec;
  spec.shape = shape;
  spec.type = type;
  size_t data_bytes = 0;
  const std::vector<uint8_t> header = test_model_header(spec, &data_bytes);
  const size_t total = header.size() + data_bytes;
  // MAP_NORESERVE: the data section is never touched on the host, so an 8B F16 model's 16 GB
  // cost no memory; the engine generates the weights on the device instead.
  void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  FATHOM_CHECK(p != MAP_FAILED, "synthetic model ", shape, " ", type, ": cannot reserve ", total,
               " bytes of address space: ", std::strerror(errno));
  std::shared_ptr<void> backing(p, [total](void* q) { munmap(q, total); });
  std::memcpy(p, header.data(), header.size());
  std::unique_ptr<GgufFile> file =
      GgufFile::from_memory(static_cast<const uint8_t*>(p), total, "synthetic " + shape + " " + type);
  // The host reads the 1-D F32 tensors at load (llama3 rope factors): make them 1, not 0.
  for (const GgufTensorInfo& t : file->tensors()) {
    if (t.n_dims != 1 || t.type != GgmlType::F32) continue;
    float* v = reinterpret_cast<float*>(const_cast<uint8_t*>(t.data));
    for (int64_t i = 0; i < t.n_elements(); ++i) v[i] = 1.0f;
  }
  std::unique_ptr<Model> model = load_model(std::move(file));
  model->backing = std::move(backing);
  return model;
}

}  // namespace fathom
