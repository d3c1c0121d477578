#!/usr/bin/env bash
# One GPU call: build, all GPU tests, the profiler check, then decode A/B of the GEMV v3 switches
# (FATHOM_GEMV_PREFETCH_BYTES, FATHOM_GEMV_MAX_SPLIT; docs/perf/NOTES.md) and the prefill table
# rows changed by the dequant threshold. Outputs packed into $OUT/results.tgz.
set -u
FINAL=${OUT:-/tmp/fathom-out}
export OUT=/tmp/fathom-run
mkdir -p "$OUT" "$FINAL"
trap 'tar czf "$FINAL/results.tgz" -C "$OUT" .' EXIT
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
stamp build
scripts/device_build.sh build-dev >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
stamp "gpu tests"
timeout 200 build-dev/tests/fathom_gpu_tests >"$OUT/gpu_tests.log" 2>&1
echo "gpu tests rc=$?"; grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure|worst" "$OUT/gpu_tests.log" | head -20
stamp profile
timeout 120 bash scripts/device_profile_check.sh >"$OUT/profile.log" 2>&1; echo "profile rc=$?"; grep -E "^(PASS|FAIL)" "$OUT/profile.log"
grep -A6 "^  phase" "$OUT/profile.txt" 2>/dev/null | head -8
B=build-dev/bin/fathom
for cfg in "default::" "noprefetch:0:" "nosplit::1" "neither:0:1"; do
  name=${cfg%%:*}; rest=${cfg#*:}; pf=${rest%%:*}; sp=${rest#*:}
  stamp "decode $name"
  env ${pf:+FATHOM_GEMV_PREFETCH_BYTES=$pf} ${sp:+FATHOM_GEMV_MAX_SPLIT=$sp} timeout 120 $B bench \
    --synthetic gemma3-270m,llama3.2-1b,llama3-8b --type Q4_K_M,Q4_0,F16 -p 512 -n 128 -r 3 -q \
    --json "$OUT/ab_$name.json" >"$OUT/ab_$name.md" 2>&1
  grep -E "tg128" "$OUT/ab_$name.md" | awk -F'|' -v n=$name '{print n, $2, $4, $7, $8}'
done
grep -E "pp512" "$OUT/ab_default.md" | awk -F'|' '{print "prefill", $2, $4, $7}'
stamp done
