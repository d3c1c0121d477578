#!/usr/bin/env python3
"""Bit-exact check of fathom's CPU quantization layer against the `gguf` PyPI package.

gguf.quants is an independent numpy implementation of the ggml block formats (the one llama.cpp's
own conversion scripts use). For every type fathom supports this script

  1. dequantizes random raw blocks (every byte random, fp16 scale fields forced finite) with
     fathom (through tests/tools/quant_tool) and with gguf.quants.dequantize, and requires the
     fp32 outputs to be identical bit for bit (NaN payloads included, for F16/BF16 elements);
  2. where gguf.quants has a quantizer (F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), quantizes the
     same fp32 rows with both and requires identical bytes;
  3. where it has none (the K-quants), quantizes with fathom, dequantizes with gguf.quants and
     requires the round-trip error to be small, so an independent reader interprets our bytes as
     we meant them;
  4. optionally (--ggml-ref, a build of tests/tools/ggml_ref_tool.c against ggml's sources; see
     that file), compares fathom's quantized bytes with ggml's own C reference quantizers for
     every quantized type, K-quants included.

It exits non-zero on any mismatch and also when python3/numpy/gguf is missing: the CI set-up
installs them, so their absence is a broken environment, not a reason to skip.

usage: check_quant_oracle.py --tool PATH/TO/fathom_quant_tool [--ggml-ref PATH] [--seed N] [--blocks N]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import warnings
from importlib import metadata

try:
    import numpy as np
    from gguf.quants import dequantize, quantize
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as QT
except ImportError as e:  # fail, never skip: see the docstring
    print(f"FAIL: the python oracle is not installed ({e}); run `pip install numpy gguf`", file=sys.stderr)
    sys.exit(1)

# Byte offsets of the fp16 fields (scales, mins) inside each block, which are forced finite:
# an Inf/NaN scale makes every element non-finite and tests nothing about the layout.
FP16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}
DEQUANT_TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
                 "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
# Types whose quantizer gguf.quants implements (F32 is the identity and checked too).
QUANT_EXACT_TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
# K-quants: quantized by fathom, dequantized by gguf. Bound on RMS error / RMS of the input for
# Gaussian data; see tests/test_quant.cpp for where these per-type bounds come from.
QUANT_ROUNDTRIP_TYPES = {"Q2_K": 0.45, "Q3_K": 0.25, "Q4_K": 0.12, "Q5_K": 0.06, "Q6_K": 0.03}


# Types compared with ggml's C reference when --ggml-ref is given.
GGML_REF_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def run_tool(tool, mode, type_name, data, tmp):
    src, dst = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
    data.tofile(src)
    r = subprocess.run([tool, mode, type_name, src, dst], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"quant_tool {mode} {type_name} failed: {r.stderr.strip()}")
    return np.fromfile(dst, dtype=np.float32 if mode == "dequantize" else np.uint8)


def finite_fp16(raw):
    """Clears the top exponent bit of fp16 values whose exponent is all ones (Inf/NaN)."""
    bits = raw.view(np.uint16)
    bad = (bits & 0x7C00) == 0x7C00
    return np.where(bad, bits & 0xBFFF, bits).astype(np.uint16)


def random_blocks(rng, type_name, n_blocks):
    block_elems, block_bytes = GGML_QUANT_SIZES[QT[type_name]]
    if block_elems == 1:
        n_blocks *= 64  # plain types: as many elements as a K-quant check
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    if type_name == "F32":
        # Random bit patterns incl. NaN/Inf/denormals: dequantization is a copy, bit for bit.
        return raw.reshape(-1)
    # A few structured blocks on top of the random ones: all zero, all ones, max quants.
    if n_blocks >= 3 and block_elems > 1:
        raw[0, :] = 0
        raw[1, :] = 0xFF
        raw[2, :] = 0x88
    for off in FP16_FIELDS.get(type_name, []):
        field = np.ascontiguousarray(raw[:, off:off + 2]).view(np.uint16).reshape(-1)
        raw[:, off:off + 2] = finite_fp16(field).view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)


def random_rows(rng, n, block):
    """fp32 test inputs: a mix of distributions and edge cases, per block of `block` values."""
    n_blocks = n // block
    x = np.empty((n_blocks, block), dtype=np.float32)
    for b in range(n_blocks):
        kind = b % 8
        scale = np.float32(10.0 ** rng.uniform(-4, 3))
        if kind == 0:
            v = rng.standard_normal(block) * scale
        elif kind == 1:
            v = rng.standard_t(2, block) * scale  # heavy tails
        elif kind == 2:
            v = rng.laplace(size=block) * scale
            v[rng.integers(0, block)] *= 50  # an outlier
        elif kind == 3:
            v = np.zeros(block)  # all zero
        elif kind == 4:
            v = np.full(block, rng.choice([-1.0, 1.0]) * scale)  # constant
        elif kind == 5:
            v = rng.integers(-32, 33, block) / 2.0  # many exact ties for the rounding rules
        elif kind == 6:
            v = np.abs(rng.standard_normal(block)) * scale + scale  # all positive, offset
        else:
            v = rng.uniform(-1, 1, block) * scale
            v[rng.integers(0, block, 4)] = 0.0
        x[b] = v.astype(np.float32)
    return x.reshape(-1)


def first_mismatch(a, b):
    idx = np.flatnonzero(a != b)
    return idx[0] if idx.size else None


def check_dequantize(tool, rng, type_name, n_blocks, tmp):
    raw = random_blocks(rng, type_name, n_blocks)
    ours = run_tool(tool, "dequantize", type_name, raw, tmp)
    theirs = np.asarray(dequantize(raw, QT[type_name]), dtype=np.float32).reshape(-1)
    if ours.shape != theirs.shape:
        return False, f"shape {ours.shape} vs {theirs.shape}"
    a, b = ours.view(np.uint32), theirs.view(np.uint32)
    i = first_mismatch(a, b)
    n_nan = int(np.isnan(theirs).sum())
    if i is not None:
        block_elems = GGML_QUANT_SIZES[QT[type_name]][0]
        return False, (f"{int((a != b).sum())} of {a.size} differ; first at element {i} (block {i // block_elems}): "
                       f"fathom {ours[i]!r} (0x{a[i]:08x}) vs gguf {theirs[i]!r} (0x{b[i]:08x})")
    return True, f"{a.size} values bit-identical ({n_nan} NaN)"


def check_quantize_exact(tool, rng, type_name, n, tmp):
    block_elems = GGML_QUANT_SIZES[QT[type_name]][0]
    x = random_rows(rng, n, max(block_elems, 32))
    if type_name in ("F32", "BF16"):
        # Plain conversions: add Inf, NaN (BF16 quiets them the same way in both) and denormals.
        x[:4] = np.array([np.inf, -np.inf, np.nan, 1e-40], dtype=np.float32)
        x[4:8] = np.array([0x7F800001, 0xFFC12345, 0x7FBFFFFF, 0x00000001], dtype=np.uint32).view(np.float32)
    elif type_name == "F16":
        # Inf and fp16 overflow/underflow included; NaN excluded: numpy truncates the payload
        # without setting the quiet bit (0x7f800001 -> 0x7c01), while fathom, like x86 F16C and
        # ggml, returns a quiet NaN. Both are NaN; test_quant.cpp checks ours stays NaN.
        x[:6] = np.array([np.inf, -np.inf, 65519.0, 65520.0, 2.0 ** -25, 3.0 * 2.0 ** -26], dtype=np.float32)
    ours = run_tool(tool, "quantize", type_name, x, tmp)
    theirs = np.asarray(quantize(x, QT[type_name])).reshape(-1).view(np.uint8)
    if ours.shape != theirs.shape:
        return False, f"{ours.size} bytes vs {theirs.size}"
    i = first_mismatch(ours, theirs)
    if i is not None:
        block_bytes = GGML_QUANT_SIZES[QT[type_name]][1]
        blk = i // block_bytes
        return False, (f"{int((ours != theirs).sum())} of {ours.size} bytes differ; first at byte {i} "
                       f"(block {blk}, byte {i % block_bytes}): fathom 0x{ours[i]:02x} vs gguf 0x{theirs[i]:02x}; "
                       f"block input {x[blk * block_elems:(blk + 1) * block_elems][:8]}...")
    return True, f"{ours.size} bytes identical ({x.size} inputs)"


def check_quantize_ggml_ref(tool, ggml_ref, rng, type_name, n, tmp):
    x = random_rows(rng, n, 256)
    ours = run_tool(tool, "quantize", type_name, x, tmp)
    theirs = run_tool(ggml_ref, "quantize", type_name, x, tmp)
    i = first_mismatch(ours, theirs) if ours.shape == theirs.shape else 0
    if i is not None:
        block_bytes = GGML_QUANT_SIZES[QT[type_name]][1]
        return False, (f"{int((ours != theirs).sum()) if ours.shape == theirs.shape else 'all'} of {theirs.size} "
                       f"bytes differ; first at block {i // block_bytes}, byte {i % block_bytes}")
    return True, f"{ours.size} bytes identical to ggml's quantize_row_{type_name.lower()}_ref ({x.size} inputs)"


def check_quantize_roundtrip(tool, rng, type_name, n_rows, tmp):
    bound = QUANT_ROUNDTRIP_TYPES[type_name]
    x = (rng.standard_normal((n_rows, 256)) * 10.0 ** rng.uniform(-3, 2, (n_rows, 1))).astype(np.float32).reshape(-1)
    ours = run_tool(tool, "quantize", type_name, x, tmp)
    back = np.asarray(dequantize(ours, QT[type_name]), dtype=np.float32).reshape(n_rows, 256)
    xr = x.reshape(n_rows, 256)
    rel = np.sqrt(((back - xr) ** 2).mean(axis=1)) / np.sqrt((xr ** 2).mean(axis=1))
    worst = int(rel.argmax())
    ok = bool(np.all(np.isfinite(back))) and rel.max() <= bound
    return ok, f"relative RMSE mean {rel.mean():.4f}, worst {rel[worst]:.4f} (row {worst}), bound {bound}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", required=True, help="path to fathom_quant_tool")
    ap.add_argument("--ggml-ref", help="optional: ggml_ref_tool built from tests/tools/ggml_ref_tool.c")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--blocks", type=int, default=4096, help="random blocks per dequantization check")
    args = ap.parse_args()
    if not os.access(args.tool, os.X_OK):
        print(f"FAIL: quant tool '{args.tool}' is not an executable (build fathom_quant_tool)", file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    # Inputs up to ~1e3 overflow fp16 in some scale fields; both sides then store Inf.
    warnings.filterwarnings("ignore", message="overflow encountered in cast")
    print(f"oracle: gguf {metadata.version('gguf')} (gguf.quants), numpy {np.__version__}, seed {args.seed}")
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        checks = [("dequantize", t, lambda t=t: check_dequantize(args.tool, rng, t, args.blocks, tmp))
                  for t in DEQUANT_TYPES]
        checks += [("quantize  ", t, lambda t=t: check_quantize_exact(args.tool, rng, t, 256 * 512, tmp))
                   for t in QUANT_EXACT_TYPES]
        checks += [("roundtrip ", t, lambda t=t: check_quantize_roundtrip(args.tool, rng, t, 512, tmp))
                   for t in QUANT_ROUNDTRIP_TYPES]
        if args.ggml_ref:
            checks += [("ggml-ref  ", t, lambda t=t: check_quantize_ggml_ref(args.tool, args.ggml_ref, rng, t,
                                                                             256 * 2048, tmp))
                       for t in GGML_REF_TYPES]
        for what, t, fn in checks:
            try:
                ok, msg = fn()
            except Exception as e:  # a tool crash or oracle error is a failure with its message
                ok, msg = False, f"{type(e).__name__}: {e}"
            print(f"{'PASS' if ok else 'FAIL'} {what} {t:5s} {msg}")
            passed += ok
            failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
