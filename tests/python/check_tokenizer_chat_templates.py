#!/usr/bin/env python3
"""fathom's hand-written chat templates vs Jinja2 renderings of the template strings.

For every template under tests/data/tokenizer/chat_templates and every conversation below, Jinja2
renders the template the way HF transformers does (ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, raise_exception) and fathom (tests/tools/tokenize_tool chat) detects the family
from the string and renders it; fathom's text must equal Jinja's minus the leading BOS text, and
fathom must fail exactly where the template raises. Unsupported templates must be rejected.
A missing jinja2 package FAILS the test.
"""
import argparse
import json
import os
import subprocess
import sys

from jinja2.exceptions import TemplateError  # noqa: E402  (missing package -> the test fails)
from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "..", "data", "tokenizer", "chat_templates")
SPECIAL = {  # bos, eos the model family's vocabulary uses
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"), "llama3.1": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama2": ("<s>", "</s>"), "qwen2": ("", "<|im_end|>"), "qwen2.5": ("", "<|im_end|>"),
    "qwen3": ("", "<|im_end|>"), "gemma3": ("<bos>", "<eos>"), "mistral": ("<s>", "</s>"),
}
EXPECTED_KIND = {"llama3": "llama3", "llama3.1": "llama3.1", "llama2": "llama2", "qwen2": "qwen2",
                 "qwen2.5": "qwen2.5", "qwen3": "qwen3", "gemma3": "gemma", "mistral": None}


def m(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = [
    [m("user", "Hello!")],
    [m("system", "You are terse."), m("user", "Hi")],
    [m("user", "What is 2+2?"), m("assistant", "4"), m("user", "And 3+3?")],
    [m("system", "  padded system \n"), m("user", "\n\t spaced user \u3000"), m("assistant", " ok \u00a0"),
     m("user", "ünïcödé 東京 😀\nline2  ")],
    [m("user", "think"), m("assistant", "<think>\nlet me see\n</think>\n\nanswer one"), m("user", "again")],
    [m("user", "prefill"), m("assistant", "<think>\nreasoning\n\n</think>\n\npartial")],
    [m("user", "q"), m("assistant", "no think tags here"), m("user", "q2"), m("assistant", "a2")],
    [m("user", "a"), m("user", "b")],                   # roles do not alternate
    [m("assistant", "I start"), m("user", "b")],        # assistant first
    [m("system", "sys only")],
    [m("user", "")],
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(msg):
        raise TemplateError(msg)
    env.globals["raise_exception"] = raise_exception

    cases, expected = [], []
    for name in sorted(EXPECTED_KIND):
        with open(os.path.join(TEMPLATES, name + ".jinja")) as f:
            src = f.read()
        tmpl = env.from_string(src)
        bos, eos = SPECIAL[name]
        for conv in CONVERSATIONS:
            for gen in (True, False):
                try:
                    want = tmpl.render(messages=conv, add_generation_prompt=gen, bos_token=bos, eos_token=eos)
                except TemplateError:
                    want = None
                cases.append({"template": src, "arch": "llama", "messages": conv, "add_generation_prompt": gen})
                expected.append((name, conv, gen, want))
    # Architecture fallback when the GGUF has no template, and rejections.
    extra = [({"template": "", "arch": "gemma3", "messages": CONVERSATIONS[1], "add_generation_prompt": True},
              "gemma"),
             ({"template": "", "arch": "llama", "messages": CONVERSATIONS[0], "add_generation_prompt": True}, None),
             ({"template": "{{ messages }}", "arch": "qwen2", "messages": CONVERSATIONS[0],
               "add_generation_prompt": True}, None)]

    inp = os.path.join(args.work, "chat_cases.json")
    outp = os.path.join(args.work, "chat_out.json")
    with open(inp, "w") as f:
        json.dump(cases + [c for c, _ in extra], f)
    subprocess.run([args.tool, "chat", "--in", inp, "--out", outp], check=True)
    with open(outp) as f:
        got = json.load(f)
    assert len(got) == len(cases) + len(extra)

    bad = 0
    for (name, conv, gen, want), r in zip(expected, got):
        kind = EXPECTED_KIND[name]
        where = f"[{name} gen={gen}] {json.dumps(conv, ensure_ascii=False)[:120]}"
        if kind is None:
            if "error" not in r or "unrecognised chat template" not in r["error"]:
                bad += 1
                print(f"FAIL {where}: unsupported template was not rejected: {r}")
            continue
        if want is None:
            if "error" not in r:
                bad += 1
                print(f"FAIL {where}: Jinja raises, fathom rendered {r.get('text')!r}")
            continue
        if "error" in r:
            bad += 1
            print(f"FAIL {where}: fathom error {r['error']}; Jinja: {want!r}")
            continue
        if r["kind"] != kind:
            bad += 1
            print(f"FAIL {where}: detected {r['kind']}, expected {kind}")
        # The rendering leaves the leading BOS to encode(); a Llama 2 conversation without a
        # user turn prints no BOS at all.
        if r["bos"] + r["text"] != want and not (r["text"] == want == ""):
            bad += 1
            print(f"FAIL {where}:\n  fathom: {r['bos'] + r['text']!r}\n  jinja:  {want!r}")
    for (case, kind), r in zip(extra, got[len(cases):]):
        ok = ("error" in r) if kind is None else (r.get("kind") == kind)
        if not ok:
            bad += 1
            print(f"FAIL arch fallback {case['arch']!r} template {case['template']!r}: {r}")
        elif kind == "gemma":
            want = "<start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
            if r["text"] != want:
                bad += 1
                print(f"FAIL gemma3 fallback: {r['text']!r} != {want!r}")
    n = len(cases) + len(extra)
    print(f"{n} renderings compared, {bad} mismatches")
    print("PASS" if bad == 0 else "FAIL")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
