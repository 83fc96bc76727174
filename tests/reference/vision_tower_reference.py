#!/usr/bin/python3
"""Reference outputs for seqrec's CLIP / SigLIP / Qwen2-VL vision towers (src/seqrec/llm/vision_tower.cc).

A short PyTorch transcription of the vision side of transformers' modeling_clip.py
(CLIPVisionEmbeddings, CLIPEncoderLayer, CLIPVisionTransformer) and modeling_siglip.py
(SiglipVisionEmbeddings, SiglipEncoderLayer, SiglipVisionTransformer without the pooling head),
and modeling_qwen2_vl.py (PatchEmbed, the 2-D rotary positions, VisionAttention per image,
Qwen2VLVisionBlock, PatchMerger) with image_processing_qwen2_vl.py's patch flattening, run on
random weights. Writes tiny HF-style folders under tests/fixtures/vision/{clip,siglip,qwen2_vl}:
config.json, model.safetensors (with a few foreign tensors a real checkpoint carries) and
expected.safetensors (pixels [2, 3, 8, 8] and last_hidden_state; Qwen2-VL: pixels [2, 3, 56, 84]
and merged_tokens). Needs only Debian's
python3-torch (no transformers, no safetensors package). Run from the repository root:
    /usr/bin/python3 tests/reference/vision_tower_reference.py
"""
import json
import math
import os
import struct

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "vision")


def save_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().to(torch.float32)
        data = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)


def act(x, name):
    if name == "quick_gelu":
        return x * torch.sigmoid(1.702 * x)
    if name == "gelu_pytorch_tanh":
        return torch.nn.functional.gelu(x, approximate="tanh")
    return torch.nn.functional.gelu(x)


def ln(x, w, p, name, eps):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w[p + name + ".weight"], w[p + name + ".bias"], eps)


def lin(x, w, name):
    return torch.nn.functional.linear(x, w[name + ".weight"], w[name + ".bias"])


def forward(w, c, pixels, siglip):
    d, h = c["hidden_size"], c["num_attention_heads"]
    hd = d // h
    eps = c["layer_norm_eps"]
    pe = "vision_model.embeddings."
    # CLIPVisionEmbeddings / SiglipVisionEmbeddings
    x = torch.nn.functional.conv2d(pixels, w[pe + "patch_embedding.weight"], w.get(pe + "patch_embedding.bias"),
                                   stride=c["patch_size"])
    x = x.flatten(2).transpose(1, 2)
    if not siglip:
        cls = w[pe + "class_embedding"].expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
    x = x + w[pe + "position_embedding.weight"].unsqueeze(0)
    if not siglip:
        x = ln(x, w, "vision_model.", "pre_layrnorm", eps)
    for i in range(c["num_hidden_layers"]):
        p = "vision_model.encoder.layers.%d." % i
        r = x
        a = ln(x, w, p, "layer_norm1", eps)
        n, t, _ = a.shape
        q = lin(a, w, p + "self_attn.q_proj").view(n, t, h, hd).transpose(1, 2)
        k = lin(a, w, p + "self_attn.k_proj").view(n, t, h, hd).transpose(1, 2)
        v = lin(a, w, p + "self_attn.v_proj").view(n, t, h, hd).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) * hd ** -0.5, dim=-1)
        o = (att @ v).transpose(1, 2).reshape(n, t, d)
        x = r + lin(o, w, p + "self_attn.out_proj")
        r = x
        m = lin(act(lin(ln(x, w, p, "layer_norm2", eps), w, p + "mlp.fc1"), c["hidden_act"]), w, p + "mlp.fc2")
        x = r + m
    if siglip:
        x = ln(x, w, "vision_model.", "post_layernorm", eps)
    return x


