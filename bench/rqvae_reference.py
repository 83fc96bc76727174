#!/usr/bin/python3
"""An independent PyTorch RQ-VAE, written from systems.md §3.2 (LC-Rec's index/), to check what
`seqrec semantic-ids` reports on the same item embeddings: the per-level code usage and the
collision rate during training (docs/benchmarks.md, "LC-Rec on Amazon Beauty").

Same hyper-parameters as configs/lcrec/beauty_stories260k.yaml's semantic_id section: encoder
d -> [the upstream widths 2048, 1024, 512, 256, 128, 64 that lie strictly between 32 and d, as
seqrec's default hidden_dims; none for d = 64] -> 32 (ReLU between, xavier-normal weights, zero
biases), mirrored decoder (--hidden upstream: all six widths); 4 levels x 256 codes x 32; each codebook k-means-initialised (k-means++
seeding, 100 Lloyd iterations) on the first training batch's residuals; straight-through estimator
per level, residuals without gradient; loss = MSE(recon) + 1.0 * mean_l [MSE(q, sg(r)) + 0.25
MSE(sg(q), r)]; Sinkhorn-Knopp (epsilon 0.003, 50 iterations, distances centred to [-1, 1]) on the
last level in training; AdamW lr 1e-3, wd 1e-4, linear schedule after 50 warm-up epochs, batch
1,024, gradient norm clipped at --clip (1.0 as seqrec's config; 0 = off). Every --eval-every epochs:
argmin codes of all items (no Sinkhorn), collision rate = 1 - distinct tuples / items, and codes in
use per level. One JSON line per evaluation on stdout.

Usage: rqvae_reference.py EMBEDDINGS.safetensors [--epochs 300] [--eval-every 25] [--seed 2024]
       [--clip 1.0] [--threads 1] [--stop-after N] [--hidden auto|upstream]
"""
import argparse
import json
import math
import struct

import numpy as np
import torch
import torch.nn.functional as F


def read_safetensors_matrix(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    (name, meta), = [(k, v) for k, v in header.items() if k != "__metadata__"]
    assert meta["dtype"] == "F32", meta
    begin, end = meta["data_offsets"]
    return torch.from_numpy(np.frombuffer(data[begin:end], dtype=np.float32).reshape(meta["shape"]).copy())


def mlp(dims):
    layers = []
    for i in range(len(dims) - 1):
        linear = torch.nn.Linear(dims[i], dims[i + 1])
        torch.nn.init.xavier_normal_(linear.weight)
        torch.nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i + 2 < len(dims):
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def kmeans(x, k, iters, generator):
    """k-means++ seeding, then Lloyd iterations; empty clusters keep their centre."""
    n = x.shape[0]
    centres = [x[torch.randint(n, (1,), generator=generator)].squeeze(0)]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full((n,), 1.0 / n)
        i = torch.multinomial(probs, 1, generator=generator).item()
        centres.append(x[i])
        d2 = torch.minimum(d2, ((x - x[i]) ** 2).sum(1))
    c = torch.stack(centres)
    for _ in range(iters):
        assign = torch.cdist(x, c).argmin(1)
        new = c.clone()
        for j in range(k):
            members = x[assign == j]
            if len(members) > 0:
                new[j] = members.mean(0)
        if torch.allclose(new, c):
            break
        c = new
    return c


def sinkhorn_codes(d, epsilon, iters):
    """Sinkhorn-Knopp over a batch's distances d [B, K]: about uniform code use; argmax of Q."""
    mid = (d.max() + d.min()) / 2
    amp = (d.max() - mid).clamp_min(1e-12)
    q = torch.exp(-((d - mid) / amp).double() / epsilon)
    b, k = q.shape
    q /= q.sum()
    for _ in range(iters):
        q /= q.sum(1, keepdim=True) * b
        q /= q.sum(0, keepdim=True) * k
    return (q * b).argmax(1)


class RqVae(torch.nn.Module):
    def __init__(self, d, hidden, code_dim, levels, codes, sk_epsilons, sk_iters, kmeans_iters, seed):
        super().__init__()
        self.encoder = mlp([d] + hidden + [code_dim])
        self.decoder = mlp([code_dim] + hidden[::-1] + [d])
        self.codebooks = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.empty(codes, code_dim).uniform_(-1 / codes, 1 / codes)) for _ in range(levels)])
        self.sk_epsilons, self.sk_iters, self.kmeans_iters = sk_epsilons, sk_iters, kmeans_iters
        self.initialised = False
        self.generator = torch.Generator().manual_seed(seed)

    def quantise(self, z, use_sinkhorn):
        residual, zq, commit, codes = z, torch.zeros_like(z), 0.0, []
        for level, book in enumerate(self.codebooks):
            if not self.initialised:
                with torch.no_grad():
                    book.copy_(kmeans(residual.detach(), book.shape[0], self.kmeans_iters, self.generator))
            d = torch.cdist(residual.detach(), book.detach()) ** 2
            if use_sinkhorn and self.sk_epsilons[level] > 0:
                c = sinkhorn_codes(d, self.sk_epsilons[level], self.sk_iters)
            else:
                c = d.argmin(1)
            q = book[c]
            commit = commit + F.mse_loss(q, residual.detach()) + 0.25 * F.mse_loss(q.detach(), residual)
            q_ste = residual + (q - residual).detach()
            residual = residual - q_ste
            zq = zq + q_ste
            codes.append(c)
        self.initialised = True
        return zq, commit / len(self.codebooks), torch.stack(codes, 1)

    def forward(self, x, use_sinkhorn):
        zq, commit, codes = self.quantise(self.encoder(x), use_sinkhorn)
        return F.mse_loss(self.decoder(zq), x), commit, codes


def main():
    p = argparse.ArgumentParser()
    p.add_argument("embeddings")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--hidden", choices=["auto", "upstream"], default="auto")
    p.add_argument("--stop-after", type=int, default=0, help="stop after this many epochs (the schedule keeps --epochs)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x = read_safetensors_matrix(a.embeddings)
    n, d = x.shape
    hidden = [2048, 1024, 512, 256, 128, 64]
    if a.hidden == "auto":
        hidden = [h for h in hidden if 32 < h < d]
    model = RqVae(d, hidden, 32, 4, 256, [0.0, 0.0, 0.0, 0.003], 50, 100, a.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    batch = 1024
    steps_per_epoch = math.ceil(n / batch)
    total, warmup = a.epochs * steps_per_epoch, 50 * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: s / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    for epoch in range(1, a.epochs + 1):
        model.train()
        losses = []
        for idx in torch.randperm(n).split(batch):
            recon, commit, _ = model(x[idx], use_sinkhorn=True)
            loss = recon + 1.0 * commit
            opt.zero_grad()
            loss.backward()
            if a.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
            opt.step()
            sched.step()
            losses.append((loss.item(), recon.item()))
        if epoch % a.eval_every == 0 or epoch == a.epochs:
            model.eval()
            with torch.no_grad():
                _, _, codes = model(x, use_sinkhorn=False)
            distinct = len(set(map(tuple, codes.tolist())))
            print(json.dumps({"epoch": epoch, "loss": float(np.mean([l for l, _ in losses])),
                              "recon": float(np.mean([r for _, r in losses])),
                              "collision_rate": 1 - distinct / n,
                              "used_codes": [len(set(codes[:, l].tolist())) for l in range(codes.shape[1])],
                              "lr": sched.get_last_lr()[0]}), flush=True)
        if epoch == a.stop_after:
            break


if __name__ == "__main__":
    main()
