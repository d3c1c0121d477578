#!/usr/bin/env bash
# One GPU call: build a source tarball, all GPU tests, then where decode time goes: fathom profile
# of synthetic llama3-8b / llama3.2-1b Q4_K_M (top kernels, categories), decode bench with PDL on
# and off, and the second profile/doctor check script.
# Usage (device tool, carry [".devdeps", ".devsrc"]): bash bench/device_decode_run.sh [src.tgz]
source "$(dirname "$0")/device_lib.sh"
device_begin "$@"
stamp "gpu tests"
timeout 240 build-dev/tests/fathom_gpu_tests >"$OUT/gpu_tests.log" 2>&1
echo "gpu tests rc=$?"; grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure" "$OUT/gpu_tests.log" | head -20
stamp profile
for m in llama3-8b llama3.2-1b; do
  timeout 120 $B profile --synthetic $m --type Q4_K_M -n 16 --top 25 --json "$OUT/prof_$m.json" >"$OUT/prof_$m.txt" 2>&1
  echo "== profile $m rc=$?"; sed -n '1,200p' "$OUT/prof_$m.txt" | grep -v "^$" | head -75
done
stamp "decode pdl on/off"
for pdl in 1 0; do
  FATHOM_PDL=$pdl timeout 120 $B bench --synthetic gemma3-270m,llama3.2-1b,llama3-8b --type Q4_K_M -p 16 -n 128 -r 3 -q >"$OUT/dec_pdl$pdl.md" 2>&1
  grep -E "tg128" "$OUT/dec_pdl$pdl.md" | awk -F'|' -v n=pdl$pdl '{print n, $2, $4, $7, $8}'
done
stamp "profile check 2"
timeout 150 bash scripts/device_profile_check2.sh build-dev >"$OUT/profcheck2.log" 2>&1; echo "check2 rc=$?"; grep -E "^(PASS|FAIL)" "$OUT/profcheck2.log" | head -30
stamp done
