#!/usr/bin/env bash
# Short end-of-session GPU call: build HEAD's tarball, every GPU test, then the issue-target rows.
# Logs go straight to $OUT (no tar at exit) so a call cut short still returns what ran.
# Usage (carry [".devdeps", ".devsrc"]): bash bench/device_last.sh [src.tgz]
set -u
O=${OUT:-/tmp/fathom-out}; mkdir -p "$O"
t0=$(date +%s); stamp() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
W=/tmp/fathom-last; rm -rf "$W"; mkdir -p "$W"; tar xzf "${1:-.devsrc/head.tgz}" -C "$W"; cp -r .devdeps "$W"/; cd "$W"
stamp build
scripts/device_build.sh build-dev >"$O/build.log" 2>&1 || { tail -30 "$O/build.log"; exit 1; }
T=build-dev/tests/fathom_gpu_tests; B=build-dev/bin/fathom
stamp tests
timeout 110 $T >"$O/gpu_tests.log" 2>&1; echo "gpu tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure$" "$O/gpu_tests.log" | head -20
stamp bench
timeout 45 $B bench --synthetic llama3-8b --type Q4_K_M,F16 -p 512,4096 -n 64 -r 1 -q >"$O/bench.md" 2>&1; grep -E "^\|" "$O/bench.md"
timeout 25 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 8 -r 1 -q >"$O/b8.md" 2>&1; grep -E "tg32|rror" "$O/b8.md"
stamp done
