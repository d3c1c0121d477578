// Synthetic benchmark models: the header of a named shape over an untouched data section.
#include <gtest/gtest.h>

#include "fathom/error.h"
#include "fathom/synthetic.h"
#include "fathom/testgen.h"

TEST(SyntheticModel, DescribesTheShapeWithoutWeightBytes) {
  auto m = fathom::make_synthetic_model("tiny-gemma3", "Q4_K_M");
  ASSERT_NE(m, nullptr);
  const auto shape = fathom::test_model_shape("tiny-gemma3");
  EXPECT_EQ(m->config.n_layer, shape.n_layer);
  EXPECT_EQ(m->config.n_embd, shape.n_embd);
  EXPECT_EQ(m->config.arch, fathom::Arch::GEMMA3);
  // Same tensor table as the file the generator writes for the same spec.
  size_t data_bytes = 0;
  fathom::TestModelSpec spec;
  spec.shape = "tiny-gemma3";
  spec.type = "Q4_K_M";
  const auto header = fathom::test_model_header(spec, &data_bytes);
  EXPECT_EQ(m->file->data_offset(), header.size());
  EXPECT_EQ(m->file->file_size(), header.size() + data_bytes);
  // 1-D F32 tensors read as 1 on the host (the loader reads rope factors there).
  const auto* norm = m->file->find_tensor("output_norm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(reinterpret_cast<const float*>(norm->data)[0], 1.0f);
}

TEST(SyntheticModel, FullSizeShapeCostsNoHostMemory) {
  // llama3-8b F16 is ~16 GB of weights: only address space is reserved.
  auto m = fathom::make_synthetic_model("llama3-8b", "F16");
  EXPECT_EQ(m->config.n_layer, 32);
  EXPECT_GT(m->file->file_size(), size_t(15000000000));  // 16.06 GB
}

TEST(SyntheticModel, UnknownShapeIsAClearError) {
  EXPECT_THROW(fathom::make_synthetic_model("no-such-shape", "F16"), fathom::Error);
}
