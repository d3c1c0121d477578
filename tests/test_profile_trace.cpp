// Trace analysis and JSON round trip on a hand-built trace whose every figure is worked out below.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
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

// Real kernel names, one family at a time (as CUPTI demangles them).
TEST(ProfileCategories, ClassifierOnRealNames) {
  struct Case {
    const char* name;
    KernelCategory want;
  };
  const Case cases[] = {
      // cuBLAS / cuBLASLt / CUTLASS
      {"sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off_kernel__5x_cublas",
       KernelCategory::GEMM},
      {"ampere_bf16_s16816gemm_bf16_128x128_ldg8_f2f_stages_64x3_tn", KernelCategory::GEMM},
      {"void cutlass::Kernel2<cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_16x16_128x2_tn_align8>(cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_16x16_128x2_tn_align8::Params)",
       KernelCategory::GEMM},
      {"void gemv2T_kernel_val<int, int, float, float, float, float, 128, 16, 4, 4, false, false, cublasGemvParamsEx<int, cublasGemvTensorStridedBatched<float const>, cublasGemvTensorStridedBatched<float const>, cublasGemvTensorStridedBatched<float>, float> >(cublasGemvParamsEx<int, cublasGemvTensorStridedBatched<float const>, cublasGemvTensorStridedBatched<float const>, cublasGemvTensorStridedBatched<float>, float>, float, float)",
       KernelCategory::GEMM},
      {"void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16, float, __nv_bfloat16, true, false, false>(cublasLt::cublasSplitKParams<float>, float const*, __nv_bfloat16 const*, __nv_bfloat16*, float const*, float const*, __nv_bfloat16 const*, float const*, __nv_bfloat16*, void*, long, float*, int*)",
       KernelCategory::GEMM},
      // FlashAttention / FlashInfer
      {"void flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<128, 64, 128, 4, false, false, cutlass::bfloat16_t, Flash_kernel_traits<128, 64, 128, 4, cutlass::bfloat16_t> >, false, true, false, false, true, true, false, false>(Flash_fwd_params)",
       KernelCategory::ATTENTION},
      {"void cutlass::device_kernel<flash::enable_sm90_or_later<flash::FlashAttnFwdSm90<flash::CollectiveMainloopFwdSm90<2, cute::tuple<cute::C<1>, cute::C<1>, cute::C<1> >, cute::tuple<cute::C<128>, cute::C<128>, cute::C<128> >, 128, cutlass::bfloat16_t, float, cutlass::arch::Sm90, true, false, false, false, false, false, true, false, false, false, false, false> > > >(flash::FlashAttnFwdSm90<>::Params)",
       KernelCategory::ATTENTION},
      {"fmha_cutlassF_f16_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel<cutlass::half_t, cutlass::arch::Sm80, true, 64, 64, 64, true, true>::Params)",
       KernelCategory::ATTENTION},
      {"void flashinfer::BatchDecodeWithPagedKVCacheKernel<(flashinfer::PosEncodingMode)0, 2u, 4u, 8u, 16u, 1u, 8u, flashinfer::DefaultAttention<false, false, false, false>, flashinfer::BatchDecodeParams<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16, int> >(flashinfer::BatchDecodeParams<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16, int>)",
       KernelCategory::ATTENTION},
      // ggml
      {"void mul_mat_vec_q<(ggml_type)12, 1>(void const*, void const*, float*, int, int, int, int)", KernelCategory::GEMM},
      {"void mul_mat_q4_K<false>(void const*, void const*, float*, int, int, int, int, int)", KernelCategory::GEMM},
      {"void dequantize_mul_mat_vec<(ggml_type)8>(void const*, float const*, float*, int, int)", KernelCategory::GEMM},
      {"void dequantize_block<32, 2, &dequantize_q4_0, __half>(void const*, __half*, long)", KernelCategory::QUANT},
      {"quantize_q8_1(float const*, void*, long, long)", KernelCategory::QUANT},
      {"void rms_norm_f32<1024>(float const*, float*, int, float)", KernelCategory::NORM},
      {"void soft_max_f32<true, 0, 0>(float const*, float const*, float*, int, int, float, float, float, float, unsigned int)",
       KernelCategory::ATTENTION},
      {"void rope_neox<true, float>(float const*, float*, int, int, int, int, int, int, float, float, float, rope_corr_dims, float const*)",
       KernelCategory::ELEMENTWISE},
      {"void k_bin_bcast<&op_mul, float, float, float>(float const*, float const*, float*, int, int, int, int, int, int, int, int, int, int, int, int, int, int)",
       KernelCategory::ELEMENTWISE},
      {"void cpy_f32_f16<&cpy_1_f32_f16>(char const*, char*, int, int, int, int, int, int, int, int, int, int, int, int, int)",
       KernelCategory::COPY},
      {"void k_get_rows_float<float, float>(float const*, int const*, float*, long, long, long, long, long, long, long, long, long, long, long)",
       KernelCategory::COPY},
      // PyTorch
      {"void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>, at::detail::Array<char*, 3> >(int, at::native::CUDAFunctor_add<c10::BFloat16>, at::detail::Array<char*, 3>)",
       KernelCategory::ELEMENTWISE},
      {"void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::func_wrapper_t<float, at::native::sum_functor<float, float, float>::operator()(at::TensorIterator&)::{lambda(float, float)#1}>, unsigned int, float, 4> >(at::native::ReduceOp<float, at::native::func_wrapper_t<float, at::native::sum_functor<float, float, float>::operator()(at::TensorIterator&)::{lambda(float, float)#1}>, unsigned int, float, 4>)",
       KernelCategory::ELEMENTWISE},
      {"void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl_nocast<at::native::direct_copy_kernel_cuda(at::TensorIteratorBase&)::{lambda()#3}::operator()() const::{lambda()#7}::operator()() const::{lambda(float)#1}>(at::TensorIteratorBase&, at::native::direct_copy_kernel_cuda(at::TensorIteratorBase&)::{lambda()#3}::operator()() const::{lambda()#7}::operator()() const::{lambda(float)#1} const&)::{lambda(int)#1}>(int, at::native::gpu_kernel_impl_nocast<at::native::direct_copy_kernel_cuda(at::TensorIteratorBase&)::{lambda()#3}::operator()() const::{lambda()#7}::operator()() const::{lambda(float)#1}>(at::TensorIteratorBase&, at::native::direct_copy_kernel_cuda(at::TensorIteratorBase&)::{lambda()#3}::operator()() const::{lambda()#7}::operator()() const::{lambda(float)#1} const&)::{lambda(int)#1})",
       KernelCategory::COPY},
      {"void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>, at::detail::Array<char*, 1> >(int, at::native::FillFunctor<float>, at::detail::Array<char*, 1>)",
       KernelCategory::COPY},
      {"void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float, float, float, at::native::(anonymous namespace)::SoftMaxForwardEpilogue>(float*, float const*, int)",
       KernelCategory::ATTENTION},
      {"void at::native::sbtopk::gatherTopK<float, unsigned int, 2, false>(at::cuda::detail::TensorInfo<float const, unsigned int>, unsigned int, unsigned int, bool, unsigned int, unsigned int, at::cuda::detail::TensorInfo<float, unsigned int>, unsigned int, at::cuda::detail::TensorInfo<long, unsigned int>, unsigned int)",
       KernelCategory::SAMPLING},
      // fathom (src/cuda/*.cu)
      {kGemv, KernelCategory::GEMM},
      {"void gemm_tile_kernel<(fathom::GgmlType)12>(fathom::GemmArgs)", KernelCategory::GEMM},
      {"attention_decode_kernel(fathom::AttnArgs)", KernelCategory::ATTENTION},
      {"attention_prefill_kernel(fathom::AttnArgs)", KernelCategory::ATTENTION},
      {"attention_reduce_kernel(fathom::AttnArgs)", KernelCategory::ATTENTION},
      {kNorm, KernelCategory::NORM},
      {"rms_norm_kernel(fathom::RmsNormParams)", KernelCategory::NORM},
      {"rope_kv_kernel(fathom::RopeKvParams)", KernelCategory::ELEMENTWISE},
      {"glu_kernel(fathom::GluParams)", KernelCategory::ELEMENTWISE},
      {"add_bias_kernel(float*, float const*, int)", KernelCategory::ELEMENTWISE},
      {"softcap_kernel(float*, int, float)", KernelCategory::ELEMENTWISE},
      {"embedding_kernel(fathom::EmbeddingParams)", KernelCategory::COPY},
      {"argmax_pass1_kernel(float const*, int, float*, int*)", KernelCategory::SAMPLING},
      {"argmax_pass2_kernel(float const*, int const*, int, int*)", KernelCategory::SAMPLING},
      {"sample_kernel(fathom::SampleParams)", KernelCategory::SAMPLING},
      {"void dequantize_rows_bf16_kernel<(fathom::GgmlType)14>(fathom::DequantParams)", KernelCategory::QUANT},
      {"fill_float_kernel(float*, long, float)", KernelCategory::COPY},
      {"prefill_kernel", KernelCategory::OTHER},
      {"my_custom_thing", KernelCategory::OTHER},
  };
  for (const Case& c : cases)
    EXPECT_STREQ(kernel_category_name(classify_kernel(c.name)), kernel_category_name(c.want)) << c.name;
}

