"""Random and adversarial test strings for the tokenizer oracle checks (deterministic per seed).

Every string is returned as bytes: most are UTF-8 text, a share carries invalid UTF-8 (stray
continuation bytes, truncated sequences, overlongs, surrogates, F5..FF) on purpose.
"""
import random

WORDS = ("the quick brown fox jumps over lazy dog Hello hello HELLO world World tokenizer token "
         "I'm you're we've they'll she'd it's don't CAN'T O'Neil naïve café résumé Straße "
         "über jalapeño 東京 こんにちは 안녕하세요 Привет мир مرحبا שלום नमस्ते ภาษาไทย "
         "def return print(x) {} [] () <div> </div> <s> </s> <b> ``` #include std::vector "
         "http://example.com/a?b=c&d=e foo_bar fooBar 3.14159 1,000,000 2024-01-01 12:30pm "
         "αβγ ΔΣΩ ñ ü ß æ ø å ŀ ĳ ﬁ ﬀ ＡＢＣ １２３ ℕ ℝ ∑ ∫ √ ∞ ≤ ≥ ≠ → ← ↑ ↓ © ® ™ € £ ¥ ₹").split()

POOLS = [
    (0x20, 0x7E), (0xA0, 0xFF), (0x100, 0x17F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF),
    (0x600, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x3040, 0x30FF),
    (0x4E00, 0x9FA5), (0xAC00, 0xD7A3), (0xFF01, 0xFF5E), (0x2000, 0x206F), (0x2190, 0x22FF),
    (0x1F300, 0x1F5FF), (0x1F600, 0x1F64F), (0x1F900, 0x1F9FF), (0x1D400, 0x1D4FF),
    (0x0300, 0x036F), (0xE000, 0xE0FF), (0x10000, 0x1007F), (0x0, 0x1F),
]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", " \n", "\u00a0", "\u2009", "\u3000",
          "\u0085", "\u2028", "\u180e", "\u200b", "\x0b", "\x0c", "        ", "\t\t", "\n \n"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "❤️", "🤖", "✨", "🔥🔥🔥", "👩🏻‍💻"]
COMBINING = ["e\u0301", "a\u0308\u0304", "n\u0303", "\u0915\u094d\u0937", "\u1100\u1161\u11a8", "o\u0328\u0301"]
INVALID = [b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xe2\x82", b"\xe2", b"\xed\xa0\x80", b"\xf0\x9f",
           b"\xf0\x9f\x98", b"\xf5\x80\x80\x80", b"\xff", b"\xfe", b"\xf4\x90\x80\x80", b"\xe0\x80\xaf",
           b"\xc3", b"\xc3\x28", b"\xa0\xa1"]


def random_char(rng, pools):
    lo, hi = rng.choice(pools)
    while True:
        cp = rng.randint(lo, hi)
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def random_text(rng, specials, pools=POOLS, allow_space_symbol=True):
    parts = []
    for _ in range(rng.randint(1, 12)):
        r = rng.random()
        if r < 0.35:
            parts.append(rng.choice(WORDS))
        elif r < 0.50:
            parts.append(rng.choice(SPACES))
        elif r < 0.62:
            parts.append("".join(random_char(rng, pools) for _ in range(rng.randint(1, 6))))
        elif r < 0.70:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
        elif r < 0.76:
            parts.append(rng.choice(EMOJI))
        elif r < 0.81:
            parts.append(rng.choice(COMBINING))
        elif r < 0.86 and specials:
            s = rng.choice(specials)
            parts.append(s if rng.random() < 0.7 else s[: rng.randint(1, max(1, len(s) - 1))])
        elif r < 0.90:
            parts.append(rng.choice(["'s", "'t", "'re", "'VE", "'M", "'ll", "'D", "’s", "''", "'"]))
        elif r < 0.93 and allow_space_symbol:
            parts.append("\u2581" * rng.randint(1, 3))
        else:
            parts.append(rng.choice(".,;:!?-_=+*/\\|\"'`~@#$%^&()[]{}<>") * rng.randint(1, 4))
        if rng.random() < 0.5:
            parts.append(" ")
    return "".join(parts)


def make_strings(n, seed, specials=(), invalid_share=0.08, allow_space_symbol=True):
    """n byte strings: fixed edge cases first, then random ones."""
    rng = random.Random(seed)
    fixed = ["", " ", "  ", "a", " a", "a ", "\n", "\n\n\n", "\t", " \t\n ", "Hello world", " Hello world",
             "Hello  world", "hello   world  ", "1234567890", "123 4567 89", "I'm can't won't",
             "    indented code\n\tline", "a\r\nb\rc\n", "x" * 300, " " * 40, "\n" * 40, "9" * 50,
             "東京都の天気", "😀😀😀", "e\u0301\u0301\u0301", "<div>hi</div>", "<s>text</s>"]
    fixed += list(specials)
    fixed += [s + " after" for s in specials[:5]] + ["before" + s for s in specials[:5]]
    if allow_space_symbol:
        fixed += ["\u2581", "a\u2581b", "\u2581\u2581 "]
    out = [s.encode("utf-8") for s in fixed]
    out += [b"\x80", b"a\xffb", b"\xe2\x82", b"abc\xe2\x82\xac\xe2\x82", b"\xed\xa0\x80x", b"\xc0\xaf"]
    while len(out) < n:
        s = random_text(rng, list(specials), allow_space_symbol=allow_space_symbol).encode("utf-8")
        if rng.random() < invalid_share:
            for _ in range(rng.randint(1, 3)):
                k = rng.randint(0, len(s))
                s = s[:k] + rng.choice(INVALID) + s[k:]
        out.append(s)
    return out[:n]


def valid_segments(b):
    """Splits bytes into ('text', str) runs of well-formed UTF-8 and ('byte', int) stray bytes.

    Python's strict decoder marks exactly the bytes fathom treats as stray (Unicode table 3-7)."""
    s = b.decode("utf-8", errors="surrogateescape")
    out, cur = [], []
    for ch in s:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:
            if cur:
                out.append(("text", "".join(cur)))
                cur = []
            out.append(("byte", o - 0xDC00))
        else:
            cur.append(ch)
    if cur:
        out.append(("text", "".join(cur)))
    return out


def run_tool(tool, args, strings, workdir, tag):
    """Runs tokenize_tool encode; returns [(ids, decoded_bytes, streamed_bytes)]."""
    import os
    import subprocess
    inp = os.path.join(workdir, tag + ".in")
    outp = os.path.join(workdir, tag + ".out")
    with open(inp, "w") as f:
        for s in strings:
            f.write(s.hex() + "\n")
    subprocess.run([tool, "encode", "--in", inp, "--out", outp] + args, check=True)
    res = []
    with open(outp) as f:
        for line in f:
            ids_s, dec, streamed = line.rstrip("\n").split("\t")
            ids = [int(x) for x in ids_s.split()] if ids_s else []
            res.append((ids, bytes.fromhex(dec), bytes.fromhex(streamed)))
    assert len(res) == len(strings), (len(res), len(strings))
    return res
