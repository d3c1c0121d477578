// Synthetic models for `fathom bench --synthetic SHAPE --type TYPE`: the metadata and tensor
// table of a named shape (the test-model generator's shapes and type recipe), with no weight
// bytes on the host. The data section is an untouched anonymous mapping (no memory is committed);
// the CUDA engine, given CudaEngineOptions::synthetic_seed, fills the weights on the device.
#pragma once

#include <memory>
#include <string>

#include "fathom/model.h"

namespace fathom {

std::unique_ptr<Model> make_synthetic_model(const std::string& shape, const std::string& type);

}  // namespace fathom