def weights(c, siglip, gen):
    d, f = c["hidden_size"], c["intermediate_size"]
    np_ = (c["image_size"] // c["patch_size"]) ** 2
    r = lambda *s: torch.randn(*s, generator=gen) * 0.3
    w = {}
    pe = "vision_model.embeddings."
    w[pe + "patch_embedding.weight"] = r(d, c["num_channels"], c["patch_size"], c["patch_size"])
    if siglip:
        w[pe + "patch_embedding.bias"] = r(d)
    else:
        w[pe + "class_embedding"] = r(d)
        w["vision_model.pre_layrnorm.weight"] = 1 + r(d)
        w["vision_model.pre_layrnorm.bias"] = r(d)
    w[pe + "position_embedding.weight"] = r(np_ + (0 if siglip else 1), d)
    for i in range(c["num_hidden_layers"]):
        p = "vision_model.encoder.layers.%d." % i
        for n in ["layer_norm1", "layer_norm2"]:
            w[p + n + ".weight"] = 1 + r(d)
            w[p + n + ".bias"] = r(d)
        for n in ["q_proj", "k_proj", "v_proj", "out_proj"]:
            w[p + "self_attn." + n + ".weight"] = r(d, d)
            w[p + "self_attn." + n + ".bias"] = r(d)
        w[p + "mlp.fc1.weight"] = r(f, d)
        w[p + "mlp.fc1.bias"] = r(f)
        w[p + "mlp.fc2.weight"] = r(d, f)
        w[p + "mlp.fc2.bias"] = r(d)
    w["vision_model.post_layernorm.weight"] = 1 + r(d)
    w["vision_model.post_layernorm.bias"] = r(d)
    return w


# --- Qwen2-VL (modeling_qwen2_vl.py: PatchEmbed, VisionRotaryEmbedding, rot_pos_emb, VisionAttention
# with cu_seqlens, Qwen2VLVisionBlock, PatchMerger; image_processing_qwen2_vl.py's patch flattening) ---

def qwen2_flatten(image, c):
    """One normalised picture [C, H, W] -> (patches [T, C * tps * p * p], grid (t, h, w)) as the
    Qwen2-VL image processor flattens it (a still picture repeated to temporal_patch_size frames)."""
    p, m, tps = c["patch_size"], c["spatial_merge_size"], c["temporal_patch_size"]
    patches = image.unsqueeze(0).repeat(tps, 1, 1, 1)  # [tps, C, H, W]
    ch, gh, gw = image.shape[0], image.shape[1] // p, image.shape[2] // p
    gt = patches.shape[0] // tps
    patches = patches.reshape(gt, tps, ch, gh // m, m, p, gw // m, m, p)
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return patches.reshape(gt * gh * gw, ch * tps * p * p), (gt, gh, gw)


def qwen2_rot_pos_emb(grids, c):
    m = c["spatial_merge_size"]
    head_dim = c["embed_dim"] // c["num_heads"]
    dim = head_dim // 2
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    pos_ids = []
    for t, h, w in grids:
        hpos = torch.arange(h).unsqueeze(1).expand(-1, w).reshape(h // m, m, w // m, m).permute(0, 2, 1, 3).flatten()
        wpos = torch.arange(w).unsqueeze(0).expand(h, -1).reshape(h // m, m, w // m, m).permute(0, 2, 1, 3).flatten()
        pos_ids.append(torch.stack([hpos, wpos], dim=-1).repeat(t, 1))
    pos_ids = torch.cat(pos_ids, dim=0)
    max_grid = max(max(h, w) for _, h, w in grids)
    full = torch.outer(torch.arange(max_grid, dtype=torch.float), inv_freq)
    return full[pos_ids].flatten(1)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def qwen2_forward(w, c, pixels):
    ch, tps, p = c["in_chans"], c["temporal_patch_size"], c["patch_size"]
    d, nh = c["embed_dim"], c["num_heads"]
    hd = d // nh
    flat, grids = [], []
    for image in pixels:
        f, g = qwen2_flatten(image, c)
        flat.append(f)
        grids.append(g)
    x = torch.cat(flat, 0)
    # PatchEmbed
    x = x.view(-1, ch, tps, p, p)
    x = torch.nn.functional.conv3d(x, w["visual.patch_embed.proj.weight"], stride=(tps, p, p)).view(-1, d)
    rot = qwen2_rot_pos_emb(grids, c)
    emb = torch.cat((rot, rot), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    lengths = [g[1] * g[2] for g in grids for _ in range(g[0])]
    for i in range(c["depth"]):
        b = "visual.blocks.%d." % i
        r = x
        a = torch.nn.functional.layer_norm(x, (d,), w[b + "norm1.weight"], w[b + "norm1.bias"], 1e-6)
        s = a.shape[0]
        q, k, v = lin(a, w, b + "attn.qkv").reshape(s, 3, nh, -1).permute(1, 0, 2, 3).unbind(0)
        q = q * cos.unsqueeze(-2) + rotate_half(q) * sin.unsqueeze(-2)
        k = k * cos.unsqueeze(-2) + rotate_half(k) * sin.unsqueeze(-2)
        q, k, v = (t.transpose(0, 1) for t in (q, k, v))  # [heads, s, hd]
        outs = []
        for qq, kk, vv in zip(q.split(lengths, 1), k.split(lengths, 1), v.split(lengths, 1)):
            att = torch.softmax(qq @ kk.transpose(-1, -2) * hd ** -0.5, dim=-1)
            outs.append((att @ vv).transpose(0, 1))
        o = torch.cat(outs, 0).reshape(s, -1)
        x = r + lin(o, w, b + "attn.proj")
        r = x
        a = torch.nn.functional.layer_norm(x, (d,), w[b + "norm2.weight"], w[b + "norm2.bias"], 1e-6)
        x = r + lin(act(lin(a, w, b + "mlp.fc1"), c["hidden_act"]), w, b + "mlp.fc2")
    m2 = c["spatial_merge_size"] ** 2
    x = torch.nn.functional.layer_norm(x, (d,), w["visual.merger.ln_q.weight"], w["visual.merger.ln_q.bias"], 1e-6)
    x = x.view(-1, d * m2)
    x = lin(torch.nn.functional.gelu(lin(x, w, "visual.merger.mlp.0")), w, "visual.merger.mlp.2")
    return x.view(len(pixels), -1, c["hidden_size"])


def qwen2_weights(c, gen):
    d, ch, tps, p = c["embed_dim"], c["in_chans"], c["temporal_patch_size"], c["patch_size"]
    f = int(d * c["mlp_ratio"])
    wide = d * c["spatial_merge_size"] ** 2
    r = lambda *s: torch.randn(*s, generator=gen) * 0.3
    w = {"visual.patch_embed.proj.weight": r(d, ch, tps, p, p) * 0.2}
    for i in range(c["depth"]):
        b = "visual.blocks.%d." % i
        for n in ["norm1", "norm2"]:
            w[b + n + ".weight"] = 1 + r(d)
            w[b + n + ".bias"] = r(d)
        w[b + "attn.qkv.weight"] = r(3 * d, d)
        w[b + "attn.qkv.bias"] = r(3 * d)
        w[b + "attn.proj.weight"] = r(d, d)
        w[b + "attn.proj.bias"] = r(d)
        w[b + "mlp.fc1.weight"] = r(f, d)
        w[b + "mlp.fc1.bias"] = r(f)
        w[b + "mlp.fc2.weight"] = r(d, f)
        w[b + "mlp.fc2.bias"] = r(d)
    w["visual.merger.ln_q.weight"] = 1 + r(d)
    w["visual.merger.ln_q.bias"] = r(d)
    w["visual.merger.mlp.0.weight"] = r(wide, wide)
    w["visual.merger.mlp.0.bias"] = r(wide)
    w["visual.merger.mlp.2.weight"] = r(c["hidden_size"], wide)
    w["visual.merger.mlp.2.bias"] = r(c["hidden_size"])
    return w


def write_qwen2_vl():
    # embed_dim 16 with 2 heads: head size 8, so each half of a head turns 2 channels by row and 2 by
    # column. 56 x 84 pictures: 4 x 6 patches of 14, 2 x 3 merged tokens.
    c = dict(depth=2, embed_dim=16, hidden_size=12, mlp_ratio=2, num_heads=2, in_chans=3, patch_size=14,
             spatial_merge_size=2, temporal_patch_size=2, hidden_act="quick_gelu")
    gen = torch.Generator().manual_seed(2468)
    w = qwen2_weights(c, gen)
    pixels = torch.randn(2, 3, 56, 84, generator=gen)
    out = qwen2_forward(w, c, pixels)
    folder = os.path.join(ROOT, "qwen2_vl")
    os.makedirs(folder, exist_ok=True)
    stored = dict(w)  # and a sliver of the language model, which the tower does not load
    stored["model.embed_tokens.weight"] = torch.randn(10, 12, generator=gen)
    stored["lm_head.weight"] = torch.randn(10, 12, generator=gen)
    cfg = {"model_type": "qwen2_vl", "hidden_size": 12, "vision_config": c}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    save_safetensors(os.path.join(folder, "model.safetensors"), stored)
    save_safetensors(os.path.join(folder, "expected.safetensors"), {"pixels": pixels, "merged_tokens": out})
    print("qwen2_vl", tuple(out.shape), float(out.abs().mean()))


def main():
    base = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4, num_channels=3,
                image_size=8, patch_size=4)
    for name, siglip in [("clip", False), ("siglip", True)]:
        gen = torch.Generator().manual_seed(1234 if siglip else 4321)
        c = dict(base, hidden_act="gelu_pytorch_tanh" if siglip else "quick_gelu",
                 layer_norm_eps=1e-6 if siglip else 1e-5)
        w = weights(c, siglip, gen)
        pixels = torch.randn(2, 3, 8, 8, generator=gen)
        out = forward(w, c, pixels, siglip)
        folder = os.path.join(ROOT, name)
        os.makedirs(folder, exist_ok=True)
        stored = dict(w)
        if siglip:  # a SigLIP vision model with its pooling head, which the tower does not load
            stored["vision_model.head.probe"] = torch.randn(1, 1, 16, generator=gen)
            cfg = dict(c, model_type="siglip_vision_model")
        else:  # a CLIP dual encoder: the text side and projections are ignored
            stored["text_model.embeddings.token_embedding.weight"] = torch.randn(10, 16, generator=gen)
            stored["visual_projection.weight"] = torch.randn(8, 16, generator=gen)
            stored["logit_scale"] = torch.tensor(math.log(1 / 0.07))
            cfg = {"model_type": "clip", "vision_config": dict(c, model_type="clip_vision_model"),
                   "text_config": {"hidden_size": 16}}
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        save_safetensors(os.path.join(folder, "model.safetensors"), stored)
        save_safetensors(os.path.join(folder, "expected.safetensors"), {"pixels": pixels, "last_hidden_state": out})
        print(name, tuple(out.shape), float(out.abs().mean()))
    write_qwen2_vl()


if __name__ == "__main__":
    main()
