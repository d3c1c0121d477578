// `fathom profile -m` / `fathom doctor -m`: the CUDA engine on a prompt and N greedy decode steps,
// recorded by the Profiler with one step marker per engine call.
#include <cstdio>

#include "fathom/cuda_engine.h"
#include "fathom/error.h"
#include "fathom/gpu_info.h"
#include "fathom/profiler.h"

namespace fathom {

double decode_weight_bytes(const Model& model) {
  double total = 0;
  bool has_output = false;
  const GgufTensorInfo* embd = nullptr;
  for (const GgufTensorInfo& t : model.file->tensors()) {
    total += double(t.nbytes);
    if (t.name == "output.weight") has_output = true;
    if (t.name == "token_embd.weight") embd = &t;
  }
  // An untied embedding is only gathered (one row per token); a tied one is also the output matrix.
  if (has_output && embd && embd->rows() > 0)
    total -= double(embd->nbytes) - double(embd->nbytes) / double(embd->rows());
  return total;
}

Trace profile_engine(const Model& model, const std::string& model_path, const std::vector<int32_t>& prompt,
                     const EngineProfileOptions& opt) {
#ifndef FATHOM_HAVE_CUDA
  (void)model, (void)model_path, (void)prompt, (void)opt;
  fail("this fathom was built without CUDA, so there is no GPU run to profile (rebuild with "
       "FATHOM_ENABLE_CUDA=ON, or analyse a saved trace with --trace FILE.json)");
#else
  FATHOM_CHECK(!prompt.empty(), "the prompt tokenized to nothing");
  FATHOM_CHECK(opt.n_decode >= 0, "-n must be non-negative, got ", opt.n_decode);
  const GpuInfo gpu = query_gpu(0);
  FATHOM_CHECK(gpu.present, "no usable GPU: ", gpu.why_absent);
  double read_gbps = 0;
  if (opt.ceilings) {
    // Before the engine takes its memory (the read ceiling streams 4 GiB), outside the recording.
    try {
      read_gbps = gpu_ceilings(gpu).read_gbps;
    } catch (const Error& e) {
      std::fprintf(stderr, "fathom: could not measure the GPU's read bandwidth: %s\n", e.what());
    }
  }

  CudaEngineOptions eo;
  eo.n_ctx = int64_t(prompt.size()) + opt.n_decode + 1;
  eo.use_graphs = opt.use_graphs;
  eo.verbose = opt.verbose;
  CudaEngine engine(model, eo);

  Profiler prof;
  prof.start();
  try {
    prof.mark_step("prefill");
    int32_t id = engine.eval_greedy(prompt.data(), int64_t(prompt.size()));
    for (int i = 0; i < opt.n_decode; ++i) {
      // The first decode step runs eagerly and captures the graph: its own phase, so it does not
      // skew the steady-state figures.
      prof.mark_step(i == 0 ? "decode-first" : "decode");
      id = engine.eval_greedy(&id, 1);
    }
  } catch (...) {
    prof.stop();
    throw;
  }
  prof.stop();
  Trace t = prof.take();
  t.source = "engine";
  t.device = engine.device_name();
  t.model = model_path;
  t.n_prompt = int64_t(prompt.size());
  t.n_decode = opt.n_decode;
  t.weight_bytes = decode_weight_bytes(model);
  t.read_gbps = read_gbps;
  return t;
#endif
}

}  // namespace fathom
