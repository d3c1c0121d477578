#!/usr/bin/env python3
"""End-to-end check of `fathom quantize`, read back with the `gguf` PyPI package.

On random-weight test models written by `fathom make-model` (tiny-llama: separate output.weight;
tiny-gemma3: output tied to token_embd, 6 layers):
  - plain types Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 F16 BF16: every weight matrix has the type and bytes
    identical to gguf.quants.quantize of the source; other tensors are copied byte for byte;
  - K types Q4_K Q5_K Q6_K and recipes Q4_K_M Q5_K_M: every tensor has the type llama.cpp's
    rules give (computed here independently), and dequantizes (with gguf.quants) close to the
    source;
  - a quantized source (Q4_K_M) re-quantized to Q8_0 equals gguf's quantize(dequantize(source));
  - metadata is copied with general.file_type / general.quantization_version set;
  - output == input (same path, a symlink, a hard link) is refused with a clear error and leaves
    the input untouched.
With --model (a real llama.cpp Q4_K_M file): re-quantizing it to Q4_K_M reproduces it byte for
byte (same per-tensor types as llama-quantize chose, tensors copied, metadata kept), and
re-quantizing it to Q8_0 gives gguf's quantize(dequantize(tensor)) for every converted tensor.

Fails (never skips) when numpy/gguf is missing: the set-up installs them.
usage: check_quantize_cli.py --fathom PATH/TO/fathom --workdir DIR [--model REAL.gguf]
"""
import argparse
import filecmp
import hashlib
import os
import shutil
import subprocess
import sys

try:
    import numpy as np
    from gguf import GGUFReader
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as QT
    from gguf.quants import dequantize, quantize
except ImportError as e:
    print(f"FAIL: the python oracle is not installed ({e}); run `pip install numpy gguf`", file=sys.stderr)
    sys.exit(1)

FILE_TYPE = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q4_K": 14,
             "Q4_K_M": 15, "Q5_K": 16, "Q5_K_M": 17, "Q6_K": 18, "BF16": 32}
# Relative RMSE bound (RMS error / RMS of the tensor) on Gaussian-like weights; measured ~0.6x.
RMSE_BOUND = {"Q4_K": 0.12, "Q5_K": 0.06, "Q6_K": 0.03, "Q5_0": 0.06, "Q8_0": 0.01}


class Checker:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok, what):
        print(f"{'PASS' if ok else 'FAIL'} {what}")
        self.passed += bool(ok)
        self.failed += not ok
        return ok


def fathom(binary, *args, expect_ok=True):
    r = subprocess.run([binary, *args], capture_output=True, text=True)
    if expect_ok and r.returncode != 0:
        raise RuntimeError(f"fathom {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return r


def field_value(reader, key):
    f = reader.fields[key]
    return [bytes(f.parts[i]) for i in f.data]


def is_weight_matrix(name, n_dims):
    skip = ("_norm.weight", "ffn_gate_inp.weight", "pos_embd", "token_types", "ssm_conv1d", "attn_rel_b")
    return n_dims >= 2 and name.endswith("weight") and not any(s in name for s in skip)


def use_more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def expected_type(recipe, name, n_dims, cols, src_type, names):
    """llama.cpp's llama_tensor_get_type for the recipes fathom implements (see src/quant/recipe.h)."""
    if not is_weight_matrix(name, n_dims):
        return src_type
    base = {"Q4_K_M": "Q4_K", "Q5_K_M": "Q5_K"}.get(recipe, recipe)
    t = base
    if recipe.endswith("_M"):
        layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
        if name == "output.weight" or ("output.weight" not in names and name == "token_embd.weight"):
            t = "Q6_K"
        elif "attn_v.weight" in name and use_more_bits(layer, sum("attn_v.weight" in n for n in names)):
            t = "Q6_K"
        elif "ffn_down" in name and use_more_bits(layer, sum("ffn_down" in n for n in names)):
            t = "Q6_K"
    if cols % GGML_QUANT_SIZES[QT[t]][0] != 0:
        t = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}.get(t, "F16")
        if cols % GGML_QUANT_SIZES[QT[t]][0] != 0:
            t = "F16"
    return QT[t]


