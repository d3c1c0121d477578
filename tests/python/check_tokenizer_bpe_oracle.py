#!/usr/bin/env python3
"""fathom's byte-level BPE tokenizer vs HF `tokenizers` on vocabularies trained inside the test.

For each pre-tokenizer (llama-bpe = the Llama 3 regex with ignore_merges, qwen2 = single-digit
variant, gpt2 = the original GPT-2 regex) a byte-level BPE is trained with `tokenizers` on a
deterministic corpus (python stdlib sources + random multilingual text), given Llama-3-style
special tokens (control) and one non-special added token (user-defined), exported to a GGUF file
with gguf-py (tokenizer.ggml.model = gpt2, .pre, .tokens, .token_type, .merges, ids) and loaded by
fathom through Tokenizer::from_gguf in tests/tools/tokenize_tool.

Compared: parse_special=1 (HF default) and parse_special=0 (HF encode_special_tokens=True: special
tokens are plain text, non-special added tokens still match). Invalid UTF-8 (fathom's definition):
each stray byte is the token of its byte-level character and the regex runs on the valid runs
between, so the oracle encodes those runs separately. Round trip decode(encode(s)) == s for all
byte strings with parse_special=0; the streaming decoder equals the 'replace' decoding.
Any missing package FAILS this test.
"""
import argparse
import glob
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_strings as ts  # noqa: E402

import gguf  # noqa: E402  (missing package -> ImportError -> the test fails)
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

REGEX = {
    "llama-bpe": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+",
    "gpt2": r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
}
IGNORE_MERGES = {"llama-bpe": True, "qwen2": False, "gpt2": False}
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
            "<|reserved_special_token_0|>", "<|reserved_special_token_10|>"]
USER_DEFINED = ["<tool>"]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def corpus(seed, limit_bytes):
    texts = []
    total = 0
    libdir = os.path.dirname(os.__file__)
    for path in sorted(glob.glob(os.path.join(libdir, "*.py"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            t = f.read()
        texts.append(t)
        total += len(t)
        if total > limit_bytes:
            break
    rng = random.Random(seed)
    for _ in range(3000):
        texts.append(ts.random_text(rng, []))
    return texts


def build(pre, texts, vocab_size, workdir):
    """Trains the HF tokenizer, returns it and the path of the GGUF fathom loads."""
    def pipeline(model):
        tok = Tokenizer(model)
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(REGEX[pre]), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
        return tok

    tok = pipeline(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = model["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    tok = pipeline(models.BPE(vocab, [tuple(m.split(" ", 1)) for m in merges], ignore_merges=IGNORE_MERGES[pre]))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in USER_DEFINED])

    full = tok.get_vocab(with_added_tokens=True)
    n = len(full)
    tokens = [None] * n
    for t, i in full.items():
        tokens[i] = t
    assert all(t is not None for t in tokens), "vocabulary ids are not dense"
    types = [1] * n
    for t in SPECIALS:
        types[full[t]] = 3
    for t in USER_DEFINED:
        types[full[t]] = 4

    path = os.path.join(workdir, f"bpe_{pre}.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(full["<|begin_of_text|>"])
    w.add_eos_token_id(full["<|end_of_text|>"])
    w.add_add_bos_token(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tok, tokens, path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--n", type=int, default=2500)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    t0 = time.time()
    texts = corpus(seed=7, limit_bytes=600_000)
    b2u = bytes_to_unicode()
    total = 0
    failures = []
    for pre in ("llama-bpe", "qwen2", "gpt2"):
        t1 = time.time()
        hf, tokens, path = build(pre, texts, 3000, args.work)
        byte_id = {b: hf.token_to_id(b2u[b]) for b in range(256)}
        bos = hf.token_to_id("<|begin_of_text|>")
        print(f"[{pre}] trained {len(tokens)} tokens in {time.time() - t1:.1f}s")

        def oracle(b, parse_special):
            hf.encode_special_tokens = not parse_special
            ids = []
            for kind, v in ts.valid_segments(b):
                if kind == "byte":
                    ids.append(byte_id[v])
                elif v:
                    ids += hf.encode(v, add_special_tokens=False).ids
            return ids

        # The oracle itself: the regex splits as the Llama 3 / Qwen2 / GPT-2 pre-tokenizers do.
        words = [w for w, _ in hf.pre_tokenizer.pre_tokenize_str("I'm 12345 x")]
        want = {"llama-bpe": ["I", "'m", "Ġ", "123", "45", "Ġx"], "qwen2": ["I", "'m", "Ġ", "1", "2", "3", "4", "5", "Ġx"],
                "gpt2": ["I", "'m", "Ġ12345", "Ġx"]}[pre]
        assert words == want, f"oracle pre-tokenizer {pre}: {words} != {want}"

        def fmt(ids):
            return [tokens[i] for i in ids]

        for tag, parse_special, seed, extra in (("special", True, 11, []), ("plain", False, 12, []),
                                                ("add_bos", True, 13, ["--add-special", "1"])):
            strings = ts.make_strings(args.n if tag != "add_bos" else 200, seed=seed,
                                      specials=SPECIALS + USER_DEFINED + ["<|eot", "<tool"])
            res = ts.run_tool(args.tool, ["--gguf", path, "--parse-special", "1" if parse_special else "0"] + extra,
                              strings, args.work, f"{pre}_{tag}")
            bad = 0
            for s, (ids, dec, streamed) in zip(strings, res):
                want_ids = oracle(s, parse_special)
                if tag == "add_bos" and not (want_ids and want_ids[0] == bos):
                    want_ids = [bos] + want_ids
                if ids != want_ids:
                    bad += 1
                    if bad <= 5:
                        failures.append(f"[{pre}/{tag}] {s!r}\n  fathom: {fmt(ids)}\n  oracle: {fmt(want_ids)}")
                if not parse_special and dec != s:
                    bad += 1
                    failures.append(f"[{pre}/{tag}] round trip {s!r} -> {dec!r}")
                want_stream = dec.decode("utf-8", errors="replace").encode()
                if streamed != want_stream:
                    bad += 1
                    failures.append(f"[{pre}/{tag}] stream decode {s!r}: {streamed!r} != {want_stream!r}")
            print(f"[{pre}/{tag}] {len(strings)} strings, {bad} mismatches")
            total += bad
    for f in failures[:30]:
        print(f)
    print(f"done in {time.time() - t0:.1f}s")
    if total:
        print(f"FAIL: {total} mismatches")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
