#!/usr/bin/env bash
# One GPU call: compute-sanitizer over the kernels changed in session 12 (direct Q4_K GEMV, mma_q8
# with 16 warps + per-warp scale buffers, rms_norm_vec, rope_kv, decode attention), in parallel
# processes with their own timeouts. Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_sanitize12.sh .devsrc-X/head.tgz
source "$(dirname "$0")/device_lib.sh"
device_begin "$@"
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
san() {  # name tool timeout filter
  mkdir -p "/tmp/s12-$1"
  TEST_TMPDIR="/tmp/s12-$1" timeout "$3" "$CS" --tool "$2" --print-limit 20 $T --gtest_filter="$4" >"$OUT/$1.log" 2>&1
  echo "rc=$?" >>"$OUT/$1.log"
}
G='GpuGemvQ8.*'; M='GpuMmaQ8.*-GpuMmaQ8.LmHeadShape'; S='GpuOps.RmsNorm*:GpuOps.Rope*:GpuAttentionDecode.*'
stamp sanitizers
san memcheck_gemv memcheck 150 "$G" &
san memcheck_mmq memcheck 150 "$M" &
san memcheck_small memcheck 150 "$S" &
san racecheck_mmq racecheck 150 "$M" &
san racecheck_small racecheck 150 "$S:$G" &
san initcheck_gemv initcheck 150 "$G:$S" &
wait
for n in memcheck_gemv memcheck_mmq memcheck_small racecheck_mmq racecheck_small initcheck_gemv; do
  f="$OUT/$n.log"; echo "== $n: $(tail -1 "$f") (124 = timed out)"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^\[  (PASSED|FAILED) " "$f" | sort | uniq -c | head -6
  grep -m 4 -E "Invalid|Uninitialized|Race reported|hazard|Program hit" "$f"
done
stamp done