// sample_trace's decode steps: gemv 4 x 1 us, rms_norm 2 us + 2.5 us; prefill: prefill_kernel 4 us.
TEST(ProfileCategories, TimeByCategoryOnHandBuiltTrace) {
  const Trace t = sample_trace();
  const TraceAnalysis a = analyze(t);
  const PhaseStats& d = *a.phase("decode");
  ASSERT_EQ(d.categories.size(), 2u);
  EXPECT_EQ(d.categories[0].category, KernelCategory::NORM);  // by total time, descending
  EXPECT_EQ(d.categories[0].count, 2);
  EXPECT_NEAR(d.categories[0].total_us, 4.5, 1e-9);
  EXPECT_NEAR(d.categories[0].pct_kernel, 100.0 * 4.5 / 8.5, 1e-9);
  EXPECT_NEAR(d.per_step(d.categories[0].total_us), 2.25, 1e-9);
  EXPECT_EQ(d.categories[1].category, KernelCategory::GEMM);
  EXPECT_EQ(d.categories[1].count, 4);
  EXPECT_NEAR(d.categories[1].total_us, 4.0, 1e-9);
  EXPECT_NEAR(d.categories[1].pct_kernel, 100.0 * 4.0 / 8.5, 1e-9);
  double pct = 0;
  for (const CategoryStat& c : a.overall.categories) pct += c.pct_kernel;
  EXPECT_NEAR(pct, 100.0, 1e-9);
  ASSERT_EQ(a.overall.categories.size(), 3u);
  EXPECT_EQ(a.overall.categories[2].category, KernelCategory::OTHER);  // prefill_kernel, 4 us
  EXPECT_NEAR(a.overall.categories[1].total_us, 4.0, 1e-9);
  for (const KernelStat& k : d.top_kernels)
    EXPECT_EQ(k.category, k.name == "rms_norm_kernel" ? KernelCategory::NORM : KernelCategory::GEMM) << k.name;

  const std::string r = format_report(t, a);
  EXPECT_NE(r.find("time by category (decode)"), std::string::npos) << r;
  EXPECT_NE(r.find("us/token"), std::string::npos) << r;
  EXPECT_NE(r.find("gemm/gemv"), std::string::npos) << r;

  const nlohmann::json j = nlohmann::json::parse(analysis_to_json(a));
  const nlohmann::json& dj = j["phases"][1];
  ASSERT_EQ(dj["phase"], "decode");
  ASSERT_EQ(dj["categories"].size(), 2u);
  EXPECT_EQ(dj["categories"][0]["category"], "norm");
  EXPECT_NEAR(dj["categories"][0]["per_step_us"].get<double>(), 2.25, 1e-9);
  EXPECT_EQ(dj["top_kernels"][0]["category"], "norm");
}

