// Trace analysis and JSON round trip on a hand-built trace whose every figure is worked out below.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "fathom/error.h"
#include "fathom/model.h"
#include "fathom/profiler.h"
#include "fathom/testgen.h"

namespace fathom {
namespace {

const char* kGemv = "void gemv_kernel<(fathom::GgmlType)12>(fathom::GemvParams)";
const char* kNorm = "rms_norm_kernel(float const*, float*, int)";

KernelEvent kernel(const char* name, uint64_t s, uint64_t e, uint32_t stream = 7) {
  KernelEvent k;
  k.name = name;
  k.start_ns = s;
  k.end_ns = e;
  k.stream = stream;
  k.grid[0] = 132;
  k.block[0] = 256;
  k.registers = 40;
  k.static_smem = 1024;
  k.dynamic_smem = 512;
  return k;
}

// Timeline (ns):
//   prefill [1000, 11000): stream 7: prefill_kernel [2000, 6000)
//   decode  [11000, 21000): H2D [11500,11600) 8 B; stream 7: gemv [12000,13000), norm [14000,16000),
//                           gemv [16500,17500); D2H [18000,18100) 4 B pageable; 2 cudaLaunchKernel
//   decode  [21000, 31000): cudaGraphLaunch, cudaMalloc [21100,21300), wait-event sync (device side);
//                           stream 7: gemv [22000,23000), gemv [25000,26000); stream 9: norm
//                           [22500,25000), memset [24000,24100); stream sync [26000,27000) also seen
//                           as the cudaStreamSynchronize API call
Trace sample_trace() {
  Trace t;
  t.source = "engine";
  t.device = "NVIDIA H200";
  t.model = "tiny.gguf";
  t.n_prompt = 5;
  t.n_decode = 2;
  t.weight_bytes = 1e6;
  t.read_gbps = 4000;
  t.begin_ns = 1000;
  t.end_ns = 31000;
  t.steps = {{1000, "prefill"}, {11000, "decode"}, {21000, "decode"}};
  t.kernels = {kernel("prefill_kernel", 2000, 6000),
               kernel(kGemv, 12000, 13000),
               kernel(kNorm, 14000, 16000),
               kernel(kGemv, 16500, 17500),
               kernel(kGemv, 22000, 23000),
               kernel(kNorm, 22500, 25000, 9),
               kernel(kGemv, 25000, 26000)};
  t.kernels[2].graph_id = 3;
  t.memcpys = {MemcpyEvent{CopyKind::H2D, 8, 11500, 11600, 7, false},
               MemcpyEvent{CopyKind::D2H, 4, 18000, 18100, 7, true}};
  t.memsets = {MemsetEvent{64, 24000, 24100, 9}};
  t.syncs = {SyncEvent{SyncKind::STREAM_WAIT_EVENT, 21500, 21600, 9}, SyncEvent{SyncKind::STREAM, 26000, 27000, 7}};
  t.api = {{"cudaLaunchKernel", 11700, 11710}, {"cudaLaunchKernel", 11720, 11730},
           {"cudaGraphLaunch", 21050, 21060},  {"cudaMalloc", 21100, 21300},
           {"cudaStreamSynchronize", 26000, 27000}};
  return t;
}

TEST(ProfileTrace, KernelDisplayName) {
  EXPECT_EQ(kernel_display_name(kGemv), "gemv_kernel<(fathom::GgmlType)12>");
  EXPECT_EQ(kernel_display_name(kNorm), "rms_norm_kernel");
  EXPECT_EQ(kernel_display_name("plain_c_kernel"), "plain_c_kernel");
  // Nested parentheses inside the parameter list and in template arguments.
  EXPECT_EQ(kernel_display_name("void f<(int)1>(void (*)(int), int)"), "f<(int)1>");
  EXPECT_EQ(kernel_display_name(""), "");
}

TEST(ProfileTrace, DecodePhaseFigures) {
  const Trace t = sample_trace();
  const TraceAnalysis a = analyze(t);
  ASSERT_EQ(a.phases.size(), 2u);
  EXPECT_EQ(a.phases[0].phase, "prefill");
  const PhaseStats* d = a.phase("decode");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(&a.steady(), d);
  const double eps = 1e-9;
  EXPECT_EQ(d->n_steps, 2);
  EXPECT_NEAR(d->wall_us, 20.0, eps);
  EXPECT_NEAR(d->median_step_us, 10.0, eps);
  EXPECT_EQ(d->kernels, 6);
  EXPECT_NEAR(d->kernel_us, 1 + 2 + 1 + 1 + 2.5 + 1, eps);
  // Gaps on stream 7: H2D -> gemv 0.4, 1.0, 0.5, gemv -> D2H 0.5 in the first step, 2.0 in the
  // second; 18.1 -> 22.0 crosses a step boundary and is the host's turn, not a launch gap. Stream 9:
  // the memset overlaps the norm kernel (a gap of 0).
  EXPECT_NEAR(d->gap_us, 4.4, eps);
  EXPECT_NEAR(d->median_gap_us, 0.5, eps);  // of 0, 0.4, 0.5, 0.5, 1.0, 2.0
  EXPECT_NEAR(d->gap_pct, 22.0, eps);
  // Busy: step 1 = 0.1 + 1 + 2 + 1 + 0.1; step 2 = [22000, 26000) (overlaps and the memset merge).
  EXPECT_NEAR(d->busy_us, 4.2 + 4.0, eps);
  EXPECT_NEAR(d->busy_pct, 41.0, eps);
  EXPECT_EQ(d->h2d, 1);
  EXPECT_EQ(d->d2h, 1);
  EXPECT_EQ(d->d2d, 0);
  EXPECT_NEAR(d->h2d_bytes, 8, eps);
  EXPECT_NEAR(d->d2h_bytes, 4, eps);
  EXPECT_EQ(d->pageable_copies, 1);
  EXPECT_EQ(d->memsets, 1);
  // The stream sync once (its record; the API call is the same sync), the wait-event not at all.
  EXPECT_EQ(d->host_syncs, 1);
  EXPECT_NEAR(d->host_sync_us, 1.0, eps);
  EXPECT_EQ(d->allocs, 1);
  EXPECT_NEAR(d->alloc_us, 0.2, eps);
  EXPECT_EQ(d->graph_launches, 1);
  EXPECT_EQ(d->launch_calls, 2);
  EXPECT_NEAR(d->launch_us, 0.01 + 0.01 + 0.01, 1e-9);
  EXPECT_NEAR(d->per_step(double(d->kernels)), 3.0, eps);

  ASSERT_EQ(d->top_kernels.size(), 2u);
  const KernelStat& k0 = d->top_kernels[0];
  EXPECT_EQ(k0.name, "rms_norm_kernel");  // 4.5 us beats gemv's 4.0 us
  EXPECT_EQ(k0.count, 2);
  EXPECT_NEAR(k0.total_us, 4.5, eps);
  EXPECT_NEAR(k0.mean_us, 2.25, eps);
  EXPECT_NEAR(k0.min_us, 2.0, eps);
  EXPECT_NEAR(k0.max_us, 2.5, eps);
  EXPECT_NEAR(k0.pct_gpu, 100.0 * 4.5 / 8.5, 1e-9);
  EXPECT_EQ(k0.grid[0], 132);
  EXPECT_EQ(k0.block[0], 256);
  EXPECT_EQ(k0.smem, 1536);
  EXPECT_EQ(d->top_kernels[1].name, "gemv_kernel<(fathom::GgmlType)12>");
  EXPECT_EQ(d->top_kernels[1].count, 4);
}

TEST(ProfileTrace, PrefillAndOverall) {
  const TraceAnalysis a = analyze(sample_trace());
  const PhaseStats& p = a.phases[0];
  EXPECT_EQ(p.n_steps, 1);
  EXPECT_NEAR(p.wall_us, 10.0, 1e-9);
  EXPECT_EQ(p.kernels, 1);
  EXPECT_NEAR(p.busy_pct, 40.0, 1e-9);
  EXPECT_NEAR(p.gap_us, 0.0, 1e-12);
  EXPECT_EQ(a.overall.phase, "all");
  EXPECT_EQ(a.overall.n_steps, 3);
  EXPECT_NEAR(a.overall.wall_us, 30.0, 1e-9);
  EXPECT_EQ(a.overall.kernels, 7);
  // The whole window is one interval: the gaps across steps now count (stream 7: 5.5 + 0.4 + 1.0 +
  // 0.5 + 0.5 + 3.9 + 2.0).
  EXPECT_NEAR(a.overall.gap_us, 13.8, 1e-9);
}

TEST(ProfileTrace, TopNLimitsTheTable) {
  const TraceAnalysis a = analyze(sample_trace(), 1);
  ASSERT_EQ(a.steady().top_kernels.size(), 1u);
  EXPECT_EQ(a.steady().top_kernels[0].name, "rms_norm_kernel");
  // The percentages still refer to all kernel time.
  EXPECT_NEAR(a.steady().top_kernels[0].pct_gpu, 100.0 * 4.5 / 8.5, 1e-9);
}

TEST(ProfileTrace, SyncApiCountsWhenThereAreNoSyncRecords) {
  Trace t = sample_trace();
  t.syncs.clear();  // e.g. a CUPTI without SYNCHRONIZATION records
  t.api.push_back({"cudaMemcpy", 19000, 19500});   // blocking copy: an implicit sync
  t.api.push_back({"cudaDeviceSynchronize", 20000, 20100});
  const auto analysis = analyze(t);  // keep it alive: phase() points into it
  const PhaseStats* d = analysis.phase("decode");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->host_syncs, 3);
  EXPECT_NEAR(d->host_sync_us, 1.0 + 0.5 + 0.1, 1e-9);
}

TEST(ProfileTrace, WithoutMarkersTheWholeRunIsTheScope) {
  Trace t = sample_trace();
  t.steps.clear();
  t.begin_ns = t.end_ns = 0;  // an injected trace may not know its window: the events' span
  const TraceAnalysis a = analyze(t);
  EXPECT_TRUE(a.phases.empty());
  EXPECT_EQ(&a.steady(), &a.overall);
  EXPECT_EQ(a.overall.n_steps, 1);
  // Span: first event (kernel at 2000) to last end (sync at 27000), +1 ns for the half-open end.
  EXPECT_NEAR(a.overall.wall_us, 25.001, 1e-9);
  EXPECT_EQ(a.overall.kernels, 7);
}

TEST(ProfileTrace, LongGapsAreHostWorkNotLaunchGaps) {
  Trace t;
  t.kernels = {kernel(kGemv, 1000, 2000), kernel(kGemv, 4000, 5000),
               kernel(kGemv, 5000 + uint64_t(kLongGapUs * 1000) + 1, 5000 + uint64_t(kLongGapUs * 1000) + 1001)};
  const PhaseStats& p = analyze(t).overall;
  EXPECT_NEAR(p.gap_us, 2.0, 1e-9);
  EXPECT_NEAR(p.median_gap_us, 2.0, 1e-9);
  EXPECT_EQ(p.long_gaps, 1);
  EXPECT_NEAR(p.long_gap_us, kLongGapUs + 0.001, 1e-9);
}

TEST(ProfileTrace, EmptyTrace) {
  const TraceAnalysis a = analyze(Trace{});
  EXPECT_EQ(a.overall.kernels, 0);
  EXPECT_EQ(a.overall.busy_pct, 0);
  EXPECT_TRUE(a.overall.top_kernels.empty());
  EXPECT_FALSE(format_report(Trace{}, a).empty());
}

TEST(ProfileTrace, JsonRoundTrip) {
  const Trace t = sample_trace();
  const Trace u = trace_from_json(trace_to_json(t, 2));
  EXPECT_EQ(u.source, t.source);
  EXPECT_EQ(u.device, t.device);
  EXPECT_EQ(u.model, t.model);
  EXPECT_EQ(u.n_prompt, t.n_prompt);
  EXPECT_EQ(u.n_decode, t.n_decode);
  EXPECT_EQ(u.weight_bytes, t.weight_bytes);
  EXPECT_EQ(u.read_gbps, t.read_gbps);
  EXPECT_EQ(u.begin_ns, t.begin_ns);
  EXPECT_EQ(u.end_ns, t.end_ns);
  ASSERT_EQ(u.kernels.size(), t.kernels.size());
  for (size_t i = 0; i < t.kernels.size(); ++i) {
    const KernelEvent &a = t.kernels[i], &b = u.kernels[i];
    EXPECT_EQ(a.name, b.name) << "kernel " << i;
    EXPECT_EQ(a.start_ns, b.start_ns) << "kernel " << i;
    EXPECT_EQ(a.end_ns, b.end_ns) << "kernel " << i;
    EXPECT_EQ(a.stream, b.stream) << "kernel " << i;
    EXPECT_EQ(a.grid[0], b.grid[0]) << "kernel " << i;
    EXPECT_EQ(a.block[0], b.block[0]) << "kernel " << i;
    EXPECT_EQ(a.registers, b.registers) << "kernel " << i;
    EXPECT_EQ(a.static_smem, b.static_smem) << "kernel " << i;
    EXPECT_EQ(a.dynamic_smem, b.dynamic_smem) << "kernel " << i;
    EXPECT_EQ(a.graph_id, b.graph_id) << "kernel " << i;
  }
  ASSERT_EQ(u.memcpys.size(), 2u);
  EXPECT_EQ(u.memcpys[1].kind, CopyKind::D2H);
  EXPECT_TRUE(u.memcpys[1].pageable);
  EXPECT_EQ(u.memcpys[0].bytes, 8u);
  ASSERT_EQ(u.memsets.size(), 1u);
  EXPECT_EQ(u.memsets[0].bytes, 64u);
  ASSERT_EQ(u.syncs.size(), 2u);
  EXPECT_EQ(u.syncs[0].kind, SyncKind::STREAM_WAIT_EVENT);
  EXPECT_EQ(u.syncs[1].kind, SyncKind::STREAM);
  ASSERT_EQ(u.api.size(), t.api.size());
  EXPECT_EQ(u.api[3].name, "cudaMalloc");
  ASSERT_EQ(u.steps.size(), 3u);
  EXPECT_EQ(u.steps[2].phase, "decode");
  EXPECT_EQ(u.steps[2].t_ns, 21000u);
  // And the analysis of the copy equals the analysis of the original.
  EXPECT_EQ(analysis_to_json(analyze(u)), analysis_to_json(analyze(t)));
}

TEST(ProfileTrace, JsonErrorsNameTheField) {
  auto message = [](const std::string& text) {
    try {
      trace_from_json(text);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(message(R"({"kernels":[{"name":"k","start_ns":1}]})").find("'end_ns'"), std::string::npos);
  EXPECT_NE(message(R"({"kernels":[{"name":"k","start_ns":"x","end_ns":2}]})").find("'start_ns'"), std::string::npos);
  EXPECT_NE(message(R"({"memcpys":[{"kind":"sideways","bytes":1,"start_ns":1,"end_ns":2}]})").find("sideways"),
            std::string::npos);
  EXPECT_NE(message("[1,2]").find("object"), std::string::npos);
  EXPECT_NE(message("{not json").find("does not parse"), std::string::npos);
  EXPECT_NE(message(R"({"kernels": 3})").find("not an array"), std::string::npos);
}

TEST(ProfileTrace, ReadTraceFileAcceptsProfileOutputAndBareTraces) {
  const Trace t = sample_trace();
  const std::string dir = ::testing::TempDir();
  const std::string wrapped = dir + "/fathom_profile_wrapped.json", bare = dir + "/fathom_profile_bare.json";
  {
    std::ofstream out(wrapped);
    out << "{\"summary\": " << analysis_to_json(analyze(t)) << ",\n\"trace\": " << trace_to_json(t) << "}\n";
  }
  {
    std::ofstream out(bare);
    out << trace_to_json(t);
  }
  EXPECT_EQ(read_trace_file(wrapped).kernels.size(), t.kernels.size());
  EXPECT_EQ(read_trace_file(bare).steps.size(), t.steps.size());
  std::remove(wrapped.c_str());
  std::remove(bare.c_str());
  try {
    read_trace_file(dir + "/no_such_trace.json");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_trace.json"), std::string::npos) << e.what();
  }
}

TEST(ProfileTrace, ReportNamesPhasesAndKernels) {
  const Trace t = sample_trace();
  const std::string r = format_report(t, analyze(t));
  EXPECT_NE(r.find("NVIDIA H200"), std::string::npos) << r;
  EXPECT_NE(r.find("prefill"), std::string::npos) << r;
  EXPECT_NE(r.find("decode"), std::string::npos) << r;
  EXPECT_NE(r.find("rms_norm_kernel"), std::string::npos) << r;
  EXPECT_NE(r.find("read ceiling"), std::string::npos) << r;
  EXPECT_NE(r.find("cudaLaunchKernel 2"), std::string::npos) << r;
  EXPECT_NE(r.find("cudaMalloc 1"), std::string::npos) << r;
}

TEST(ProfileTrace, DecodeWeightBytesCountOneEmbeddingRow) {
  TestModelSpec spec;
  spec.shape = "tiny-llama";  // untied: token_embd.weight and output.weight
  spec.type = "F32";
  const std::string path = ::testing::TempDir() + "/fathom_profile_weights.gguf";
  write_test_model(spec, path);
  {
    std::unique_ptr<Model> m = load_model(path);
    double all = 0, embd = 0, embd_rows = 0;
    for (const GgufTensorInfo& t : m->file->tensors()) {
      all += double(t.nbytes);
      if (t.name == "token_embd.weight") {
        embd = double(t.nbytes);
        embd_rows = double(t.rows());
      }
    }
    ASSERT_GT(embd, 0);
    EXPECT_EQ(embd_rows, 512);  // n_vocab rows of n_embd floats
    EXPECT_DOUBLE_EQ(decode_weight_bytes(*m), all - embd + embd / embd_rows);
  }
  std::remove(path.c_str());
}

TEST(ProfileTrace, ProfilerWithoutCudaSaysSo) {
#ifdef FATHOM_HAVE_CUPTI
  GTEST_SKIP() << "CUPTI build: recording is exercised on the GPU machine (scripts/device_profile_check.sh)";
#else
  std::string why;
  EXPECT_FALSE(Profiler::available(&why));
  EXPECT_NE(why.find("built without CU"), std::string::npos) << why;  // CUDA, or CUPTI
  Profiler p;
  try {
    p.start();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
  }
#endif
}

}  // namespace
}  // namespace fathom
