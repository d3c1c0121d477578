# Steps for issue 8, slices per pass (docs/perf/prefill_chunks.md, "Slices per pass"): llama3-8b
# Q4_K_M keeps 2048-token chunks in 4 FFN slices (5 at -b 32), and passes of <= 1024 rows (pp512,
# the batch-32 decode step) run 2 slices of 7168 again, dequantized into the scratch + the q / a
# buffer (q / a of those passes in h's upper half). A fragment meant to be SOURCED by a device
# script that has already built the tree and set
#   $T  the GPU test binary, $B  the fathom CLI, $O  the folder for logs.
# (-n 2, not 0: the bench has no guard for a decode row of 0 steps.)
# Everything appends to $O/prefill.log; each step under `timeout`; ~100-150 s of GPU time in all.
# A/B in the same build: FATHOM_SLICES_PER_PASS=0 is the session-15 behaviour (one slice width for
# every pass).
# Predictions (prefill_chunks.md): pp512 21.6k -> 24.0-24.8k; pp4096 29.8k unchanged (+-1.5%);
# batch-32 tg 2261.5 -> 2500-2650 tok/s; the A/B rows at the session-15 values.
_pl="$O/prefill.log"
{
  echo "== slices per pass: GPU tests (new: SlicesPerPass.*, the 8B layout A/B; tiny-model engine tests)"
  timeout 120 "$T" --gtest_filter='SlicesPerPass.*:EngineWorkspace.*:Engine.*:Tiny/*' 2>&1 |
    grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|^\[       OK \] SlicesPerPass|Failure|exception|^plan:|slices per pass vs|shared vs separate"
  echo "tests rc=${PIPESTATUS[0]}"

  echo "== pp512 / pp4096 llama3-8b Q4_K_M, slices per pass (expect pp512 ~24.3k, pp4096 ~29.8k)"
  timeout 90 "$B" bench --synthetic llama3-8b --type Q4_K_M -p 512,4096 -n 2 -r 1 -q 2>&1 | grep -E "^\||^memory|rror"
  echo "rc=${PIPESTATUS[0]}"
  echo "== the same, FATHOM_SLICES_PER_PASS=0 (session 15: pp512 21.6k, pp4096 29.8k)"
  FATHOM_SLICES_PER_PASS=0 timeout 90 "$B" bench --synthetic llama3-8b --type Q4_K_M -p 512,4096 -n 2 -r 1 -q 2>&1 |
    grep -E "^\||^memory|rror"
  echo "rc=${PIPESTATUS[0]}"

  echo "== batch 32 decode llama3-8b Q4_K_M, slices per pass (expect 2500-2650 tok/s)"
  timeout 60 "$B" bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 32 -r 1 -q 2>&1 | grep -E "^\||^memory|rror"
  echo "rc=${PIPESTATUS[0]}"
  echo "== the same, FATHOM_SLICES_PER_PASS=0 (session 15: 2261.5)"
  FATHOM_SLICES_PER_PASS=0 timeout 60 "$B" bench --synthetic llama3-8b --type Q4_K_M -p 16 -n 32 -b 32 -r 1 -q 2>&1 |
    grep -E "^\||^memory|rror"
  echo "rc=${PIPESTATUS[0]}"
} >>"$_pl" 2>&1
tail -40 "$_pl"
