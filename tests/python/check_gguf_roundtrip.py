#!/usr/bin/env python3
"""Cross-checks fathom's GGUF reader and writer against gguf-py (the `gguf` PyPI package).

  check_gguf_roundtrip.py TOOL WORKDIR            sample files in both directions
  check_gguf_roundtrip.py TOOL WORKDIR --model M  also: re-writing model M is byte-identical

TOOL is tests/tools/write_sample_gguf (write / dump / copy). Checks:
  1. fathom writes the sample (alignment 32 and 64); gguf.GGUFReader reads every key, value and
     tensor byte as expected, every tensor's data is aligned.
  2. gguf.GGUFWriter writes a file with every value type, nested arrays and several tensor types;
     fathom's reader dumps the same values and bytes; fathom's re-write is byte-identical.
Exits non-zero with a message on the first mismatch; fails (never skips) when gguf is missing.
"""
import json
import math
import os
import struct
import subprocess
import sys

import numpy as np
import gguf
from gguf import GGUFValueType as T, GGMLQuantizationType as Q

FMT = {T.UINT8: "<B", T.INT8: "<b", T.UINT16: "<H", T.INT16: "<h", T.UINT32: "<I", T.INT32: "<i",
       T.UINT64: "<Q", T.INT64: "<q", T.FLOAT32: "<f", T.FLOAT64: "<d", T.BOOL: "<?"}

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("MISMATCH:", msg)


# A value is (type, payload); an array payload is (element_type, [element payloads]).
def arr(et, xs):
    return (T.ARRAY, (et, xs))


def pack(t, x):
    """The bytes of a payload as the GGUF spec lays them out (no leading type tag)."""
    if t == T.STRING:
        b = x.encode("utf-8")
        return struct.pack("<Q", len(b)) + b
    if t == T.ARRAY:
        et, xs = x
        return struct.pack("<IQ", et, len(xs)) + b"".join(pack(et, e) for e in xs)
    return struct.pack(FMT[t], x)


def to_json(t, x):
    """The structure write_sample_gguf dump prints for a value."""
    j = {"t": t.name}
    if t == T.FLOAT32:
        j["bits"] = struct.unpack("<I", struct.pack("<f", x))[0]
    elif t == T.FLOAT64:
        j["bits"] = struct.unpack("<Q", struct.pack("<d", x))[0]
    elif t == T.STRING:
        j["hex"] = x.encode("utf-8").hex()
    elif t == T.ARRAY:
        et, xs = x
        j["elem"] = et.name
        j["v"] = [to_json(et, e) for e in xs]
    elif t == T.BOOL:
        j["v"] = 1 if x else 0
    else:
        j["v"] = x
    return j


def same_float(a, b, t):
    f = "<f" if t == T.FLOAT32 else "<d"
    return struct.pack(f, a) == struct.pack(f, b)


def check_field(field, key, t, x):
    """gguf-py's view of one key: its type, its raw parts and (for flat values) contents()."""
    check(field.types and field.types[0] == t, f"{key}: gguf reads type {field.types[:1]}, expected {t.name}")
    raw = b"".join(p.tobytes() for p in field.parts[3:])  # parts 0-2: key length, key, value type
    check(raw == pack(t, x), f"{key}: value bytes differ: {raw.hex()} != {pack(t, x).hex()}")
    if t == T.ARRAY:
        et, xs = x
        if et == T.ARRAY:
            return  # gguf-py flattens nested arrays; the raw bytes above are the check
        got = field.contents()
        if et in (T.FLOAT32, T.FLOAT64):
            ok = len(got) == len(xs) and all(same_float(a, b, et) for a, b in zip(got, xs))
        else:
            ok = got == list(xs)
        check(ok, f"{key}: gguf reads {got!r}, expected {xs!r}")
    elif t in (T.FLOAT32, T.FLOAT64):
        check(same_float(field.contents(), x, t), f"{key}: gguf reads {field.contents()!r}, expected {x!r}")
    else:
        check(field.contents() == x, f"{key}: gguf reads {field.contents()!r}, expected {x!r}")


