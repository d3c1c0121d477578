# Shared prologue of the bench/device_*.sh scripts (sourced, not run). After
#   source bench/device_lib.sh; device_begin "$@"
# the script runs inside a fresh build of the source tarball given as $1 (default
# .devsrc/head.tgz: `git archive` of the commit under test, so uncommitted work never leaks into a
# measurement), with
#   $OUT    a scratch folder whose contents are packed into $FINAL/results.tgz at exit (the device
#           tool returns at most 8 files),
#   $T, $B  the GPU test binary and the fathom CLI of that build,
#   stamp   a function printing "[Ns] message" with the seconds since the start.
# Carry [".devdeps", ".devsrc"] in the device call (.devdeps/include holds pcre2.h, absent there).
set -u
FINAL=${OUT:-/tmp/fathom-out}
export OUT=/tmp/fathom-run
rm -rf "$OUT"  # a machine may come back with an earlier call's files there
mkdir -p "$OUT" "$FINAL"
trap 'tar czf "$FINAL/results.tgz" -C "$OUT" .; cp "$OUT"/bench_table.* "$FINAL"/ 2>/dev/null' EXIT
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 ))s] $*"; }

# Extracts the tarball into a fresh /tmp/fathom-src and builds it there (scripts/device_build.sh);
# exits the script, with the build log's tail, when either fails.
device_begin() {
  local src=${1:-.devsrc/head.tgz}
  local w=/tmp/fathom-src
  rm -rf "$w" && mkdir -p "$w" && tar xzf "$src" -C "$w" && cp -r .devdeps "$w"/ && cd "$w" || exit 1
  stamp build
  scripts/device_build.sh build-dev >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  T=build-dev/tests/fathom_gpu_tests
  B=build-dev/bin/fathom
}
