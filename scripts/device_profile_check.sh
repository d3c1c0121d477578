#!/usr/bin/env bash
# On the GPU machine, after `scripts/device_build.sh build-dev`: exercises `fathom profile` and
# `fathom doctor` end to end on a generated tiny-llama Q4_K model (engine mode with and without CUDA
# graphs, a saved trace, and the injection mode on `fathom run`), checks the traces' key numbers and
# writes every output to $OUT. Usage: scripts/device_profile_check.sh [build-dir]. Developer tool.
#
# Checks (each prints PASS/FAIL; the script exits 1 on any FAIL):
#   - the engine trace has kernels, 31 steady decode steps (32 minus the graph-capturing first),
#     1 host sync, 0 allocations and 1 graph launch per decode token (the engine's contract);
#   - without graphs the decode step launches its kernels one by one (graph launches 0);
#   - the injected trace of `fathom run` has kernels, memcpys and the run's command line;
#   - doctor runs on all three and its JSON names a scope.
set -uo pipefail
B=${1:-build-dev}
OUT=${OUT:-/tmp/fathom_profile_out}
mkdir -p "$OUT"
F=$B/bin/fathom
MODEL=/tmp/t.gguf
failures=0

run() {  # run NAME CMD...: output to $OUT/NAME.txt, tail shown, rc recorded
  local name=$1
  shift
  echo "== $name: $*"
  "$@" >"$OUT/$name.txt" 2>&1
  local rc=$?
  echo "rc=$rc" >>"$OUT/$name.txt"
  tail -n 70 "$OUT/$name.txt"
  if [ $rc -ne 0 ]; then
    echo "FAIL: $name exited with $rc"
    failures=$((failures + 1))
  fi
}

check() {  # check NAME PYTHON-EXPR-over-j: j is the parsed JSON file $2
  local name=$1 file=$2 expr=$3
  if python3 - "$file" "$expr" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
ok = eval(sys.argv[2], {"j": j})
print(("PASS" if ok else "FAIL") + ": " + sys.argv[2])
sys.exit(0 if ok else 1)
EOF
  then :; else
    echo "FAIL: check $name"
    failures=$((failures + 1))
  fi
}

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv >"$OUT/nvsmi.txt" 2>&1
ls -la "$B/lib" >"$OUT/libdir.txt" 2>&1

run unit_tests "$B/tests/fathom_tests" --gtest_filter='ProfileTrace.*:Doctor.*'
run make_model "$F" make-model --shape tiny-llama --type Q4_K -o "$MODEL"

# Engine mode: prefill + 32 greedy decode steps.
run profile "$F" profile -m "$MODEL" -n 32 --json "$OUT/profile.json"
if [ -s "$OUT/profile.json" ]; then
  D='[p for p in j["summary"]["phases"] if p["phase"] == "decode"][0]'
  check kernels "$OUT/profile.json" 'len(j["trace"]["kernels"]) > 0'
  check decode_steps "$OUT/profile.json" "$D[\"n_steps\"] == 31"
  check one_sync "$OUT/profile.json" "abs($D[\"host_syncs\"] / $D[\"n_steps\"] - 1) < 1e-9"
  check no_allocs "$OUT/profile.json" "$D[\"allocs\"] == 0"
  check one_graph "$OUT/profile.json" "$D[\"graph_launches\"] == $D[\"n_steps\"]"
  check graph_kernels "$OUT/profile.json" 'any(k["graph_id"] != 0 for k in j["trace"]["kernels"])'
  check device_name "$OUT/profile.json" 'j["trace"]["device"] != ""'
  check read_ceiling "$OUT/profile.json" 'j["trace"]["read_gbps"] > 0'
fi
run doctor_trace "$F" doctor --trace "$OUT/profile.json" --json "$OUT/doctor_trace.json"
run doctor "$F" doctor -m "$MODEL" -n 32 --json "$OUT/doctor.json"
[ -s "$OUT/doctor.json" ] && check doctor_scope "$OUT/doctor.json" 'j["scope"] == "decode" and len(j["findings"]) > 0'

# Without graphs: kernels launched one by one, so doctor should see more idle between kernels.
run profile_nographs "$F" profile -m "$MODEL" -n 32 --no-graphs --no-ceilings --json "$OUT/profile_nographs.json"
if [ -s "$OUT/profile_nographs.json" ]; then
  D='[p for p in j["summary"]["phases"] if p["phase"] == "decode"][0]'
  check nographs_launches "$OUT/profile_nographs.json" "$D[\"graph_launches\"] == 0 and $D[\"launch_calls\"] > 0"
fi
run doctor_nographs "$F" doctor --trace "$OUT/profile_nographs.json"

# Injection mode: any CUDA program; here fathom run itself (CUDA_INJECTION64_PATH).
run inject "$F" profile --json "$OUT/inject.json" -- "$F" run -m "$MODEL" -p hi -n 8 --temp 0
if [ -s "$OUT/inject.json" ]; then
  check inject_kernels "$OUT/inject.json" 'len(j["trace"]["kernels"]) > 0 and len(j["trace"]["memcpys"]) > 0'
  check inject_source "$OUT/inject.json" 'j["trace"]["source"] == "inject" and "run" in j["trace"]["model"]'
fi
run doctor_inject "$F" doctor --trace "$OUT/inject.json"
# And a program that is not fathom: the GPU test binary, a few small op tests.
if [ -x "$B/tests/fathom_gpu_tests" ]; then
  run inject_gpu_tests "$F" profile --top 8 -- "$B/tests/fathom_gpu_tests" --gtest_filter='*Argmax*:*Embedding*'
fi

# The real default model, when the machine has it.
if [ -n "${FATHOM_MODEL:-}" ] && [ -f "$FATHOM_MODEL" ]; then
  run profile_real "$F" profile -m "$FATHOM_MODEL" -n 64 --json "$OUT/profile_real.json"
  run doctor_real "$F" doctor --trace "$OUT/profile_real.json"
fi

echo
if [ $failures -eq 0 ]; then
  echo "device_profile_check: all passed (outputs in $OUT)"
else
  echo "device_profile_check: $failures failure(s) (outputs in $OUT)"
  exit 1
fi
