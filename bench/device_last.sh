#!/usr/bin/env bash
# End-of-session GPU call: build HEAD's tarball, every GPU test, then the issue-target
# rows (issues 6 and 8) in one table. Logs go straight to $OUT (no tar at exit), so a call cut short
# still returns what ran. Usage (carry [".devdeps", ".devsrc-X"]): bash bench/device_last.sh .devsrc-X/head.tgz
source "$(dirname "$0")/device_start.sh"
device_start "${1:-}" /tmp/fathom-last
stamp tests
timeout 210 $T >"$O/gpu_tests.log" 2>&1; echo "gpu tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure$|^\[  FAILED  \]" "$O/gpu_tests.log" | head -30
b() {  # label, args...
  local label=$1; shift
  timeout 60 $B bench "$@" -r 1 -q >"$O/bench_$label.md" 2>&1; echo "== $label rc=$?"; grep -E "^\| [a-z]" "$O/bench_$label.md" | grep -v "^| model"
}
stamp bench
b 8b_tg --synthetic llama3-8b --type Q4_K_M,Q8_0,F16 -d 512 -n 128
b 8b_pp --synthetic llama3-8b --type Q4_K_M,F16 -p 512,4096 -n 4
b 1b_tg --synthetic llama3.2-1b --type Q4_K_M,F16 -d 512 -n 128
b 8b_batch --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8,16,32
b 8b_depth --synthetic llama3-8b --type Q4_K_M -d 32768 -n 32
stamp done
