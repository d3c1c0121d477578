#!/usr/bin/env bash
# The whole test suite, in one command (also what CI runs, through .ci/run):
#   1. installs the dependencies (scripts/deps.sh; idempotent),
#   2. builds build-test/ (CUDA engine too when nvcc is found, for FATHOM_CUDA_ARCHS, default 90a)
#      and runs every ctest test (GPU tests are labelled `gpu` and skip when there is no device),
#   3. builds build-asan/ with -DFATHOM_SANITIZE=ON (ASan + UBSan, CPU only) and runs its tests
#      except the `gpu` ones.
# Prints a summary; exits non-zero when any step fails.
#
# usage: ./scripts/test.sh [--no-deps] [--no-asan] [-- extra ctest args]
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/deps.sh"

do_deps=1 do_asan=1 ctest_extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-deps) do_deps=0 ;;
    --no-asan) do_asan=0 ;;
    --) shift; ctest_extra=("$@"); break ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) fathom_die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

archs="${FATHOM_CUDA_ARCHS:-90a}"
jobs="$(nproc)"
summary=() failed=0 t_start=$SECONDS

# step NAME COMMAND...: runs one step, records PASS/FAIL and its duration.
step() {
  local name="$1" t0=$SECONDS rc
  shift
  fathom_log "=== $name"
  "$@"
  rc=$?
  local status=PASS
  if [ $rc -ne 0 ]; then status="FAIL (exit $rc)"; failed=1; fi
  summary+=("$(printf '%-36s %-14s %5ds' "$name" "$status" $((SECONDS - t0)))")
  return $rc
}
skip() { summary+=("$(printf '%-36s %-14s' "$1" "SKIPPED ($2)")"); }

run_ctest() {
  local dir="$1"
  shift
  ctest --test-dir "$dir" -j "$jobs" --output-on-failure --timeout 1800 "$@" "${ctest_extra[@]}"
}

if [ "$do_deps" -eq 1 ]; then
  # deps.sh dies on failure; run it in this shell (it exports FATHOM_PYTHON and maybe a venv PATH).
  t0=$SECONDS
  fathom_log "=== dependencies"
  fathom_install_deps
  summary+=("$(printf '%-36s %-14s %5ds' "dependencies" PASS $((SECONDS - t0)))")
else
  if [ -x "$FATHOM_ROOT/.venv/bin/python" ]; then
    export FATHOM_PYTHON="$FATHOM_ROOT/.venv/bin/python" VIRTUAL_ENV="$FATHOM_ROOT/.venv" PATH="$FATHOM_ROOT/.venv/bin:$PATH"
  fi
  skip dependencies "--no-deps"
fi

cuda_note="CPU only"
[ -n "$(fathom_find_nvcc)" ] && cuda_note="CUDA $archs"

if step "build ($cuda_note)" fathom_build "$FATHOM_ROOT/build-test" "$archs"; then
  step "ctest: all tests" run_ctest "$FATHOM_ROOT/build-test"
else
  skip "ctest: all tests" "build failed"
fi

if [ "$do_asan" -eq 1 ]; then
  # halt_on_error: the first report fails the test; LSan stays on (leaks are bugs too).
  export ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
  # -O1: the sanitizers' usual level; compiling with ASan at CMake's Release -O3 takes over twice as
  # long (test_gguf.cpp: 45 s vs 20 s of CPU), and this build is the longest step on a 2-core CI.
  if FATHOM_ENABLE_CUDA=OFF step "build (ASan+UBSan, CPU only)" fathom_build "$FATHOM_ROOT/build-asan" "" \
      -DFATHOM_SANITIZE=ON "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -DNDEBUG" "-DCMAKE_C_FLAGS_RELEASE=-O1 -DNDEBUG"; then
    step "ctest: CPU tests under ASan+UBSan" run_ctest "$FATHOM_ROOT/build-asan" -LE gpu
  else
    skip "ctest: CPU tests under ASan+UBSan" "build failed"
  fi
else
  skip "ASan+UBSan build and tests" "--no-asan"
fi

echo
echo "==================== fathom test summary ===================="
for line in "${summary[@]}"; do echo "  $line"; done
echo "  total time: $((SECONDS - t_start))s"
if [ "$failed" -ne 0 ]; then
  echo "  RESULT: FAILED"
  exit 1
fi
echo "  RESULT: PASSED"
