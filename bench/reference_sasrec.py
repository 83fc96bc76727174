#!/usr/bin/env python3
"""PyTorch reference for the training-throughput benchmark: SASRec as in the widely used PyTorch
port of the SASRec paper code (pmixer/SASRec.pytorch): item emb * sqrt(d) + learned positions,
dropout, blocks of LN(Q) -> nn.MultiheadAttention(Q, x, x, causal) + Q -> LN -> Conv1d FFN (ReLU),
final LN, BCE with one negative per position not in the user's items, Adam(lr, betas 0.9/0.98).
Sampling as in its WarpSampler: each batch draws random users; seq = last L of train[:-1].

Usage: reference_sasrec.py DATA.txt [--steps 30] [--warmup 3] [--threads 2]
Prints one JSON line: seq/s and non-padding positions/s (same fields as bench_train).
"""
import argparse, json, random, time
from collections import defaultdict

import numpy as np
import torch


class PointWiseFeedForward(torch.nn.Module):
    def __init__(self, d, p):
        super().__init__()
        self.conv1 = torch.nn.Conv1d(d, d, kernel_size=1)
        self.dropout1 = torch.nn.Dropout(p)
        self.relu = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv1d(d, d, kernel_size=1)
        self.dropout2 = torch.nn.Dropout(p)

    def forward(self, x):
        y = self.dropout2(self.conv2(self.relu(self.dropout1(self.conv1(x.transpose(-1, -2))))))
        return y.transpose(-1, -2) + x


class SASRec(torch.nn.Module):
    def __init__(self, item_num, d=50, blocks=2, heads=1, maxlen=200, p=0.2):
        super().__init__()
        self.item_emb = torch.nn.Embedding(item_num + 1, d, padding_idx=0)
        self.pos_emb = torch.nn.Embedding(maxlen, d)
        self.emb_dropout = torch.nn.Dropout(p)
        self.attn_ln = torch.nn.ModuleList([torch.nn.LayerNorm(d, eps=1e-8) for _ in range(blocks)])
        self.attn = torch.nn.ModuleList([torch.nn.MultiheadAttention(d, heads, p) for _ in range(blocks)])
        self.ffn_ln = torch.nn.ModuleList([torch.nn.LayerNorm(d, eps=1e-8) for _ in range(blocks)])
        self.ffn = torch.nn.ModuleList([PointWiseFeedForward(d, p) for _ in range(blocks)])
        self.last_ln = torch.nn.LayerNorm(d, eps=1e-8)
        self.d = d

    def log2feats(self, seqs):
        x = self.item_emb(seqs) * self.d ** 0.5
        x = x + self.pos_emb(torch.arange(seqs.shape[1]).unsqueeze(0))
        x = self.emb_dropout(x)
        keep = (seqs != 0).unsqueeze(-1)
        x = x * keep
        t = x.shape[1]
        causal = ~torch.tril(torch.ones((t, t), dtype=torch.bool))
        for i in range(len(self.attn)):
            x = x.transpose(0, 1)
            q = self.attn_ln[i](x)
            out, _ = self.attn[i](q, x, x, attn_mask=causal)
            x = (q + out).transpose(0, 1)
            x = self.ffn[i](self.ffn_ln[i](x))
            x = x * keep
        return self.last_ln(x)

    def forward(self, seqs, pos, neg):
        h = self.log2feats(seqs)
        return (h * self.item_emb(pos)).sum(-1), (h * self.item_emb(neg)).sum(-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--maxlen", type=int, default=200)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    seqs = defaultdict(list)
    item_num = 0
    with open(a.data) as f:
        for line in f:
            u, i = map(int, line.split())
            seqs[u].append(i)
            item_num = max(item_num, i)
    train = {u: s[:-2] if len(s) >= 3 else s for u, s in seqs.items()}
    users = [u for u, s in train.items() if len(s) > 1]
    rng = random.Random(0)

    def sample():
        u = rng.choice(users)
        s = train[u]
        seq = np.zeros(a.maxlen, dtype=np.int64); pos = np.zeros_like(seq); neg = np.zeros_like(seq)
        nxt, idx, ts = s[-1], a.maxlen - 1, set(s)
        for i in reversed(s[:-1]):
            seq[idx], pos[idx] = i, nxt
            t = rng.randint(1, item_num)
            while t in ts:
                t = rng.randint(1, item_num)
            neg[idx] = t
            nxt, idx = i, idx - 1
            if idx == -1:
                break
        return seq, pos, neg

    model = SASRec(item_num, maxlen=a.maxlen)
    for p in model.parameters():
        try:
            torch.nn.init.xavier_normal_(p.data)
        except ValueError:
            pass
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    bce = torch.nn.BCEWithLogitsLoss()
    model.train()
    seconds, seqs_done, positions = 0.0, 0, 0
    for step in range(a.steps + a.warmup):
        batch = [sample() for _ in range(a.batch)]
        t0 = time.perf_counter()
        s, p, n = (torch.from_numpy(np.stack(x)) for x in zip(*batch))
        pl, nl = model(s, p, n)
        m = p != 0
        loss = bce(pl[m], torch.ones_like(pl[m])) + bce(nl[m], torch.zeros_like(nl[m]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= a.warmup:
            seconds += time.perf_counter() - t0  # sampling excluded, as bench_train excludes the prefetched loader
            seqs_done += a.batch
            positions += int(m.sum())
    print(json.dumps({"impl": "pytorch-reference", "torch": torch.__version__, "steps": a.steps,
                      "seq_per_s": round(seqs_done / seconds, 1),
                      "positions_per_s": round(positions / seconds), "threads": a.threads}))


if __name__ == "__main__":
    main()
