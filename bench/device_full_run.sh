#!/usr/bin/env bash
# One call on the lent GPU machine (the lead's end-of-session run): build, every GPU test,
# memcheck on the engine tests, the bench table for the shapes x types, the regression
# guard against a deliberately slowed run, and the profiler check. Everything lands in $OUT.
# Usage (device tool, carry [".devdeps"]): bash bench/device_full_run.sh
set -u
FINAL=${OUT:-/tmp/fathom-out}
export OUT=/tmp/fathom-run   # everything is written here, then packed into $FINAL/results.tgz (the
mkdir -p "$OUT" "$FINAL"  # device tool returns at most 8 files)
trap 'tar czf "$FINAL/results.tgz" -C "$OUT" . ; cp "$OUT"/bench_table.* "$FINAL"/ 2>/dev/null' EXIT
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 ))s] $*"; }

stamp build
if ! scripts/device_build.sh build-dev >"$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"; exit 1
fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv >"$OUT/gpu.txt"

stamp "gpu tests"
timeout 240 build-dev/tests/fathom_gpu_tests >"$OUT/gpu_tests.log" 2>&1
echo "gpu tests rc=$?"; grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure|worst" "$OUT/gpu_tests.log" | head -30

stamp bench
B=build-dev/bin/fathom
timeout 300 $B bench --synthetic gemma3-270m,llama3.2-1b,qwen2.5-7b,llama3-8b --type F16,BF16,Q8_0,Q4_0,Q4_K_M,Q6_K \
  -p 512 -n 128 -r 3 -q --json "$OUT/bench_table.json" >"$OUT/bench_table.md" 2>"$OUT/bench_table.err"
echo "bench rc=$?"; cat "$OUT/bench_table.md"; tail -3 "$OUT/bench_table.err"

stamp "regression guard"
$B bench --synthetic gemma3-270m --type Q4_K_M -p 128 -n 64 -r 5 -q --json "$OUT/guard_base.json" >"$OUT/guard.log" 2>&1
$B bench --synthetic gemma3-270m --type Q4_K_M -p 128 -n 64 -r 5 -q --no-graphs --baseline "$OUT/guard_base.json" >>"$OUT/guard.log" 2>&1
echo "slowed run vs baseline rc=$? (expect 1)"; grep -E "REGRESSION|baseline:" "$OUT/guard.log"

if [ -x scripts/device_profile_check.sh ]; then
  stamp profile
  timeout 120 bash scripts/device_profile_check.sh >"$OUT/profile.log" 2>&1; echo "profile rc=$?"; tail -40 "$OUT/profile.log"
fi

stamp memcheck
timeout 150 compute-sanitizer --tool memcheck build-dev/tests/fathom_gpu_tests --gtest_filter='Engine*:GpuMatmul*' >"$OUT/memcheck.log" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT/memcheck.log" | head
stamp racecheck
timeout 90 compute-sanitizer --tool racecheck build-dev/tests/fathom_gpu_tests --gtest_filter='GpuMatmul*' >"$OUT/racecheck.log" 2>&1
echo "racecheck rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED" "$OUT/racecheck.log" | head
stamp done
