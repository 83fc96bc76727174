#!/usr/bin/python3
"""Reference outputs for seqrec's CLIP / SigLIP vision towers (src/seqrec/llm/vision_tower.cc).

A short PyTorch transcription of the vision side of transformers' modeling_clip.py
(CLIPVisionEmbeddings, CLIPEncoderLayer, CLIPVisionTransformer) and modeling_siglip.py
(SiglipVisionEmbeddings, SiglipEncoderLayer, SiglipVisionTransformer without the pooling head),
run on random weights. Writes tiny HF-style folders under tests/fixtures/vision/{clip,siglip}:
config.json, model.safetensors (with a few foreign tensors a real checkpoint carries) and
expected.safetensors (pixels [2, 3, 8, 8] and last_hidden_state). Needs only Debian's
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


if __name__ == "__main__":
    main()
