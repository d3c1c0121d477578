#!/usr/bin/env bash
# Set-up of fathom on a fresh Debian 12 machine, in one command:
#   1. installs the Debian and PyPI packages and the default model (scripts/deps.sh),
#   2. builds into build/ (CMake + Ninja; the CUDA engine too when nvcc is on PATH or in /usr/local/cuda),
#   3. generates text with the default model (Gemma 3 270M Q4_K_M): build/bin/fathom run -p ... -n 64.
#
# usage: ./scripts/setup.sh [--deps-only] [--no-run]
# environment:
#   FATHOM_CUDA_ARCHS  CUDA architectures, e.g. "90a" or "80;90a". Default: the GPU's own
#                      (from nvidia-smi; 9.0 -> 90a), else CMake's list in CMakeLists.txt.
#   FATHOM_BUILD_DIR   build directory (default build)
#   FATHOM_PYTHON      Python to install the packages for (default python3)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/deps.sh"

deps_only=0 run=1
for a in "$@"; do
  case "$a" in
    --deps-only) deps_only=1 ;;
    --no-run) run=0 ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) fathom_die "unknown argument '$a' (see --help)" ;;
  esac
done

fathom_install_deps
[ "$deps_only" -eq 1 ] && exit 0

# The architecture of the GPU in this machine, as CMake spells it; empty when there is none.
detect_archs() {
  local cap
  cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .')" || true
  case "$cap" in
    '') ;;
    90) echo 90a ;;          # Hopper: the "a" variant unlocks wgmma/setmaxnreg kernels
    *) echo "$cap" ;;
  esac
}

archs="${FATHOM_CUDA_ARCHS:-$(detect_archs)}"
build_dir="${FATHOM_BUILD_DIR:-$FATHOM_ROOT/build}"
fathom_build "$build_dir" "$archs" || fathom_die "build failed"

if [ "$run" -eq 1 ]; then
  prompt="The three most useful things to know about GPUs are"
  fathom_log "$build_dir/bin/fathom run -p \"$prompt\" -n 64"
  "$build_dir/bin/fathom" run -p "$prompt" -n 64
fi
fathom_log "done. Try: $build_dir/bin/fathom --help"
