# Steps for issue 8 (prefill Q4_K_M within 15% of F16; docs/perf/prefill_chunks.md): the mma_q8
# split-K partials share the dequant scratch's bytes, so llama3-8b Q4_K_M prefills in 2048-token
# chunks (4 FFN slices of 3584) instead of 1024 (2 of 7168). A fragment meant to be SOURCED by a
# device script that has already built the tree and set
#   $T  the GPU test binary, $B  the fathom CLI, $O  the folder for logs.
# Correctness first (engine, shared-workspace, mma_q8, prefill GEMM tests), then pp512/pp4096 for
# Q4_K_M and F16, a batch-8 decode row (mma_q8 partials in the shared bytes, graphs), and the A/B:
# Q4_K_M pp512 and pp4096 with FATHOM_MMQ_SHARE=0 (the plan before: partials in bytes of their own, 1024-token
# chunks). Every step under `timeout`; ~3-4 minutes in all.
echo "== prefill/engine/mma_q8 tests"
timeout 150 "$T" --gtest_filter='Engine.*:EngineWorkspace.*:*EngineVsReference*:GpuMmaQ8.*:GpuPrefill.*:GemmPlan.*:*PdlBitExact*' \
  >"$O/prefill_tests.log" 2>&1
echo "tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|Failure|exception|shared vs separate" "$O/prefill_tests.log" | head -40
echo "== pp512 / pp4096, llama3-8b Q4_K_M and F16 (expect Q4_K_M chunks of 2048)"
timeout 120 "$B" bench --synthetic llama3-8b --type Q4_K_M,F16 -p 512,4096 -n 2 -r 1 -q >"$O/prefill_pp.md" 2>&1
echo "pp bench rc=$?"
grep -E "^\||^memory|rror" "$O/prefill_pp.md"
echo "== decode batch 8, llama3-8b Q4_K_M (mma_q8 partials in the shared bytes)"
timeout 60 "$B" bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8 -r 1 -q >"$O/prefill_b8.md" 2>&1
echo "b8 bench rc=$?"
grep -E "^\||^memory|rror" "$O/prefill_b8.md"
echo "== A/B: Q4_K_M pp512 / pp4096 with FATHOM_MMQ_SHARE=0 (the old plan: 1024-token chunks, 2 FFN slices)"
FATHOM_MMQ_SHARE=0 timeout 60 "$B" bench --synthetic llama3-8b --type Q4_K_M -p 512,4096 -n 2 -r 1 -q \
  >"$O/prefill_ab.md" 2>&1
echo "ab bench rc=$?"
grep -E "^\||^memory|rror" "$O/prefill_ab.md"
