# Steps for the tensor-core small-batch matmul (matmul_mma_q8, session 15: fewer instructions per
# super-block, docs/perf/mma_q8.md). A fragment meant to be SOURCED by a device script that has
# already built the tree and set
#   $T  the GPU test binary, $B  the fathom CLI, $O  the folder for logs.
# Correctness first (GpuMmaQ8.*), then the kernel bench at the Llama-3-8B shapes, then the decode
# bench at batch 8 / 16, each also with FATHOM_MMQ_Q4K_CVT=i2f (Q4_K's planes combined by IMAD +
# I2F instead of FADD, FADD, FFMA: the same bits). Every step under `timeout`: ~3 minutes
# expected, 5.8 if every step ran into its timeout.
# The A/B against the code before session 15 (producer / scale-decode / high-nibble changes, no
# switch) is this fragment run on a build of the commit before them (47b8d5a).
echo "== mma_q8 tests"
timeout 90 "$T" --gtest_filter='GpuMmaQ8.*' >"$O/mma_tests.log" 2>&1
echo "mma tests rc=$?"
grep -E "^\[  (PASSED|FAILED) |Failure|worst|exception" "$O/mma_tests.log" | head -30
echo "== mma_q8 tests, FATHOM_MMQ_Q4K_CVT=i2f"
FATHOM_MMQ_Q4K_CVT=i2f timeout 60 "$T" --gtest_filter='GpuMmaQ8.*' >"$O/mma_tests_i2f.log" 2>&1
echo "mma tests (i2f) rc=$?"
grep -E "^\[  (PASSED|FAILED) |Failure|worst|exception" "$O/mma_tests_i2f.log" | head -30
echo "== mma_q8 kernel bench"
FATHOM_MMQ_BENCH='Q4_K,14336,4096;Q4_K,4096,14336;Q4_K,4096,4096;Q6_K,4096,14336' timeout 60 "$T" \
  --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' >"$O/mma_kbench.log" 2>&1
echo "mma kbench rc=$?"
grep "mmq-bench" "$O/mma_kbench.log"
echo "== mma_q8 kernel bench, FATHOM_MMQ_Q4K_CVT=i2f (Q4_K shapes)"
FATHOM_MMQ_Q4K_CVT=i2f FATHOM_MMQ_BENCH='Q4_K,14336,4096;Q4_K,4096,14336;Q4_K,4096,4096' timeout 40 "$T" \
  --gtest_also_run_disabled_tests --gtest_filter='GpuMmaQ8.DISABLED_Bench' >"$O/mma_kbench_i2f.log" 2>&1
echo "mma kbench (i2f) rc=$?"
grep "mmq-bench" "$O/mma_kbench_i2f.log"
echo "== decode bench llama3-8b Q4_K_M, batch 8 / 16"
timeout 50 "$B" bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16 -r 1 -q >"$O/mma_decode.md" 2>&1
echo "decode bench rc=$?"
grep -E "^\|" "$O/mma_decode.md"
echo "== decode bench, FATHOM_MMQ_Q4K_CVT=i2f"
FATHOM_MMQ_Q4K_CVT=i2f timeout 50 "$B" bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16 -r 1 -q \
  >"$O/mma_decode_i2f.md" 2>&1
echo "decode bench (i2f) rc=$?"
grep -E "^\|" "$O/mma_decode_i2f.md"
