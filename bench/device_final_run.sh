#!/usr/bin/env bash
# End-of-session GPU call: build the source tarball, every GPU test, the bench table and the
# issue-target rows, a decode profile + doctor, then compute-sanitizer memcheck / racecheck /
# initcheck on the kernels changed this session. Perf first, sanitizers last (each with its own
# timeout) so a short budget still returns the numbers.
# Usage (device tool, carry [".devdeps", ".devsrc"]): bash bench/device_final_run.sh [src.tgz]
source "$(dirname "$0")/device_lib.sh"
device_begin "$@"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv >"$OUT/gpu.txt"
stamp "gpu tests"
timeout 200 $T >"$OUT/gpu_tests.log" 2>&1
echo "gpu tests rc=$?"; grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure" "$OUT/gpu_tests.log" | head -20
stamp bench
timeout 150 $B bench --synthetic gemma3-270m,llama3.2-1b,llama3-8b --type F16,Q8_0,Q4_K_M -p 512 -n 128 -r 3 -q \
  --json "$OUT/bench_table.json" >"$OUT/bench_table.md" 2>"$OUT/bench_table.err"
echo "bench rc=$?"; grep -E "^\|" "$OUT/bench_table.md"
stamp targets
timeout 60 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 64 -b 8 -r 2 -q >"$OUT/t_batch8.md" 2>&1; grep -E "tg64" "$OUT/t_batch8.md"
timeout 60 $B bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -d 32768 -r 1 -q >"$OUT/t_depth32k.md" 2>&1; grep -E "tg32|error" "$OUT/t_depth32k.md"
timeout 60 $B bench --synthetic llama3-8b --type Q4_K_M,F16 -p 4096 -n 1 -r 2 -q >"$OUT/t_pp4096.md" 2>&1; grep -E "pp4096" "$OUT/t_pp4096.md"
stamp profile
timeout 60 $B profile --synthetic llama3-8b --type Q4_K_M -n 16 --top 12 --json "$OUT/prof_8b.json" >"$OUT/prof_8b.txt" 2>&1
grep -E "decode per token|weights .*MB/token|gemm/gemv|norm |attention |elementwise" "$OUT/prof_8b.txt" | head -8
$B doctor --trace "$OUT/prof_8b.json" >"$OUT/doctor_8b.txt" 2>&1; head -4 "$OUT/doctor_8b.txt"
stamp memcheck
timeout 100 compute-sanitizer --tool memcheck $T --gtest_filter='GpuGemvQ8.EveryTypeAndBatch:GpuGemvQ8.TwoByteAlignedRows:GpuGemvQ8.GroupedQkv:GpuGemvQ8.FusedGateUpActivation:GpuMatmul.Gemv*:Tiny/EngineVsReference*:*Pdl*:GpuAttention.*' >"$OUT/memcheck.log" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT/memcheck.log" | head -5
stamp racecheck
timeout 60 compute-sanitizer --tool racecheck $T --gtest_filter='GpuGemvQ8.EveryTypeAndBatch:GpuGemvQ8.GroupedQkv:GpuGemvQ8.FusedGateUpActivation:GpuAttention.DecodeManySplits' >"$OUT/racecheck.log" 2>&1
echo "racecheck rc=$?"; grep -E "RACECHECK SUMMARY|ERROR SUMMARY|PASSED|FAILED" "$OUT/racecheck.log" | head -5
stamp initcheck
timeout 60 compute-sanitizer --tool initcheck $T --gtest_filter='GpuGemvQ8.EveryTypeAndBatch:GpuGemvQ8.FusedGateUpActivation:Tiny/EngineVsReference.LogitsAndGreedyTokens/tiny_llama*' >"$OUT/initcheck.log" 2>&1
echo "initcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT/initcheck.log" | head -5
stamp done