# ---- 1. fathom writes, gguf-py reads ------------------------------------------------------------

def sample_kv(alignment):
    """The sample of tests/tools/write_sample_gguf.cpp, in the same order."""
    nan = struct.unpack("<f", struct.pack("<I", 0x7FC00000))[0]
    return [
        ("general.architecture", T.STRING, "sample"),
        ("general.alignment", T.UINT32, alignment),
        ("test.u8", T.UINT8, 200), ("test.i8", T.INT8, -100),
        ("test.u16", T.UINT16, 60000), ("test.i16", T.INT16, -30000),
        ("test.u32", T.UINT32, 4000000000), ("test.i32", T.INT32, -2000000000),
        ("test.u64", T.UINT64, (1 << 63) + 5), ("test.i64", T.INT64, -(1 << 62) - 3),
        ("test.f32", T.FLOAT32, 3.25), ("test.f64", T.FLOAT64, -1e300),
        ("test.bool_t", T.BOOL, True), ("test.bool_f", T.BOOL, False),
        ("test.string", T.STRING, "héllo wörld"), ("test.empty_string", T.STRING, ""),
        ("test.f32_special", *arr(T.FLOAT32, [0.5, -0.0, math.inf, -math.inf, nan])),
        ("test.arr_u8", *arr(T.UINT8, [1, 2, 255])),
        ("test.arr_i8", *arr(T.INT8, [-128, 127])),
        ("test.arr_u16", *arr(T.UINT16, [65535, 0])),
        ("test.arr_i16", *arr(T.INT16, [-32768, 5])),
        ("test.arr_u32", *arr(T.UINT32, [1, 4294967295])),
        ("test.arr_i32", *arr(T.INT32, [-1, 0, 2147483647])),
        ("test.arr_u64", *arr(T.UINT64, [18446744073709551615])),
        ("test.arr_i64", *arr(T.INT64, [-(1 << 63)])),
        ("test.arr_f64", *arr(T.FLOAT64, [0.1, -2.5])),
        ("test.arr_bool", *arr(T.BOOL, [True, False])),
        ("test.arr_str", *arr(T.STRING, ["a", "", "ünïcode"])),
        ("test.arr_empty", *arr(T.INT32, [])),
        ("test.nested", *arr(T.ARRAY, [(T.INT32, [1, 2, 3]), (T.STRING, ["x", "y"]), (T.UINT8, [9])])),
        ("test.nested3", *arr(T.ARRAY, [(T.ARRAY, [(T.FLOAT32, [1.5]), (T.FLOAT32, [2.5, 3.5])])])),
    ]


SAMPLE_TENSORS = [  # name, type, ne (ggml order), bytes
    ("t.f32", Q.F32, [5, 3], 5 * 3 * 4),
    ("t.f16", Q.F16, [7], 7 * 2),
    ("t.q8_0", Q.Q8_0, [64, 2], 2 * 2 * 34),
    ("t.q4_k", Q.Q4_K, [256, 3], 3 * 144),
    ("t.i8", Q.I8, [3, 2, 2, 2], 24),
]


def sample_bytes(n, seed):
    return bytes(((k * 131 + seed * 17 + 7) & 0xFF) for k in range(n))