def as_f32(t):
    """A tensor's values as a (rows, cols) float32 array, dequantized by gguf."""
    cols = int(t.shape[0])
    data = np.asarray(t.data)
    if t.tensor_type == QT.F32:
        return data.reshape(-1, cols).astype(np.float32)
    return np.asarray(dequantize(data.view(np.uint8), t.tensor_type), dtype=np.float32).reshape(-1, cols)


def raw_bytes(t):
    return np.asarray(t.data).view(np.uint8).reshape(-1)


def check_metadata(c, src, out, recipe, label):
    ok, bad = True, []
    for key in src.fields:
        if key.startswith("GGUF.") or key in ("general.file_type", "general.quantization_version"):
            continue
        if key not in out.fields or field_value(src, key) != field_value(out, key):
            ok, bad = False, bad + [key]
    ft = out.fields["general.file_type"]
    ok &= int(ft.parts[ft.data[0]][0]) == FILE_TYPE[recipe]
    qv = out.fields["general.quantization_version"]
    ok &= int(qv.parts[qv.data[0]][0]) == 2
    c.check(ok, f"{label}: metadata copied, general.file_type = {FILE_TYPE[recipe]}" + (f" (differs: {bad[:5]})" if bad else ""))


def check_quantized_model(c, binary, src_path, recipe, work, label):
    out_path = os.path.join(work, f"{label}_{recipe}.gguf")
    fathom(binary, "quantize", "-q", src_path, out_path, recipe)
    src, out = GGUFReader(src_path), GGUFReader(out_path)
    names = [t.name for t in src.tensors]
    c.check([t.name for t in out.tensors] == names and
            all(list(a.shape) == list(b.shape) for a, b in zip(src.tensors, out.tensors)),
            f"{label} -> {recipe}: same tensors, order and shapes")
    check_metadata(c, src, out, recipe, f"{label} -> {recipe}")
    type_errors, byte_errors, rmse_worst, n_exact = [], [], (0.0, ""), 0
    for s, o in zip(src.tensors, out.tensors):
        want = expected_type(recipe, s.name, len(s.shape), int(s.shape[0]), s.tensor_type, names)
        if o.tensor_type != want:
            type_errors.append(f"{s.name}: {o.tensor_type.name}, want {want.name}")
            continue
        if want == s.tensor_type:
            if not np.array_equal(raw_bytes(s), raw_bytes(o)):
                byte_errors.append(f"{s.name} (copied)")
            continue
        x = as_f32(s)
        if want.name in ("F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"):
            # gguf.quants has these quantizers: the bytes must be identical.
            ref = np.asarray(quantize(x, want)).view(np.uint8).reshape(-1)
            n_exact += 1
            if not np.array_equal(ref, raw_bytes(o)):
                i = int(np.flatnonzero(ref != raw_bytes(o))[0])
                byte_errors.append(f"{s.name} ({want.name}) first differing byte {i}")
        y = as_f32(o)
        rel = float(np.sqrt(((y - x) ** 2).mean() / max((x ** 2).mean(), 1e-30)))
        if want.name in RMSE_BOUND and rel > RMSE_BOUND[want.name]:
            byte_errors.append(f"{s.name} ({want.name}) relative RMSE {rel:.4f} > {RMSE_BOUND[want.name]}")
        if rel > rmse_worst[0]:
            rmse_worst = (rel, f"{s.name} {want.name}")
    c.check(not type_errors, f"{label} -> {recipe}: per-tensor types follow the recipe" +
            (f"; wrong: {type_errors[:4]}" if type_errors else ""))
    c.check(not byte_errors, f"{label} -> {recipe}: data ok ({n_exact} tensors bit-identical to gguf.quants; "
            f"worst relative RMSE {rmse_worst[0]:.4f} in {rmse_worst[1]})" +
            (f"; errors: {byte_errors[:4]}" if byte_errors else ""))
    return out_path


