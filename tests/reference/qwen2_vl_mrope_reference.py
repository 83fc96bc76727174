#!/usr/bin/python3
"""Reference output for seqrec's Qwen2-VL language model with M-RoPE (src/seqrec/llm/decoder_lm.cc).

A short PyTorch transcription of transformers' modeling_qwen2_vl.py text side: get_rope_index's
positions for a prompt of [text][image grid][text] (image tokens at (t, row, column) offsets from the
position after the text before them; the text after the image continues at that start + max(grid)),
Qwen2VLRotaryEmbedding over the [3, B, T] positions, apply_multimodal_rotary_pos_emb (channels cut
into mrope_section * 2, chunk i from row i % 3), and the decoder (RMSNorm, q/k/v with biases,
grouped-query causal attention, SwiGLU MLP, final norm), run on random weights and random input
embeddings (as Molar feeds soft image tokens). Writes tests/fixtures/qwen2_vl_lm: config.json,
model.safetensors and expected.safetensors (inputs_embeds [1, T, D], position_ids [3, 1, T] as
float, hidden [1, T, D]). Needs only Debian's python3-torch. Run from the repository root:
    /usr/bin/python3 tests/reference/qwen2_vl_mrope_reference.py
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vision_tower_reference import rotate_half, save_safetensors  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "qwen2_vl_lm")

CONFIG = {
    "model_type": "qwen2_vl", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0, "max_position_embeddings": 128, "tie_word_embeddings": False,
    "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
}
# The prompt: 3 text tokens, a 2 x 3 grid of merged image tokens, 2 text tokens.
SEGMENTS = [("text", 3), ("image", 2, 3), ("text", 2)]


def rope_index(segments):
    """get_rope_index for one sequence (an image: llm_grid_t = 1)."""
    rows, st = [], 0
    for seg in segments:
        if seg[0] == "text":
            p = torch.arange(seg[1]) + st
            rows.append(torch.stack([p, p, p]))
        else:
            gh, gw = seg[1], seg[2]
            t = torch.zeros(gh * gw, dtype=torch.long)
            h = torch.arange(gh).view(-1, 1).expand(gh, gw).flatten()
            w = torch.arange(gw).view(1, -1).expand(gh, gw).flatten()
            rows.append(torch.stack([t, h, w]) + st)
        st = int(rows[-1].max()) + 1
    return torch.cat(rows, 1).unsqueeze(1)  # [3, 1, T]


def rms(x, weight, eps):
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps))


def rotary(position_ids, head_dim, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    inv = inv_freq[None, None, :, None].expand(3, position_ids.shape[1], -1, 1)
    freqs = (inv @ position_ids[:, :, None, :].float()).transpose(2, 3)  # [3, B, T, hd/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def multimodal(cos, sin, section):
    section = section * 2
    cos = torch.cat([m[i % 3] for i, m in enumerate(cos.split(section, dim=-1))], dim=-1).unsqueeze(1)
    sin = torch.cat([m[i % 3] for i, m in enumerate(sin.split(section, dim=-1))], dim=-1).unsqueeze(1)
    return cos, sin


def forward(w, c, x, position_ids):
    b, t, d = x.shape
    nh, nkv = c["num_attention_heads"], c["num_key_value_heads"]
    hd = d // nh
    cos, sin = multimodal(*rotary(position_ids, hd, c["rope_theta"]), c["rope_scaling"]["mrope_section"])
    mask = torch.full((t, t), float("-inf")).triu(1)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, w[p + "input_layernorm.weight"], c["rms_norm_eps"])
        proj = lambda n: torch.nn.functional.linear(h, w[p + f"self_attn.{n}_proj.weight"], w[p + f"self_attn.{n}_proj.bias"])
        q = proj("q").view(b, t, nh, hd).transpose(1, 2)
        k = proj("k").view(b, t, nkv, hd).transpose(1, 2)
        v = proj("v").view(b, t, nkv, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(nh // nkv, 1), v.repeat_interleave(nh // nkv, 1)
        att = torch.softmax(q @ k.transpose(2, 3) / hd ** 0.5 + mask, dim=-1, dtype=torch.float32)
        o = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + torch.nn.functional.linear(o, w[p + "self_attn.o_proj.weight"])
        h = rms(x, w[p + "post_attention_layernorm.weight"], c["rms_norm_eps"])
        gate = torch.nn.functional.linear(h, w[p + "mlp.gate_proj.weight"])
        up = torch.nn.functional.linear(h, w[p + "mlp.up_proj.weight"])
        x = x + torch.nn.functional.linear(torch.nn.functional.silu(gate) * up, w[p + "mlp.down_proj.weight"])
    return rms(x, w["model.norm.weight"], c["rms_norm_eps"])


def weights(c, gen):
    d, f, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    kv = d // c["num_attention_heads"] * c["num_key_value_heads"]
    r = lambda *shape: torch.randn(*shape, generator=gen) * 0.2
    w = {"model.embed_tokens.weight": r(v, d), "lm_head.weight": r(v, d), "model.norm.weight": 1 + r(d)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for n, rows in (("q", d), ("k", kv), ("v", kv)):
            w[p + f"self_attn.{n}_proj.weight"] = r(rows, d)
            w[p + f"self_attn.{n}_proj.bias"] = r(rows)
        w[p + "self_attn.o_proj.weight"] = r(d, d)
        w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"] = r(f, d), r(f, d)
        w[p + "mlp.down_proj.weight"] = r(d, f)
        w[p + "input_layernorm.weight"], w[p + "post_attention_layernorm.weight"] = 1 + r(d), 1 + r(d)
    return w


def main():
    gen = torch.Generator().manual_seed(11)
    w = weights(CONFIG, gen)
    position_ids = rope_index(SEGMENTS)
    x = torch.randn(1, position_ids.shape[2], CONFIG["hidden_size"], generator=gen)
    with torch.no_grad():
        hidden = forward(w, CONFIG, x, position_ids)
        flat = forward(w, CONFIG, x, torch.arange(x.shape[1]).view(1, 1, -1).expand(3, 1, -1))
    print("positions", position_ids[:, 0].tolist())
    print("mean |hidden| %.4f, moved by 1-D positions %.4f" % (hidden.abs().mean(), (hidden - flat).abs().max()))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=1)
    save_safetensors(os.path.join(OUT, "model.safetensors"), w)
    save_safetensors(os.path.join(OUT, "expected.safetensors"),
                     {"inputs_embeds": x, "position_ids": position_ids.float(), "hidden": hidden})


if __name__ == "__main__":
    main()