def check_fathom_written(tool, workdir, alignment):
    path = os.path.join(workdir, f"fathom_sample_a{alignment}.gguf")
    subprocess.run([tool, "write", path, str(alignment)], check=True)
    r = gguf.GGUFReader(path)
    expected = sample_kv(alignment)
    keys = [f.name for f in r.fields.values() if not f.name.startswith("GGUF.")]
    check(keys == [k for k, _, _ in expected], f"a{alignment}: key order {keys}")
    for key, t, x in expected:
        if key not in r.fields:
            check(False, f"a{alignment}: gguf does not find key {key}")
            continue
        check_field(r.fields[key], key, t, x)
    check(r.alignment == alignment, f"gguf reads alignment {r.alignment}, expected {alignment}")
    check(len(r.tensors) == len(SAMPLE_TENSORS), f"gguf reads {len(r.tensors)} tensors")
    for seed, ((name, qt, ne, nbytes), rt) in enumerate(zip(SAMPLE_TENSORS, r.tensors)):
        check(rt.name == name, f"tensor {seed}: name {rt.name} != {name}")
        check(rt.tensor_type == qt, f"{name}: type {rt.tensor_type!r} != {qt!r}")
        check(list(rt.shape) == ne, f"{name}: ne {list(rt.shape)} != {ne}")
        check(rt.n_bytes == nbytes, f"{name}: {rt.n_bytes} bytes != {nbytes}")
        check(rt.data_offset % alignment == 0, f"{name}: data at {rt.data_offset} not aligned to {alignment}")
        check(rt.data.tobytes() == sample_bytes(nbytes, seed), f"{name}: data bytes differ")
    # Our own re-write of our own file is byte-identical.
    copy = path + ".copy"
    subprocess.run([tool, "copy", path, copy], check=True)
    check(open(copy, "rb").read() == open(path, "rb").read(), f"a{alignment}: fathom copy differs from original")
    print(f"fathom-written sample (alignment {alignment}) reads back in gguf-py: "
          f"{len(expected)} keys, {len(SAMPLE_TENSORS)} tensors")


# ---- 2. gguf-py writes, fathom reads ------------------------------------------------------------

def python_kv():
    """Values gguf-py writes. Nested arrays: gguf-py infers inner types (int->INT32, float->FLOAT32)."""
    return [
        ("py.u8", T.UINT8, 7), ("py.i8", T.INT8, -7), ("py.u16", T.UINT16, 65535), ("py.i16", T.INT16, -1),
        ("py.u32", T.UINT32, 123456789), ("py.i32", T.INT32, -123456789),
        ("py.u64", T.UINT64, 2**64 - 1), ("py.i64", T.INT64, -(2**63)),
        ("py.f32", T.FLOAT32, -0.0), ("py.f64", T.FLOAT64, math.pi),
        ("py.bool", T.BOOL, True), ("py.string", T.STRING, "γγυφ ok"),
        ("py.arr_u8", *arr(T.UINT8, [0, 128, 255])),
        ("py.arr_i16", *arr(T.INT16, [-5, 5])),
        ("py.arr_u64", *arr(T.UINT64, [1, 2**63])),
        ("py.arr_f32", *arr(T.FLOAT32, [0.25, -1.75, math.inf])),
        ("py.arr_f64", *arr(T.FLOAT64, [1e-300])),
        ("py.arr_bool", *arr(T.BOOL, [False, True, True])),
        ("py.arr_str", *arr(T.STRING, ["<s>", "▁the", ""])),
        ("py.nested", *arr(T.ARRAY, [(T.INT32, [1, 2]), (T.INT32, [3])])),
        ("py.nested_mixed", *arr(T.ARRAY, [(T.STRING, ["a"]), (T.FLOAT32, [0.5, 1.5])])),
        ("py.nested3", *arr(T.ARRAY, [(T.ARRAY, [(T.INT32, [4, 5, 6])])])),
    ]


def plain(t, x):
    """A payload as the python value GGUFWriter.add_key_value takes."""
    if t == T.ARRAY:
        et, xs = x
        return [plain(et, e) for e in xs]
    return x


