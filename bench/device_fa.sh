#!/usr/bin/env bash
# One GPU call for the tensor-core prefill attention (src/cuda/attention_prefill.cu): build the
# source tarball, the prefill attention tests (gate), the prefill kernel bench
# (GpuAttention.DISABLED_BenchPrefill: 4k / 8k / 16k causal, D 128, 32/8 heads, every variant;
# D 64 / 256 at 4k), then (when the prefill tests pass) the whole model at pp512 / pp4096 with the
# new kernel and with FATHOM_ATTN_PREFILL=scalar (same run A/B), the engine tests, the Q2_K engine
# case with the scalar prefill (is its tolerance miss the attention's?), memcheck last.
# Model bench and engine tests run with FATHOM_ATTN_DECODE=old so that only the prefill kernel
# differs from the baseline runs.
# Usage (device tool, carry [".devdeps", ".devsrc-fa"]): bash bench/device_fa.sh .devsrc-fa/head.tgz
# (Session 12: the old decode kernel was deleted, so FATHOM_ATTN_DECODE=old below is ignored now;
# this script records the runs it made.)
source "$(dirname "$0")/device_lib.sh"
device_begin "$@"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader
pat='^\[  (PASSED|FAILED|SKIPPED) |^\[       OK|^\[  FAILED|Failure|worst element|attention\(n_head'
stamp "prefill tests"
timeout 100 $T --gtest_filter='GpuAttention.Prefill*:GpuAttention.Rejects*:-GpuAttention.PrefillVariants' >"$OUT/prefill_tests.log" 2>&1
rc_pre=$?
echo "prefill tests rc=$rc_pre"; grep -E "$pat" "$OUT/prefill_tests.log" | head -40
stamp bench
timeout 60 $T --gtest_also_run_disabled_tests --gtest_filter='GpuAttention.DISABLED_BenchPrefill' >"$OUT/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^bench|Failure|Expected" "$OUT/bench.log" | head -30
if [ "$rc_pre" = 0 ]; then
  export FATHOM_ATTN_DECODE=old
  stamp model
  timeout 100 $B bench --synthetic llama3-8b --type F16,Q4_K_M -p 512,4096 -n 1 -r 2 -q >"$OUT/model.md" 2>&1
  echo "model rc=$?"; grep -E "pp|rror" "$OUT/model.md" | head -8
  stamp "model, scalar prefill"
  FATHOM_ATTN_PREFILL=scalar timeout 100 $B bench --synthetic llama3-8b --type F16,Q4_K_M -p 512,4096 -n 1 -r 2 -q >"$OUT/model_scalar.md" 2>&1
  echo "model scalar rc=$?"; grep -E "pp|rror" "$OUT/model_scalar.md" | head -8
  stamp "engine tests"
  timeout 90 $T --gtest_filter='*Engine*:*Pdl*' >"$OUT/engine_tests.log" 2>&1
  echo "engine tests rc=$?"; grep -E "^\[  (PASSED|FAILED) |Failure|relative error" "$OUT/engine_tests.log" | head -12
  FATHOM_ATTN_PREFILL=scalar timeout 30 $T --gtest_filter='*EngineVsReference*Q2_K*' >"$OUT/engine_q2k_scalar.log" 2>&1
  echo "engine Q2_K with scalar prefill rc=$?"; grep -E "^\[  (PASSED|FAILED) |relative error" "$OUT/engine_q2k_scalar.log" | head -6
  unset FATHOM_ATTN_DECODE
fi
stamp memcheck
timeout 40 compute-sanitizer --tool memcheck $T --gtest_filter='GpuAttention.PrefillTensorCoreMasksAndBlockSizes' >"$OUT/memcheck.log" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid" "$OUT/memcheck.log" | head -6
stamp done