def check_refusals(c, binary, src_path, work):
    digest = hashlib.sha256(open(src_path, "rb").read()).hexdigest()
    link = os.path.join(work, "symlink.gguf")
    hard = os.path.join(work, "hardlink.gguf")
    for p in (link, hard):
        if os.path.lexists(p):
            os.remove(p)
    os.symlink(src_path, link)
    os.link(src_path, hard)
    for what, out in (("same path", src_path), ("symlink", link), ("hard link", hard),
                      ("./ spelling", os.path.join(os.path.dirname(src_path), ".", os.path.basename(src_path)))):
        r = fathom(binary, "quantize", "-q", src_path, out, "Q8_0", expect_ok=False)
        c.check(r.returncode == 1 and "same file" in r.stderr and "Traceback" not in r.stderr,
                f"refuses output == input ({what}): rc {r.returncode}, '{r.stderr.strip()[:90]}...'")
    c.check(hashlib.sha256(open(src_path, "rb").read()).hexdigest() == digest, "input untouched after refusals")
    r = fathom(binary, "quantize", src_path, os.path.join(work, "x.gguf"), "Q3_X", expect_ok=False)
    c.check(r.returncode == 1 and "Q3_X" in r.stderr, f"unknown type refused: '{r.stderr.strip()[:100]}'")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fathom", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--model", help="a real llama.cpp Q4_K_M GGUF: re-quantizing must reproduce it")
    args = ap.parse_args()
    c = Checker()
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    try:
        if args.model:
            if not c.check(os.path.exists(args.model), f"real model present: {args.model}"):
                print(f"{c.passed} passed, {c.failed} failed")
                return 1
            out = os.path.join(work, "real_q4_k_m.gguf")
            r = fathom(args.fathom, "quantize", args.model, out, "Q4_K_M")
            print(r.stdout.strip())
            c.check(filecmp.cmp(args.model, out, shallow=False),
                    "real model Q4_K_M -> Q4_K_M is byte-identical (llama.cpp's per-tensor types reproduced)")
            reader = GGUFReader(args.model)
            names = [t.name for t in reader.tensors]
            wrong = [t.name for t in reader.tensors
                     if expected_type("Q4_K_M", t.name, len(t.shape), int(t.shape[0]), t.tensor_type, names)
                     != t.tensor_type]
            c.check(not wrong, f"independent python recipe agrees with the real file's types ({len(names)} tensors)"
                    + (f"; differs: {wrong[:4]}" if wrong else ""))
            os.remove(out)
            # Real Q4_K / Q5_0 / Q6_K tensors dequantized by fathom and re-quantized to Q8_0.
            os.remove(check_quantized_model(c, args.fathom, args.model, "Q8_0", work, "real"))
        else:
            for shape in ("tiny-llama", "tiny-gemma3"):
                src = os.path.join(work, f"{shape}_f32.gguf")
                fathom(args.fathom, "make-model", "--shape", shape, "-t", "F32", "-o", src)
                for recipe in ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "F16", "BF16", "Q4_K", "Q5_K", "Q6_K",
                               "Q4_K_M", "Q5_K_M"):
                    out = check_quantized_model(c, args.fathom, src, recipe, work, shape)
                    if recipe == "Q4_K_M":
                        # A quantized source: dequantized (by fathom) and re-quantized.
                        check_quantized_model(c, args.fathom, out, "Q8_0", work, f"{shape}_Q4_K_M")
                    os.remove(out) if recipe != "Q4_K_M" else None
            check_refusals(c, args.fathom, os.path.join(work, "tiny-llama_f32.gguf"), work)
    except Exception as e:  # a crash is a failure with its message, not a traceback-only exit
        c.check(False, f"{type(e).__name__}: {e}")
    print(f"{c.passed} passed, {c.failed} failed")
    return 0 if c.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
