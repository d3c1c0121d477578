# Shared prologue of the GPU-call scripts that write their logs straight to $OUT (sourced, not run),
# so a call cut short at its time limit still returns what ran (device_lib.sh instead packs a
# scratch folder at exit). After
#   source "$(dirname "$0")/device_start.sh"; device_start "$1" /tmp/work-dir
# the script runs inside a fresh build of the source tarball $1 (default .devsrc/head.tgz: `git
# archive` of the commit under test) extracted to the work dir, with
#   $O      the folder whose files come back ($OUT, or /tmp/fathom-out off the device machine),
#   $T, $B  the GPU test binary and the fathom CLI of that build,
#   stamp   a function printing "[Ns] message" with the seconds since the start.
# Carry [".devdeps", ".devsrc-X"] in the device call (.devdeps/include holds pcre2.h, absent there).
set -u
O=${OUT:-/tmp/fathom-out}
mkdir -p "$O"
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 ))s] $*"; }

# Extracts the tarball into the work dir and builds it there (scripts/device_build.sh); exits the
# script, with the build log's tail, when either fails.
device_start() {
  local src=${1:-.devsrc/head.tgz} w=${2:-/tmp/fathom-src}
  rm -rf "$w" && mkdir -p "$w" && tar xzf "$src" -C "$w" && cp -r .devdeps "$w"/ && cd "$w" || exit 1
  stamp build
  scripts/device_build.sh build-dev >"$O/build.log" 2>&1 || { tail -30 "$O/build.log"; exit 1; }
  T=build-dev/tests/fathom_gpu_tests
  B=build-dev/bin/fathom
}

# One `fathom bench` row set into $O/bench.md under "== label", with env assignments (X=1 for none)
# and the summary columns echoed: bench_row LABEL ENV ARGS... (-r 1 -q appended; ROW_TIMEOUT s each).
bench_row() {
  local label=$1 e=$2; shift 2
  echo "== $label" >>"$O/bench.md"
  env $e timeout "${ROW_TIMEOUT:-120}" $B bench "$@" -r 1 -q >>"$O/bench.md" 2>&1; echo "== $label rc=$?"
  sed -n "/^== $label\$/,\$p" "$O/bench.md" | grep -E "^\| [a-z]|^memory|rror" | grep -v "^| model" |
    awk -F'|' 'NF>2{print $2,$4,$5,$6,$7,$8,$10} NF<=2{print}'
}

# A gtest run of the GPU test binary into $O/LOG (appended), its rc and summary lines echoed:
# gtest_run LABEL LOG TIMEOUT FILTER [ENV...] (env assignments, X=1 for none). Every session script
# repeated these three lines per test group.
gtest_run() {
  local label=$1 log=$2 limit=$3 filter=$4; shift 4
  env "${@:-X=1}" timeout "$limit" $T --gtest_filter="$filter" >>"$O/$log" 2>&1; echo "$label rc=$?"
  grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|exception|Failure" "$O/$log" | tail -8
}

# GpuMmaQ8.DISABLED_Bench on the shapes SPEC (FATHOM_MMQ_BENCH) with the phase probe, lines prefixed
# by TAG into $O/probe.txt: mmq_bench TAG SPEC [ENV...].
mmq_bench() {
  local tag=$1 spec=$2; shift 2
  env "${@:-X=1}" FATHOM_MMQ_PROBE=1 FATHOM_MMQ_BENCH="$spec" timeout 90 $T --gtest_also_run_disabled_tests \
    --gtest_filter='GpuMmaQ8.DISABLED_Bench' 2>&1 | grep -E "mmq-(bench|probe)" | sed "s/^/$tag /" >>"$O/probe.txt"
}