def check_python_written(tool, workdir):
    path = os.path.join(workdir, "python_sample.gguf")
    w = gguf.GGUFWriter(path, "pyarch")
    w.add_custom_alignment(64)
    for key, t, x in python_kv():
        if t == T.ARRAY:
            et, xs = x
            w.add_key_value(key, plain(t, x), T.ARRAY, sub_type=None if et == T.ARRAY else et)
        else:
            w.add_key_value(key, x, t)
    tensors = [
        ("w.f32", np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5, None),
        ("w.f16", np.linspace(-1, 1, 10, dtype=np.float16), None),
        ("w.i32", np.arange(6, dtype=np.int32).reshape(1, 2, 3) * -7, None),
        ("w.q8_0", np.frombuffer(sample_bytes(3 * 34 * 2, 3), dtype=np.uint8).reshape(3, 68), Q.Q8_0),
        ("w.q6_k", np.frombuffer(sample_bytes(210, 4), dtype=np.uint8).reshape(1, 210), Q.Q6_K),
    ]
    for name, a, raw in tensors:
        if raw is None:
            w.add_tensor(name, a)
        else:
            w.add_tensor(name, a, raw_shape=a.shape, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    out = subprocess.run([tool, "dump", path], check=True, capture_output=True, text=True).stdout
    d = json.loads(out)
    kv = {e["key"]: e["value"] for e in d["kv"]}
    expected = [("general.architecture", T.STRING, "pyarch"), ("general.alignment", T.UINT32, 64)] + python_kv()
    check([e["key"] for e in d["kv"]] == [k for k, _, _ in expected], f"python file: key order {list(kv)}")
    for key, t, x in expected:
        check(kv.get(key) == to_json(t, x), f"{key}: fathom reads {kv.get(key)}, expected {to_json(t, x)}")
    check(d["alignment"] == 64, f"fathom reads alignment {d['alignment']}")
    # Tensors: gguf-py's own reader gives the reference bytes and shapes.
    r = gguf.GGUFReader(path)
    check(len(d["tensors"]) == len(r.tensors), f"fathom reads {len(d['tensors'])} tensors, gguf {len(r.tensors)}")
    for ft, rt in zip(d["tensors"], r.tensors):
        check(ft["name"] == rt.name, f"tensor name {ft['name']} != {rt.name}")
        check(ft["type"] == int(rt.tensor_type), f"{rt.name}: type {ft['type']} != {int(rt.tensor_type)}")
        check(ft["ne"] == [int(n) for n in rt.shape], f"{rt.name}: ne {ft['ne']} != {list(rt.shape)}")
        check(d["data_offset"] + ft["offset"] == rt.data_offset, f"{rt.name}: data offset differs")
        check(bytes.fromhex(ft["data"]) == rt.data.tobytes(), f"{rt.name}: data bytes differ")
    # fathom's writer reproduces gguf-py's file byte for byte.
    copy = path + ".copy"
    subprocess.run([tool, "copy", path, copy], check=True)
    a, b = open(path, "rb").read(), open(copy, "rb").read()
    first = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
    check(a == b, f"fathom re-write of the gguf-py file differs ({len(b)} vs {len(a)} bytes, first at {first})")
    print(f"gguf-py-written file reads in fathom: {len(expected)} keys, {len(r.tensors)} tensors; "
          f"re-write byte-identical ({len(a)} bytes)")


def check_model_copy(tool, workdir, model):
    copy = os.path.join(workdir, "model_copy.gguf")
    subprocess.run([tool, "copy", model, copy], check=True)
    with open(model, "rb") as fa, open(copy, "rb") as fb:
        pos = 0
        while True:
            a, b = fa.read(1 << 20), fb.read(1 << 20)
            if a != b:
                check(False, f"re-write of {model} differs near byte {pos}")
                break
            if not a:
                break
            pos += len(a)
    os.remove(copy)
    print(f"re-write of {model} is byte-identical ({pos} bytes)")


def main():
    if len(sys.argv) not in (3, 5):
        print(__doc__)
        return 2
    tool, workdir = sys.argv[1], sys.argv[2]
    os.makedirs(workdir, exist_ok=True)
    if len(sys.argv) == 5:
        check_model_copy(tool, workdir, sys.argv[4])
    else:
        check_fathom_written(tool, workdir, 32)
        check_fathom_written(tool, workdir, 64)
        check_python_written(tool, workdir)
    if failures:
        print(f"FAILED: {len(failures)} mismatches")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