TEST(ProfileChrome, TraceEventFormat) {
  const Trace t = sample_trace();
  const nlohmann::json j = nlohmann::json::parse(trace_to_chrome_json(t));
  ASSERT_TRUE(j.contains("traceEvents"));
  const nlohmann::json& ev = j["traceEvents"];
  std::map<std::string, int> x_by_cat;
  int meta = 0;
  std::vector<nlohmann::json> kernels, steps;
  for (const nlohmann::json& e : ev) {
    const std::string ph = e["ph"];
    if (ph == "M") {
      ++meta;
      EXPECT_TRUE(e["name"] == "process_name" || e["name"] == "thread_name") << e.dump();
      EXPECT_TRUE(e["args"]["name"].is_string());
      continue;
    }
    ASSERT_EQ(ph, "X") << e.dump();
    ASSERT_TRUE(e["ts"].is_number() && e["dur"].is_number() && e.contains("pid") && e.contains("tid")) << e.dump();
    ++x_by_cat[e["cat"]];
    if (e["cat"] == "kernel") kernels.push_back(e);
    if (e["cat"] == "step") steps.push_back(e);
  }
  EXPECT_EQ(x_by_cat["kernel"], 7);
  EXPECT_EQ(x_by_cat["memcpy"], 2);
  EXPECT_EQ(x_by_cat["memset"], 1);
  EXPECT_EQ(x_by_cat["api"], 5);
  EXPECT_EQ(x_by_cat["step"], 3);
  // GPU + host process names; streams 7 and 9; the steps and API threads.
  EXPECT_EQ(meta, 6);

  // ts/dur in us from begin_ns = 1000: gemv [12000, 13000) -> ts 11, dur 1.
  ASSERT_EQ(kernels.size(), 7u);
  EXPECT_EQ(kernels[1]["name"], "gemv_kernel<(fathom::GgmlType)12>");
  EXPECT_DOUBLE_EQ(kernels[1]["ts"].get<double>(), 11.0);
  EXPECT_DOUBLE_EQ(kernels[1]["dur"].get<double>(), 1.0);
  EXPECT_EQ(kernels[1]["pid"], 0);
  EXPECT_EQ(kernels[1]["tid"], 7);
  EXPECT_EQ(kernels[1]["args"]["category"], "gemm/gemv");
  EXPECT_EQ(kernels[1]["args"]["grid"][0], 132);
  EXPECT_EQ(kernels[1]["args"]["block"][0], 256);
  EXPECT_EQ(kernels[1]["args"]["registers"], 40);
  EXPECT_EQ(kernels[1]["args"]["smem"], 1536);
  // rms_norm on stream 9, [22500, 25000).
  EXPECT_EQ(kernels[5]["name"], "rms_norm_kernel");
  EXPECT_EQ(kernels[5]["tid"], 9);
  EXPECT_DOUBLE_EQ(kernels[5]["ts"].get<double>(), 21.5);
  EXPECT_DOUBLE_EQ(kernels[5]["dur"].get<double>(), 2.5);

  // Steps named by phase, each until the next mark, the last until end_ns.
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps[0]["name"], "prefill");
  EXPECT_EQ(steps[1]["name"], "decode");
  EXPECT_DOUBLE_EQ(steps[0]["ts"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(steps[0]["dur"].get<double>(), 10.0);
  EXPECT_DOUBLE_EQ(steps[2]["ts"].get<double>(), 20.0);
  EXPECT_DOUBLE_EQ(steps[2]["dur"].get<double>(), 10.0);

  for (const nlohmann::json& e : ev)
    if (e["ph"] == "X" && e["cat"] == "memcpy" && e["args"]["kind"] == "D2H") {
      EXPECT_EQ(e["name"], "memcpy D2H");
      EXPECT_EQ(e["args"]["bytes"], 4);
      EXPECT_DOUBLE_EQ(e["ts"].get<double>(), 17.0);
      EXPECT_DOUBLE_EQ(e["dur"].get<double>(), 0.1);
    }
}

TEST(ProfileChrome, EmptyTraceIsValid) {
  const nlohmann::json j = nlohmann::json::parse(trace_to_chrome_json(Trace{}));
  ASSERT_TRUE(j["traceEvents"].is_array());
  EXPECT_EQ(j["traceEvents"].size(), 1u);  // the GPU's process name
}

// ---- launch-cost hints, occupancy, NVTX ranges ------------------------------------------------

// An H100/H200 (sm_90): the limits cudaGetDeviceProperties reports.
DeviceLimits h100_limits() {
  DeviceLimits d;
  d.cc_major = 9;
  d.cc_minor = 0;
  d.sm_count = 132;
  d.warp_size = 32;
  d.max_threads_per_sm = 2048;
  d.max_blocks_per_sm = 32;
  d.regs_per_sm = 65536;
  d.regs_per_block = 65536;
  d.smem_per_sm = 233472;
  d.smem_per_block_optin = 232448;
  d.reserved_smem_per_block = 1024;
  return d;
}

TEST(ProfileOccupancy, WorkedExamplesOnH100) {
  const DeviceLimits d = h100_limits();
  // 256 threads = 8 warps; 32 regs -> 1024 per warp, 16 warps per sub-partition, 64 per SM:
  // registers allow 8 blocks, as do the 64 warps: the warp limit binds first.
  Occupancy o = theoretical_occupancy(d, 256, 32, 0);
  EXPECT_EQ(o.blocks_per_sm, 8);
  EXPECT_EQ(o.limiter, OccupancyLimiter::WARPS);
  EXPECT_DOUBLE_EQ(o.pct, 100.0);
  EXPECT_EQ(o.limit_regs, 8);
  EXPECT_EQ(o.limit_smem, 228);  // the 1 KiB reserve per block alone
  // 128 regs -> 4096 per warp, 4 warps per sub-partition, 16 per SM: 2 blocks, 25%.
  o = theoretical_occupancy(d, 256, 128, 0);
  EXPECT_EQ(o.blocks_per_sm, 2);
  EXPECT_EQ(o.limiter, OccupancyLimiter::REGISTERS);
  EXPECT_DOUBLE_EQ(o.pct, 25.0);
  // 40 regs -> 1280 per warp, 12 warps per sub-partition: 48 warps = 6 blocks of 8 warps.
  o = theoretical_occupancy(d, 256, 40, 1536);
  EXPECT_EQ(o.blocks_per_sm, 6);
  EXPECT_EQ(o.warps_per_sm, 48);
  EXPECT_DOUBLE_EQ(o.pct, 75.0);
  // 100,000 B dynamic smem + 1 KiB reserve, rounded to 128 B = 103,424 B: 2 blocks of 4 warps.
  o = theoretical_occupancy(d, 128, 40, 100000);
  EXPECT_EQ(o.blocks_per_sm, 2);
  EXPECT_EQ(o.limiter, OccupancyLimiter::SHARED_MEMORY);
  EXPECT_DOUBLE_EQ(o.pct, 12.5);
  // One warp per block: 32 blocks per SM at most, half the SM's warps.
  o = theoretical_occupancy(d, 32, 16, 0);
  EXPECT_EQ(o.blocks_per_sm, 32);
  EXPECT_EQ(o.limiter, OccupancyLimiter::BLOCKS);
  EXPECT_DOUBLE_EQ(o.pct, 50.0);
  // 255 regs round to 8192 per warp: one 8-warp block.
  o = theoretical_occupancy(d, 256, 255, 0);
  EXPECT_EQ(o.blocks_per_sm, 1);
  EXPECT_DOUBLE_EQ(o.pct, 12.5);
  // Cannot run: 1024 threads x 128 regs exceed the 65,536 registers of a block; smem over opt-in.
  o = theoretical_occupancy(d, 1024, 128, 0);
  EXPECT_EQ(o.blocks_per_sm, 0);
  EXPECT_EQ(o.limiter, OccupancyLimiter::NONE);
  EXPECT_EQ(theoretical_occupancy(d, 128, 32, 240000).blocks_per_sm, 0);
  // Unknown limits (an old trace): all zero.
  EXPECT_EQ(theoretical_occupancy(DeviceLimits{}, 256, 32, 0).blocks_per_sm, 0);
}

#if defined(FATHOM_HAVE_CUDA) && __has_include(<cuda_occupancy.h>)
}  // namespace
}  // namespace fathom
#include <cuda_occupancy.h>
namespace fathom {
namespace {

// NVIDIA's occupancy calculator (a CPU header of the toolkit) over a sweep of launch shapes.
TEST(ProfileOccupancy, MatchesCudaOccupancyHeader) {
  const DeviceLimits d = h100_limits();
  cudaOccDeviceProp prop;
  prop.computeMajor = d.cc_major;
  prop.computeMinor = d.cc_minor;
  prop.maxThreadsPerBlock = 1024;
  prop.maxThreadsPerMultiprocessor = d.max_threads_per_sm;
  prop.regsPerBlock = d.regs_per_block;
  prop.regsPerMultiprocessor = d.regs_per_sm;
  prop.warpSize = d.warp_size;
  prop.sharedMemPerBlock = 49152;
  prop.sharedMemPerMultiprocessor = size_t(d.smem_per_sm);
  prop.numSms = d.sm_count;
  prop.sharedMemPerBlockOptin = size_t(d.smem_per_block_optin);
  prop.reservedSharedMemPerBlock = size_t(d.reserved_smem_per_block);
  cudaOccDeviceState state;
  int compared = 0;
  for (int threads : {32, 64, 96, 128, 160, 192, 256, 384, 512, 640, 768, 1024})
    for (int regs : {16, 24, 32, 40, 48, 56, 64, 72, 80, 96, 128, 168, 200, 232, 255})
      for (int smem : {0, 100, 4096, 16384, 40000, 49152, 65536, 100000, 150000, 232448}) {
        cudaOccFuncAttributes attr;
        attr.maxThreadsPerBlock = 1024;
        attr.numRegs = regs;
        attr.sharedSizeBytes = 0;
        attr.partitionedGCConfig = PARTITIONED_GC_OFF;
        attr.shmemLimitConfig = FUNC_SHMEM_LIMIT_OPTIN;
        attr.maxDynamicSharedSizeBytes = size_t(d.smem_per_block_optin);
        cudaOccResult res;
        ASSERT_EQ(cudaOccMaxActiveBlocksPerMultiprocessor(&res, &prop, &attr, &state, threads, size_t(smem)),
                  CUDA_OCC_SUCCESS);
        const Occupancy o = theoretical_occupancy(d, threads, regs, smem);
        EXPECT_EQ(o.blocks_per_sm, res.activeBlocksPerMultiprocessor)
            << threads << " threads, " << regs << " regs, " << smem << " B smem";
        ++compared;
      }
  EXPECT_EQ(compared, 12 * 15 * 10);
}
#endif

Trace costed_trace() {
  Trace t = sample_trace();
  t.bf16_tflops = 800;
  t.limits = h100_limits();
  // gemv: 3 launches noted (any count: only the mean per launch matters), 2 MB and 4 MFLOP each.
  t.costs = {KernelCost{"gemv_kernel<(fathom::GgmlType)12>", 3, 3, 6e6, 12e6},
             KernelCost{"prefill_kernel", 1, 1, 1e9, 1e9}};
  return t;
}

TEST(ProfileCosts, AchievedBandwidthFromHints) {
  const Trace t = costed_trace();
  const TraceAnalysis a = analyze(t);
  const PhaseStats* d = a.phase("decode");
  ASSERT_NE(d, nullptr);
  const KernelStat* gemv = nullptr;
  const KernelStat* norm = nullptr;
  for (const KernelStat& k : d->top_kernels) {
    if (k.name == "gemv_kernel<(fathom::GgmlType)12>") gemv = &k;
    if (k.name == "rms_norm_kernel") norm = &k;
  }
  ASSERT_NE(gemv, nullptr);
  ASSERT_NE(norm, nullptr);
  // 4 calls of 1 us in the decode phase, 2 MB each: 8 MB in 4 us = 2000 GB/s = 50% of 4000.
  EXPECT_TRUE(gemv->has_cost);
  EXPECT_DOUBLE_EQ(gemv->bytes, 8e6);
  EXPECT_DOUBLE_EQ(gemv->flops, 16e6);
  EXPECT_NEAR(gemv->gbps, 2000, 1e-9);
  EXPECT_NEAR(gemv->pct_bw, 50, 1e-9);
  EXPECT_NEAR(gemv->tflops, 4, 1e-12);
  EXPECT_NEAR(gemv->pct_flops, 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(d->hinted_bytes, 8e6);
  EXPECT_DOUBLE_EQ(d->hinted_us, 4);
  // No hint: no figures.
  EXPECT_FALSE(norm->has_cost);
  EXPECT_EQ(norm->gbps, 0);
  // Theoretical occupancy of 256 threads x 40 regs x 1.5 kB: 6 blocks/SM, 75%; 132 blocks over
  // 132 SMs x 6 = 1/6 of a wave.
  EXPECT_EQ(gemv->occupancy.blocks_per_sm, 6);
  EXPECT_DOUBLE_EQ(gemv->occupancy.pct, 75.0);
  EXPECT_EQ(gemv->occupancy.limiter, OccupancyLimiter::REGISTERS);
  EXPECT_NEAR(gemv->waves, 1.0 / 6.0, 1e-12);
  // The hints describe decode launches: the prefill's kernel of the same name gets none.
  const PhaseStats* pre = a.phase("prefill");
  ASSERT_NE(pre, nullptr);
  ASSERT_EQ(pre->top_kernels.size(), 1u);
  EXPECT_FALSE(pre->top_kernels[0].has_cost);
  EXPECT_EQ(pre->top_kernels[0].occupancy.blocks_per_sm, 6);

  const std::string report = format_report(t, a);
  EXPECT_NE(report.find("kernel efficiency"), std::string::npos) << report;
  EXPECT_NE(report.find(" 2000 "), std::string::npos) << report;
  EXPECT_NE(report.find("launch-cost hints: 4.00 MB"), std::string::npos) << report;
  const nlohmann::json j = nlohmann::json::parse(analysis_to_json(a));
  bool found = false;
  for (const auto& p : j["phases"])
    if (p["phase"] == "decode")
      for (const auto& k : p["top_kernels"])
        if (k["name"] == "gemv_kernel<(fathom::GgmlType)12>") {
          found = true;
          EXPECT_NEAR(k["gbps"].get<double>(), 2000, 1e-9);
          EXPECT_EQ(k["occupancy"]["blocks_per_sm"], 6);
          EXPECT_EQ(k["occupancy"]["limiter"], "registers");
        }
  EXPECT_TRUE(found);
}

TEST(ProfileCosts, JsonRoundTripOfCostsLimitsRanges) {
  Trace t = costed_trace();
  t.ranges = {{"decode step 7", "fathom", 11000, 19000}};
  t.kernels[1].correlation = 42;
  t.api[0].correlation = 42;
  const Trace u = trace_from_json(trace_to_json(t));
  EXPECT_EQ(u.bf16_tflops, 800);
  EXPECT_EQ(u.limits.smem_per_block_optin, 232448);
  EXPECT_EQ(u.limits.sm_count, 132);
  ASSERT_EQ(u.costs.size(), 2u);
  EXPECT_EQ(u.costs[0].name, "gemv_kernel<(fathom::GgmlType)12>");
  EXPECT_EQ(u.costs[0].hinted, 3);
  EXPECT_DOUBLE_EQ(u.costs[0].bytes, 6e6);
  ASSERT_EQ(u.ranges.size(), 1u);
  EXPECT_EQ(u.ranges[0].domain, "fathom");
  EXPECT_EQ(u.ranges[0].end_ns, 19000u);
  EXPECT_EQ(u.kernels[1].correlation, 42u);
  EXPECT_EQ(u.api[0].correlation, 42u);
  EXPECT_EQ(analysis_to_json(analyze(u)), analysis_to_json(analyze(t)));
}

TEST(ProfileRanges, StepMarksFromFathomRanges) {
  const std::vector<RangeEvent> r = {{"decode step 6", "fathom", 300, 400},
                                     {"layer 0", "fathom", 310, 320},
                                     {"prefill", "fathom", 100, 200},
                                     {"decode step 5", "fathom", 200, 300},
                                     {"my own range", "", 50, 60}};
  const std::vector<StepMark> m = step_marks_from_ranges(r);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].phase, "prefill");
  EXPECT_EQ(m[0].t_ns, 100u);
  EXPECT_EQ(m[1].phase, "decode-first");
  EXPECT_EQ(m[2].phase, "decode");
  EXPECT_EQ(m[2].t_ns, 300u);
  EXPECT_TRUE(step_marks_from_ranges({{"forward", "", 1, 2}}).empty());
}

TEST(ProfileRanges, RangesDefineStepsAndAttributeByLaunch) {
  Trace t = costed_trace();
  t.steps.clear();
  // The second decode range ends at 24000, before the gemv that starts at 25000 on the GPU; that
  // gemv was launched by the graph launch at 21050, inside the range: it counts there.
  t.ranges = {{"prefill", "fathom", 1000, 9000},
              {"decode step 5", "fathom", 11000, 19000},
              {"decode step 6", "fathom", 21000, 24000},
              {"layer 0", "fathom", 12000, 13500},
              {"layer 1", "fathom", 14000, 17000}};
  t.api[0].correlation = 1;
  t.api[1].correlation = 2;
  t.api[2].correlation = 3;
  t.kernels[1].correlation = 1;
  t.kernels[3].correlation = 2;
  for (size_t i = 4; i < 7; ++i) t.kernels[i].correlation = 3;
  const TraceAnalysis a = analyze(t);
  EXPECT_EQ(a.step_source, "nvtx");
  ASSERT_EQ(a.phases.size(), 3u);
  EXPECT_EQ(a.phases[0].phase, "prefill");
  EXPECT_EQ(a.phases[1].phase, "decode-first");
  EXPECT_EQ(a.phases[2].phase, "decode");
  EXPECT_EQ(a.steady().phase, "decode");
  EXPECT_EQ(a.steady().kernels, 3);
  EXPECT_EQ(a.phases[1].kernels, 3);

  const RangeStat* step = nullptr;
  const RangeStat* layer = nullptr;
  for (const RangeStat& r : a.ranges) {
    if (r.name == "decode step N") step = &r;
    if (r.name == "layer N") layer = &r;
  }
  ASSERT_NE(step, nullptr);
  ASSERT_NE(layer, nullptr);
  EXPECT_EQ(step->count, 2);
  EXPECT_DOUBLE_EQ(step->total_us, 11.0);
  EXPECT_DOUBLE_EQ(step->mean_us, 5.5);
  EXPECT_EQ(step->kernels, 6);
  EXPECT_EQ(step->launch_calls, 2);
  EXPECT_EQ(step->graph_launches, 1);
  EXPECT_EQ(step->allocs, 1);
  EXPECT_EQ(step->host_syncs, 0);  // the stream sync at 26000 is after the range
  EXPECT_EQ(step->copies, 2);
  EXPECT_DOUBLE_EQ(step->copy_bytes, 12);
  EXPECT_DOUBLE_EQ(step->bytes, 4 * 2e6);  // four gemv launches with a 2 MB hint
  EXPECT_DOUBLE_EQ(step->per_range(double(step->kernels)), 3.0);
  // Launched at 11700 (before either layer range): only the uncorrelated norm at 14000 counts.
  EXPECT_EQ(layer->count, 2);
  EXPECT_EQ(layer->kernels, 1);

  const std::string report = format_report(t, a);
  EXPECT_NE(report.find("NVTX ranges"), std::string::npos) << report;
  EXPECT_NE(report.find("decode step N"), std::string::npos) << report;
  EXPECT_NE(report.find("steps from the NVTX ranges"), std::string::npos) << report;
  const nlohmann::json j = nlohmann::json::parse(analysis_to_json(a));
  EXPECT_EQ(j["step_source"], "nvtx");
  EXPECT_EQ(j["ranges"].size(), 3u);  // prefill, decode step N, layer N
  // The Chrome trace shows the ranges on their own host row.
  const nlohmann::json c = nlohmann::json::parse(trace_to_chrome_json(t));
  int nvtx = 0;
  for (const auto& e : c["traceEvents"])
    if (e["ph"] == "X" && e["cat"] == "nvtx") ++nvtx;
  EXPECT_EQ(nvtx, 5);
}

TEST(ProfileRanges, MarkersWhenNoStepRanges) {
  Trace t = sample_trace();
  t.ranges = {{"forward", "", 11000, 19000}};
  const TraceAnalysis a = analyze(t);
  EXPECT_EQ(a.step_source, "markers");
  EXPECT_EQ(a.steady().n_steps, 2);
  ASSERT_EQ(a.ranges.size(), 1u);
  EXPECT_EQ(a.ranges[0].name, "forward");
}

// ---- the prefill section ----------------------------------------------------------------------

const char* kNvjet = "nvjet_sm90_hss_128x256_64x4_1x2_h_bz_coopA_TNT";
const char* kAttnPrefill = "void attention_prefill_kernel<128>(fathom::cuda::AttentionParams)";
const char* kSplitK =
    "void splitKreduce_kernel<32, 16, int, float, __half, float, __half, true, false, false>"
    "(cublasSplitKParams<float>, float const*, __half const*, __half*, float const*, float const*, __half const*, "
    "float const*, __half*, void*, long, float*, int*)";
const char* kConvert = "void convert_kernel<__half>(float const*, __half*, long)";
const char* kArgmax = "argmax_kernel(float const*, int*, int)";

// Timeline (ns), NVTX ranges "prefill" [1000, 21000) and "decode step 512" [30000, 32000); the
// prefill phase runs to 30000:
//   stream 7: nvjet [2000,6000), nvjet [7000,11000), attention [11000,13000), splitKreduce
//             [13500,14000), convert [14000,14500), D2H [16000,16100), argmax [18000,18500)
//   stream 9: rms_norm [5000,6500)
//   decode:   gemv [30500,31000)
// Union of the prefill's operations: [2000,6500) [7000,13000) [13500,14500) [16000,16100)
// [18000,18500): idle 0.5 + 0.5 + 1.5 + 1.9 = 4.4 us in 4 gaps over a 16.5 us span.
Trace prefill_trace() {
  Trace t;
  t.source = "engine";
  t.device = "NVIDIA H200";
  t.model = "llama3-8b F16 (synthetic)";
  t.n_prompt = 512;
  t.n_decode = 1;
  t.read_gbps = 4000;
  t.bf16_tflops = 800;
  t.limits = h100_limits();
  t.begin_ns = 1000;
  t.end_ns = 32000;
  t.ranges = {{"prefill", "fathom", 1000, 21000}, {"decode step 512", "fathom", 30000, 32000}};
  t.kernels = {kernel(kNvjet, 2000, 6000),        kernel(kNvjet, 7000, 11000),
               kernel(kAttnPrefill, 11000, 13000), kernel(kSplitK, 13500, 14000),
               kernel(kConvert, 14000, 14500),     kernel(kArgmax, 18000, 18500),
               kernel(kNorm, 5000, 6500, 9),       kernel(kGemv, 30500, 31000)};
  t.memcpys = {MemcpyEvent{CopyKind::D2H, 4, 16000, 16100, 7, false}};
  // The prefill's own hint for the attention kernel (4 MB, 4 MFLOP a launch); the decode steps'
  // table has another figure under the same name, which the prefill must not use.
  t.prefill_costs = {KernelCost{"attention_prefill_kernel<128>", 1, 1, 4e6, 4e6}};
  t.costs = {KernelCost{"attention_prefill_kernel<128>", 1, 1, 1e3, 1e3},
             KernelCost{"gemv_kernel<(fathom::GgmlType)12>", 1, 1, 2e6, 4e6}};
  return t;
}

TEST(ProfilePrefill, KernelsIdleAndTokensPerSecond) {
  const Trace t = prefill_trace();
  const TraceAnalysis a = analyze(t, 2);  // top_n cuts the phase tables, not the prefill's list
  const PrefillStats& p = a.prefill;
  ASSERT_TRUE(p.present);
  const double eps = 1e-9;
  EXPECT_EQ(p.ranges, 1);
  EXPECT_EQ(p.tokens, 512);
  EXPECT_NEAR(p.wall_us, 20.0, eps);
  EXPECT_NEAR(p.tokens_per_s, 512 / 20e-6, 1e-3);
  EXPECT_EQ(p.kernels, 7);
  EXPECT_NEAR(p.kernel_us, 8 + 2 + 0.5 + 0.5 + 0.5 + 1.5, eps);
  EXPECT_NEAR(p.busy_us, 12.1, eps);
  EXPECT_NEAR(p.gpu_span_us, 16.5, eps);
  EXPECT_NEAR(p.idle_us, 4.4, eps);
  EXPECT_EQ(p.idle_gaps, 4);
  EXPECT_NEAR(p.median_idle_us, 1.0, eps);
  EXPECT_NEAR(p.max_idle_us, 1.9, eps);
  EXPECT_EQ(p.long_idle_gaps, 0);

  // Every kernel by total time (ties by name); the decode step's gemv is not among them.
  ASSERT_EQ(p.kernel_list.size(), 6u);
  const std::vector<std::string> names = {kNvjet,
                                          "attention_prefill_kernel<128>",
                                          "rms_norm_kernel",
                                          "argmax_kernel",
                                          "convert_kernel<__half>",
                                          kernel_display_name(kSplitK)};
  for (size_t i = 0; i < names.size(); ++i) EXPECT_EQ(p.kernel_list[i].name, names[i]) << i;
  const KernelStat& gemm = p.kernel_list[0];
  EXPECT_EQ(gemm.count, 2);
  EXPECT_NEAR(gemm.total_us, 8.0, eps);
  EXPECT_NEAR(gemm.mean_us, 4.0, eps);
  EXPECT_NEAR(gemm.pct_gpu, 100.0 * 8 / 13, eps);
  EXPECT_FALSE(gemm.has_cost);  // cuBLASLt's kernels carry no hint
  // The prefill's hint: 4 MB and 4 MFLOP in 2 us = 2000 GB/s (50%), 2 TFLOP/s (0.25%).
  const KernelStat& attn = p.kernel_list[1];
  EXPECT_TRUE(attn.has_cost);
  EXPECT_NEAR(attn.gbps, 2000, eps);
  EXPECT_NEAR(attn.tflops, 2.0, eps);
  EXPECT_NEAR(attn.pct_bw, 50, eps);
  EXPECT_NEAR(attn.pct_flops, 0.25, eps);
  EXPECT_DOUBLE_EQ(p.hinted_bytes, 4e6);
  EXPECT_DOUBLE_EQ(p.hinted_us, 2.0);
  // The prefill phase's own table uses the prefill's hints too; the decode phase keeps its own.
  const PhaseStats* pre = a.phase("prefill");
  ASSERT_NE(pre, nullptr);
  ASSERT_EQ(pre->top_kernels.size(), 2u);
  EXPECT_TRUE(pre->top_kernels[1].has_cost);
  EXPECT_NEAR(pre->top_kernels[1].gbps, 2000, eps);
  // The NVTX range table's byte figure of the prefill range: its one hinted launch.
  for (const RangeStat& r : a.ranges)
    if (r.name == "prefill") EXPECT_DOUBLE_EQ(r.bytes, 4e6);
}

TEST(ProfilePrefill, LayoutKernelsAreFlagged) {
  const Trace t = prefill_trace();
  const TraceAnalysis a = analyze(t);
  const PrefillStats& p = a.prefill;
  ASSERT_EQ(p.layout_kernels.size(), 2u);
  EXPECT_EQ(p.layout_kernels[0].name, "convert_kernel<__half>");
  EXPECT_EQ(p.layout_kernels[1].name, kernel_display_name(kSplitK));
  EXPECT_NEAR(p.layout_us, 1.0, 1e-9);
  EXPECT_NEAR(p.layout_pct, 100.0 / 13, 1e-9);

  const std::string r = format_report(t, a);
  EXPECT_NE(r.find("prefill (NVTX range \"prefill\"): 512 tokens in 0.02 ms = 25600000 tok/s"), std::string::npos) << r;
  EXPECT_NE(r.find("GPU idle between the prefill's kernels/copies: 4.4 us of its 16.5 us"), std::string::npos) << r;
  EXPECT_NE(r.find("in 4 gaps"), std::string::npos) << r;
  EXPECT_NE(r.find("layout kernels (transpose/reformat/convert/copy/split-K reduce): 1.0 us = 7.7%"),
            std::string::npos)
      << r;
  EXPECT_NE(r.find("convert_kernel<__half> (layout, 1 calls, 0.5 us)"), std::string::npos) << r;
  EXPECT_NE(r.find("splitKreduce_kernel<32, 16, int, float, __half, float, __half, true, false, false> (split-K reduce"),
            std::string::npos)
      << r;
  EXPECT_NE(r.find("prefill kernels (by total time"), std::string::npos) << r;
  EXPECT_NE(r.find(kNvjet), std::string::npos) << r;
  // The attention row with its achieved figures.
  const size_t row = r.find("attention_prefill_kernel<128>", r.find("prefill kernels (by total time"));
  ASSERT_NE(row, std::string::npos) << r;
  const std::string line = r.substr(r.rfind('\n', row) + 1, row - r.rfind('\n', row) - 1);
  EXPECT_NE(line.find(" 2000 "), std::string::npos) << line;
  EXPECT_NE(line.find(" 2.00 "), std::string::npos) << line;

  // A prefill without layout kernels says so.
  Trace clean = t;
  clean.kernels.erase(clean.kernels.begin() + 3, clean.kernels.begin() + 5);
  const TraceAnalysis c = analyze(clean);
  EXPECT_TRUE(c.prefill.layout_kernels.empty());
  const std::string rc = format_report(clean, c);
  EXPECT_NE(rc.find("split-K reduce): none among the 4 distinct kernels"), std::string::npos) << rc;
}

TEST(ProfilePrefill, LayoutMatcherIsTheDoctors) {
  for (const char* n : {"void cublasLt::reformat_kernel<float>(int)", "transpose_kernel<__half>", "matrixLayoutConvert",
                        "void at::native::elementwise_kernel<128, 4, copy_kernel>()", "convert_kernel<__half>",
                        "cpy_f32_f16", "cat_array_batched_copy", "permute_dims"})
    EXPECT_TRUE(is_layout_kernel(n)) << n;
  for (const char* n : {kNvjet, "embedding_kernel<__half>", "k_get_rows_float", "attention_prefill_kernel<128>",
                        "rms_norm_kernel", "splitKreduce_kernel",
                        // layouts and converters in a GEMM's / attention kernel's template arguments
                        "void cutlass::Kernel<cutlass::gemm::kernel::Gemm<cutlass::half_t, cutlass::layout::RowMajor, "
                        "cutlass::epilogue::thread::LinearCombination<float, 4, cutlass::NumericConverter<float>>>>"
                        "(Params)",
                        "void flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, cutlass::layout::RowMajor>>(Params)"})
    EXPECT_FALSE(is_layout_kernel(n)) << n;
  EXPECT_TRUE(is_splitk_reduce_kernel(kSplitK));
  EXPECT_FALSE(is_splitk_reduce_kernel(kNvjet));
}

TEST(ProfilePrefill, LongIdleIsHostWork) {
  Trace t = prefill_trace();
  // A first-pass plan build: the argmax starts 2 ms after the D2H copy.
  t.ranges[0].end_ns = 3000000;
  t.ranges[1] = {"decode step 512", "fathom", 3000000, 3002000};
  t.kernels[5] = kernel(kArgmax, 2016100, 2016600);
  t.kernels.pop_back();
  t.end_ns = 3002000;
  const PrefillStats p = analyze(t).prefill;
  EXPECT_EQ(p.idle_gaps, 4);
  EXPECT_EQ(p.long_idle_gaps, 1);
  EXPECT_NEAR(p.long_idle_us, 2000.0, 1e-9);
  EXPECT_NEAR(p.max_idle_us, 2000.0, 1e-9);
  EXPECT_NEAR(p.idle_us, 0.5 + 0.5 + 1.5 + 2000.0, 1e-9);
  EXPECT_NE(format_report(t, analyze(t)).find("1 over 1000 us (2000.0 us: host work"), std::string::npos);
}

TEST(ProfilePrefill, AbsentWithoutAPrefillRange) {
  // Host step markers only (no NVTX ranges), and NVTX decode ranges without a prefill range.
  Trace markers = sample_trace();
  Trace decode_only = prefill_trace();
  decode_only.ranges.erase(decode_only.ranges.begin());
  for (const Trace& t : {markers, decode_only}) {
    const TraceAnalysis a = analyze(t);
    EXPECT_FALSE(a.prefill.present);
    EXPECT_TRUE(a.prefill.kernel_list.empty());
    const std::string r = format_report(t, a);
    EXPECT_EQ(r.find("prefill (NVTX range"), std::string::npos) << r;
    EXPECT_EQ(r.find("layout kernels"), std::string::npos) << r;
    const nlohmann::json j = nlohmann::json::parse(analysis_to_json(a));
    EXPECT_FALSE(j.contains("prefill"));
  }
}

TEST(ProfilePrefill, JsonKeys) {
  const Trace t = prefill_trace();
  const TraceAnalysis a = analyze(t);
  const nlohmann::json j = nlohmann::json::parse(analysis_to_json(a));
  // The existing keys are all still there, the phase tables' kernels unchanged.
  for (const char* k : {"overall", "phases", "step_source", "ranges"}) EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_FALSE(j["phases"][0]["top_kernels"][0].contains("flag"));
  ASSERT_TRUE(j.contains("prefill"));
  const nlohmann::json& p = j["prefill"];
  for (const char* k : {"ranges", "tokens", "wall_us", "tokens_per_s", "kernels", "kernel_us", "busy_us",
                        "gpu_span_us", "idle_us", "idle_gaps", "median_idle_us", "max_idle_us", "long_idle_gaps",
                        "long_idle_us", "hinted_bytes", "hinted_flops", "hinted_us", "kernel_list", "layout_kernels",
                        "layout_us", "layout_pct"})
    EXPECT_TRUE(p.contains(k)) << k;
  EXPECT_EQ(p["tokens"], 512);
  EXPECT_NEAR(p["idle_us"].get<double>(), 4.4, 1e-9);
  ASSERT_EQ(p["kernel_list"].size(), 6u);
  const nlohmann::json& attn = p["kernel_list"][1];
  EXPECT_EQ(attn["name"], "attention_prefill_kernel<128>");
  EXPECT_EQ(attn["count"], 1);
  EXPECT_EQ(attn["flag"], "");
  EXPECT_EQ(attn["has_cost"], true);
  EXPECT_NEAR(attn["tflops"].get<double>(), 2.0, 1e-9);
  EXPECT_NEAR(attn["pct_gpu"].get<double>(), 100.0 * 2 / 13, 1e-9);
  EXPECT_EQ(p["kernel_list"][4]["flag"], "layout");
  EXPECT_EQ(p["kernel_list"][5]["flag"], "split-K reduce");
  ASSERT_EQ(p["layout_kernels"].size(), 2u);
  EXPECT_EQ(p["layout_kernels"][0]["name"], "convert_kernel<__half>");
  EXPECT_EQ(p["layout_kernels"][1]["flag"], "split-K reduce");
  // The trace's prefill hints survive the JSON round trip (and an old trace without them reads).
  const Trace u = trace_from_json(trace_to_json(t));
  ASSERT_EQ(u.prefill_costs.size(), 1u);
  EXPECT_DOUBLE_EQ(u.prefill_costs[0].flops, 4e6);
  EXPECT_EQ(analysis_to_json(analyze(u)), analysis_to_json(a));
  nlohmann::json old = nlohmann::json::parse(trace_to_json(t));
  old.erase("prefill_costs");
  EXPECT_TRUE(trace_from_json(old.dump()).prefill_costs.empty());
}

}  // namespace
}  // namespace fathom
