#!/usr/bin/env python3
"""Kernels of the prefill phase in a `fathom profile --json` trace: count, total and mean time per
kernel name, longest first (the profile report itself lists the decode phase's kernels).
The prefill phase runs from the NVTX range "prefill" to the first "decode step" range.
Usage: python3 bench/prefill_kernels.py trace.json [top]"""
import json
import sys
from collections import defaultdict

t = json.load(open(sys.argv[1]))
t = t.get("trace", t)  # `fathom profile --json` wraps the trace with its summary
top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
ranges = t.get("ranges", [])
pre = [r for r in ranges if r["name"].startswith("prefill")]
dec = [r for r in ranges if r["name"].startswith("decode")]
begin = min(r["start_ns"] for r in pre) if pre else t.get("begin_ns", 0)
end = min(r["start_ns"] for r in dec) if dec else (max(r["end_ns"] for r in pre) if pre else 1 << 63)
agg = defaultdict(lambda: [0, 0.0, None])
for k in t["kernels"]:
    if begin <= k["start_ns"] < end:
        a = agg[k["name"]]
        a[0] += 1
        a[1] += (k["end_ns"] - k["start_ns"]) / 1e3
        a[2] = (tuple(k["grid"]), tuple(k["block"]))
total = sum(a[1] for a in agg.values())
print(f"prefill window {(end - begin) / 1e6:.2f} ms, kernel time {total / 1e3:.2f} ms, "
      f"{sum(a[0] for a in agg.values())} launches, {len(agg)} distinct kernels")
print(f"{'time%':>6} {'total ms':>9} {'calls':>6} {'mean us':>9}  grid x block  name")
for name, (n, us, gb) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:top]:
    g, b = gb
    print(f"{100 * us / total:6.1f} {us / 1e3:9.3f} {n:6d} {us / n:9.1f}  "
          f"{g[0]}x{g[1]}x{g[2]} x {b[0]}x{b[1]}x{b[2]}  {name[:150]}")
