#!/usr/bin/env python3
"""Generates tests/data/gguf_broken/*.gguf: small GGUF files with exactly one defect each.

  python3 tests/python/make_gguf_broken.py [OUT_DIR]   (default: tests/data/gguf_broken)

Every file is built from the same valid base (one string key, one F32 tensor of 8 elements) by
changing one field, so each exercises one check of src/gguf/gguf_reader.cpp. tests/test_gguf.cpp
lists the message fragment each must produce; valid.gguf must read. Plain struct packing, no
gguf-py: gguf-py refuses to write most of these.
"""
import os
import struct
import sys

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
F32_TYPE, Q4_K_TYPE = 0, 12


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, payload):
    return s(key) + struct.pack("<I", vtype) + payload


def tinfo(name, ne, ttype=F32_TYPE, offset=0, n_dims=None):
    n_dims = len(ne) if n_dims is None else n_dims
    return s(name) + struct.pack("<I", n_dims) + b"".join(struct.pack("<Q", n) for n in ne) + \
        struct.pack("<IQ", ttype, offset)


def gguf(kvs, tinfos, data, version=3, magic=b"GGUF", alignment=32, n_tensors=None, n_kv=None):
    head = magic + struct.pack("<IQQ", version, len(tinfos) if n_tensors is None else n_tensors,
                               len(kvs) if n_kv is None else n_kv)
    head += b"".join(kvs) + b"".join(tinfos)
    head += b"\0" * (-len(head) % alignment)
    return head + data


ARCH = kv("general.architecture", STR, s("broken"))
DATA = struct.pack("<8f", *range(8))  # 32 bytes: one F32 tensor of 8 elements, already aligned


def base(**kw):
    return gguf([ARCH], [tinfo("w", [8])], DATA, **kw)


def nested_bomb(depth):
    # ARRAY of ARRAY of ... (depth levels) of one UINT8: each level is (type ARRAY, count 1).
    payload = struct.pack("<IQ", U8, 1) + b"\x07"
    for _ in range(depth - 1):
        payload = struct.pack("<IQ", ARR, 1) + payload
    return payload


CASES = {
    "valid": base(),
    "empty": b"",
    "bad_magic": base(magic=b"GGUX"),
    "version1": base(version=1),
    "version4": base(version=4),
    "truncated_header": base()[:12],
    "truncated_in_kv": gguf([ARCH], [], b"")[:60],  # inside the string length of the value
    "truncated_tensor_data": base()[:-8],
    "huge_kv_count": base(n_kv=1 << 60),
    "huge_tensor_count": base(n_tensors=1 << 40),
    "huge_string_length": gguf([struct.pack("<Q", 1 << 62) + b"general.name"], [], b""),
    "huge_array_length": gguf([kv("a", ARR, struct.pack("<IQ", U32, 1 << 61) + b"\0" * 16)], [], b""),
    "nested_array_bomb": gguf([kv("bomb", ARR, nested_bomb(1000))], [], b""),
    "unknown_value_type": gguf([kv("k", 13, b"\0" * 8)], [], b""),
    "n_dims_5": gguf([ARCH], [tinfo("w", [8, 1, 1, 1, 1])], DATA),
    "ne_zero": gguf([ARCH], [tinfo("w", [8, 0])], DATA),
    "ne_overflow": gguf([ARCH], [tinfo("w", [1 << 40, 1 << 40])], DATA),
    "duplicate_tensor": gguf([ARCH], [tinfo("w", [8]), tinfo("w", [8], offset=32)], DATA + DATA),
    "duplicate_key": gguf([ARCH, ARCH], [tinfo("w", [8])], DATA),
    "unknown_type_99": gguf([ARCH], [tinfo("w", [8], ttype=99)], DATA),
    "bad_row_length": gguf([ARCH], [tinfo("w", [100], ttype=Q4_K_TYPE)], b"\0" * 160),
    "misaligned_offset": gguf([ARCH], [tinfo("w", [4], offset=16)], DATA),
    "bad_alignment_3": gguf([ARCH, kv("general.alignment", U32, struct.pack("<I", 3))], [tinfo("w", [8])],
                            DATA, alignment=3),
    "alignment_zero": gguf([ARCH, kv("general.alignment", U32, struct.pack("<I", 0))], [tinfo("w", [8])],
                           DATA, alignment=32),
    "offset_past_end": gguf([ARCH], [tinfo("w", [8], offset=1 << 20)], DATA),
    "offset_wraps": gguf([ARCH], [tinfo("w", [8], offset=(1 << 64) - 32)], DATA),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "data", "gguf_broken")
    os.makedirs(out, exist_ok=True)
    for name, data in CASES.items():
        with open(os.path.join(out, name + ".gguf"), "wb") as f:
            f.write(data)
    print(f"wrote {len(CASES)} files to {out}")


if __name__ == "__main__":
    main()
