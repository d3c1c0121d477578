#!/usr/bin/env bash
# One GPU call: build the source tarball, run the tensor-core matmul tests (the review's new shapes,
# then the earlier ones), then compute-sanitizer over the split-K / prefill / attention tests:
# memcheck, racecheck and initcheck, as parallel processes (each its own timeout) so that the
# whole call fits one 600 s command. Usage (carry [".devdeps", ".devsrc-mmqt"], timeout_s 600):
#   bash bench/device_sanitize_new.sh .devsrc-mmqt/head.tgz
# Logs land in $OUT (results.tgz): tests_new.log, tests_old.log, <tool>_<set>.log.
source "$(dirname "$0")/device_lib.sh"
device_begin "$@"
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
NEW='GpuMmaQ8.LmHeadShape:GpuMmaQ8.Q6KColumnRule:GpuMmaQ8.FusedGateUpSplitK:GpuMmaQ8.ManyTilesAndSmallWorkspace:GpuMmaQ8.CudaGraphReplaysMatchEager'
# The LM-head case reads 0.4-0.6 GB per launch 12 times: kept out of the main sanitizer sets and
# run alone under memcheck with a short timeout (rc 124 there = it takes minutes, not a failure).
MMQ='GpuMmaQ8.*-GpuMmaQ8.LmHeadShape'
OTHERS='GpuGemmSplit.*:GpuPrefill.*:GpuAttention.Prefill*:GpuAttentionDecode.*'

summary() {  # test log: gtest verdict lines and the planner lines the new tests print
  grep -E "^\[ +(OK|FAILED|PASSED|SKIPPED) +\]|Failure|\[mmq-(graph|shape)\]" "$1" | head -${2:-60}
}

stamp "tests (new)"
timeout 60 $T --gtest_filter="$NEW" >"$OUT/tests_new.log" 2>&1
echo "new GpuMmaQ8 tests rc=$?"; summary "$OUT/tests_new.log" 80
stamp "tests (old)"
timeout 45 $T --gtest_filter="GpuMmaQ8.*-$NEW" >"$OUT/tests_old.log" 2>&1
echo "old GpuMmaQ8 tests rc=$?"; summary "$OUT/tests_old.log" 20

# The profile's prefill section (it had run only on hand-built traces) and the decode step's kernel
# table that the batch-1 GEMV work starts from.
stamp "profiles"
timeout 45 $B profile --synthetic llama3-8b --type F16 --prefill 512 -n 1 >"$OUT/profile_prefill_f16.txt" 2>&1
echo "profile prefill rc=$?"; grep -A25 -i "prefill" "$OUT/profile_prefill_f16.txt" | head -40
timeout 45 $B profile --synthetic llama3-8b --type Q4_K_M -n 16 >"$OUT/profile_decode_q4km.txt" 2>&1
echo "profile decode rc=$?"; head -45 "$OUT/profile_decode_q4km.txt"

# Sanitizers in parallel: each process gets its own gtest TempDir (the engine tests write their
# tiny GGUF models there under fixed names).
san() {  # name tool timeout filter
  local name=$1 tool=$2 lim=$3 filt=$4
  mkdir -p "/tmp/mmqt-$name"
  TEST_TMPDIR="/tmp/mmqt-$name" timeout "$lim" "$CS" --tool "$tool" --print-limit 20 $T --gtest_filter="$filt" \
    >"$OUT/$name.log" 2>&1
  echo "rc=$?" >>"$OUT/$name.log"
}
stamp "sanitizers (parallel)"
san memcheck_mmq memcheck 270 "$MMQ" &
san memcheck_others memcheck 270 "$OTHERS" &
san memcheck_lmhead memcheck 120 'GpuMmaQ8.LmHeadShape' &
san racecheck_mmq racecheck 270 "$MMQ" &
san racecheck_gemmsplit racecheck 270 'GpuGemmSplit.*' &
san initcheck_mmq initcheck 270 "$MMQ" &
wait
stamp "sanitizers done"
for name in memcheck_mmq memcheck_others memcheck_lmhead racecheck_mmq racecheck_gemmsplit initcheck_mmq; do
  f="$OUT/$name.log"
  echo "== $name: $(tail -1 "$f") (rc 124/137 = timed out)"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^\[  (PASSED|FAILED) |^\[  FAILED  \]" "$f" | head -12
  grep -m 5 -E "Invalid|Uninitialized|Race reported|hazard|Program hit" "$f"
done
stamp done
