// `fathom profile -m` / `fathom doctor -m`: the CUDA engine on a prompt and N greedy decode steps,
// recorded by the Profiler with one step marker per engine call (the engine's own NVTX ranges,
// "prefill" / "decode step N", define the steps when CUPTI records them), plus the launch-cost
// hints of fathom's kernels during the decode steps and, apart, during the prefill, and the
// device's occupancy limits.
#include <cstdio>

#include "fathom/cuda_engine.h"
#include "fathom/error.h"
#include "fathom/gpu_info.h"
#include "fathom/profiler.h"

#ifdef FATHOM_HAVE_CUDA
#include "cuda/launch_cost.h"
#endif

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
  Ceilings ceil;
  if (opt.ceilings) {
    // Before the engine takes its memory (the read ceiling streams 4 GiB), outside the recording.
    try {
      ceil = gpu_ceilings(gpu);
    } catch (const Error& e) {
      std::fprintf(stderr, "fathom: could not measure the GPU's ceilings: %s\n", e.what());
    }
  }
  // Before the engine's first NVTX range: NVTX reads NVTX_INJECTION64_PATH once per process.
  enable_nvtx_injection();
  const DeviceLimits limits = cuda::query_device_limits(0);

  CudaEngineOptions eo;
  eo.n_ctx = int64_t(prompt.size()) + opt.n_decode + 1;
  eo.use_graphs = opt.use_graphs;
  eo.synthetic_seed = opt.synthetic_seed;
  eo.nvtx_layers = opt.layer_ranges;
  eo.verbose = opt.verbose;
  CudaEngine engine(model, eo);

  // The prefill's hints and the decode steps' are kept apart: a prefill's shapes differ.
  cuda::LaunchCostRecorder costs;
  std::vector<KernelCost> prefill_costs;
  Profiler prof;
  prof.start();
  try {
    prof.mark_step("prefill");
    costs.set_recording(true);
    int32_t id = engine.eval_greedy(prompt.data(), int64_t(prompt.size()));
    // A one-token prompt already runs the decode path (and captures its graph, whose replays note
    // no launches): its launches stay with the decode steps', or those would carry no costs.
    if (prompt.size() > 1) prefill_costs = costs.take();
    for (int i = 0; i < opt.n_decode; ++i) {
      // The first decode step runs eagerly and captures the graph: its own phase, so it does not
      // skew the steady-state figures.
      prof.mark_step(i == 0 ? "decode-first" : "decode");
      id = engine.eval_greedy(&id, 1);
    }
    costs.set_recording(false);
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
  t.read_gbps = ceil.read_gbps;
  t.bf16_tflops = ceil.bf16_tflops;
  t.limits = limits;
  t.costs = costs.take();
  t.prefill_costs = std::move(prefill_costs);
  return t;
#endif
}

}  // namespace fathom
