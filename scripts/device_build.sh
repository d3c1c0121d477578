#!/usr/bin/env bash
# Build fathom on the lent GPU machine (Ubuntu image: no pcre2 headers, so .devdeps/include carries
# pcre2.h; see CMakeLists.txt). Usage: scripts/device_build.sh [build-dir]. Developer tool only.
set -euo pipefail
dir=${1:-build-dev}
# -include cstdint: g++ 13 there no longer pulls <cstdint> in transitively; a header that forgot it
# should not cost a device call (fix such files when found: chat_template.cpp was one).
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATHOM_CUDA_ARCHS=90a -DCMAKE_CXX_FLAGS="-include cstdint" \
      -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc >"$dir.cmake.log" 2>&1 || { cat "$dir.cmake.log"; exit 1; }
ninja -C "$dir" -j"$(nproc)"
