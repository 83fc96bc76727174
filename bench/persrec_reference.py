#!/usr/bin/python3
"""PyTorch reference for bench_persrec: PerSRec's PersonalizedHSTU as the upstream code computes it.

Written from systems.md section 6.1 and the structure of PerSRec's `code/REC/model/IDNet/hstu.py`
(HLLM's IDNet HSTU: position table added to the item embedding, per layer LayerNorm -> one
projection to u, v, q, k -> SiLU; attention SiLU(q k^T) / n times a dense [B, 1, n, m] boolean mask,
then u * LayerNorm(A V) -> output Linear -> residual; no relative bias). Dense masks and einsums as
upstream runs them: the segment mask is a [B, 1, W, W] tensor, the cached predict concatenates the
K cached keys/values in front of the R recent ones (`compress_pretrain` + `predict2`).

    persrec_reference.py P R K d layers heads users rounds [dump_dir] [--threads 2] [--check-only]

With dump_dir (written by `bench_persrec ... dump_dir`), the reference first loads seqrec's weights
and histories and checks that its four outputs (cached predict, uncached segment-masked forward,
full history, recent-only) equal seqrec's to 1e-4; a mismatch exits non-zero before any timing.
One difference from upstream is kept on purpose for that check: the attention is divided by
seqrec's fixed N = window + 11 (HSTU's output_slots) in every call, where upstream divides by the
call's query length (P + K + R uncached, R cached). The LayerNorm that follows cancels a common
factor except through its epsilon, and the factor costs nothing, so the timing is unaffected.

Prints JSON lines with the same keys as bench_persrec (median per-user ms over `rounds` calls after
one warm-up; training in sequences/s).
"""
import argparse
import json
import struct
import sys
import time

import torch
import torch.nn.functional as F

OUTPUT_SLOTS = 11  # seqrec's HSTU default: N = window + output_slots


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    dtypes = {"F32": torch.float32, "I64": torch.int64, "F64": torch.float64, "I32": torch.int32}
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        lo, hi = meta["data_offsets"]
        data = bytearray(raw[8 + n + lo:8 + n + hi])  # a writable copy: torch.frombuffer shares it
        out[name] = torch.frombuffer(data, dtype=dtypes[meta["dtype"]]).reshape(meta["shape"])
    return out


class Hstu:
    """HLLM IDNet HSTU, parameters as plain tensors (seqrec's names when loaded)."""

    def __init__(self, num_items, width, d, layers, heads, k_tokens=0):
        self.d, self.h, self.dh = d, heads, d // heads
        self.n = width + OUTPUT_SLOTS  # attention divisor and position-table size
        g = torch.Generator().manual_seed(0)
        self.item = torch.randn(num_items + 1, d, generator=g) * 0.02
        self.pos = torch.randn(self.n, d, generator=g) * (1.0 / d) ** 0.5
        self.uvqk = [torch.randn(d, 4 * d, generator=g) * 0.02 for _ in range(layers)]  # [D, u|v|q|k]
        self.o_w = [torch.randn(d, d, generator=g) * (6.0 / (2 * d)) ** 0.5 for _ in range(layers)]
        self.o_b = [torch.zeros(d) for _ in range(layers)]
        self.tokens = torch.randn(1, k_tokens, d, generator=g) * 0.02 if k_tokens else None

    def load(self, state):
        self.item = state["item_embedding.weight"]
        self.pos = state["position_embedding.weight"]
        layers = len(self.uvqk)
        self.uvqk = [state[f"blocks.{i}.uvqk.weight"].t().contiguous() for i in range(layers)]
        self.o_w = [state[f"blocks.{i}.output.weight"] for i in range(layers)]
        self.o_b = [state[f"blocks.{i}.output.bias"] for i in range(layers)]
        if self.tokens is not None:
            self.tokens = state["user_tokens"]

    def params(self):
        ps = [self.item, self.pos] + self.uvqk + self.o_w + self.o_b
        return ps + ([self.tokens] if self.tokens is not None else [])

    def layer(self, i, x, mask, past_kv=None):
        """x [B, n, D]; mask [B, 1, n, m] bool (m = cached + n). Returns (x', (k, v))."""
        b, n, _ = x.shape
        normed = F.layer_norm(x, [self.d], eps=1e-6)
        u, v, q, k = torch.split(F.silu(normed @ self.uvqk[i]), self.d, dim=-1)
        if past_kv is not None:
            k = torch.cat([past_kv[0], k], dim=1)
            v = torch.cat([past_kv[1], v], dim=1)
        attn = torch.einsum("bnhd,bmhd->bhnm", q.view(b, n, self.h, self.dh), k.view(b, -1, self.h, self.dh))
        attn = F.silu(attn) / self.n * mask
        av = torch.einsum("bhnm,bmhd->bnhd", attn, v.reshape(b, -1, self.h, self.dh)).reshape(b, n, self.d)
        out = F.linear(u * F.layer_norm(av, [self.d], eps=1e-6), self.o_w[i], self.o_b[i]) + x
        return out, (k, v)

    def run(self, x, mask, past_kv=None, keep_kv=False):
        kvs = []
        for i in range(len(self.uvqk)):
            x, kv = self.layer(i, x, mask, past_kv[i] if past_kv is not None else None)
            if keep_kv:
                kvs.append(kv)
        return x, kvs

    def embed(self, items, first_position=0):
        positions = torch.arange(items.shape[1]) + first_position
        return self.item[items] + self.pos[positions]


def causal_mask(valid):
    """valid [B, n] bool -> [B, 1, n, n]: causal and non-padding (upstream get_attention_mask)."""
    n = valid.shape[1]
    return torch.tril(valid[:, None, None, :].expand(-1, -1, n, -1))


def l2(x):
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6)


class PersonalizedHstu(Hstu):
    def __init__(self, num_items, p, r, k, d, layers, heads):
        super().__init__(num_items, p + k + r, d, layers, heads, k_tokens=k)
        self.p, self.r, self.k = p, r, k

    def inserted(self, items):
        """[old items, tokens, recent items] embeddings and the segment mask (one insertion at P)."""
        b = items.shape[0]
        e = self.item[items]
        x = torch.cat([e[:, :self.p], self.tokens.expand(b, -1, -1), e[:, self.p:]], dim=1)
        x = x + self.pos[torch.arange(x.shape[1])]
        valid = torch.cat([items[:, :self.p] != 0, torch.ones(b, self.k, dtype=torch.bool), items[:, self.p:] != 0], 1)
        mask = causal_mask(valid).clone()
        mask[:, :, self.p + self.k:, 0:self.p] = False  # the recent segment cannot see the old items
        return x, mask

    def uncached(self, items):
        x, mask = self.inserted(items)
        return self.run(x, mask)[0]

    def compress(self, items):
        old = items[:, :self.p]
        b = old.shape[0]
        x = torch.cat([self.item[old], self.tokens.expand(b, -1, -1)], 1) + self.pos[torch.arange(self.p + self.k)]
        valid = torch.cat([old != 0, torch.ones(b, self.k, dtype=torch.bool)], 1)
        _, kvs = self.run(x, causal_mask(valid), keep_kv=True)
        return [(k[:, self.p:], v[:, self.p:]) for k, v in kvs]

    def predict(self, items, cache):
        recent = items[:, self.p:]
        b = recent.shape[0]
        x = self.embed(recent, first_position=self.p + self.k)
        mask = torch.cat([torch.ones(b, 1, self.r, self.k, dtype=torch.bool), causal_mask(recent != 0)], dim=-1)
        return self.run(x, mask, past_kv=cache)[0]


def median_ms(rounds, fn):
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description="PyTorch reference for bench_persrec")
    for name in ("P", "R", "K", "d", "layers", "heads", "users", "rounds"):
        parser.add_argument(name, type=int)
    parser.add_argument("dump_dir", nargs="?")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--check-only", action="store_true", help="stop after the comparison with dump_dir")
    a = parser.parse_args()
    p, r, k, d, layers, heads, users, rounds = a.P, a.R, a.K, a.d, a.layers, a.heads, a.users, a.rounds
    dump = a.dump_dir
    torch.set_num_threads(a.threads)
    num_items = 50000
    persrec = PersonalizedHstu(num_items, p, r, k, d, layers, heads)
    full = Hstu(num_items, p + r, d, layers, heads)
    recent = Hstu(num_items, r, d, layers, heads)
    items = torch.randint(1, num_items + 1, (users, p + r))
    last = lambda x: l2(x[:, -1])
    with torch.no_grad():
        if dump:
            persrec.load(load_safetensors(f"{dump}/persrec.safetensors"))
            full.load(load_safetensors(f"{dump}/full.safetensors"))
            recent.load(load_safetensors(f"{dump}/recent.safetensors"))
            io = load_safetensors(f"{dump}/io.safetensors")
            items = io["items"]
            ours = {
                "cached_predict": last(persrec.predict(items, persrec.compress(items))),
                "uncached_segment_mask": last(persrec.uncached(items)),
                "full_history": last(full.run(full.embed(items), causal_mask(items != 0))[0]),
                "recent_only": last(recent.run(recent.embed(items[:, p:]), causal_mask(items[:, p:] != 0))[0]),
            }
            diffs = {name: float((ours[name] - io[name]).abs().max()) for name in ours}
            print(json.dumps({"what": "reference_vs_seqrec_max_abs_diff", **diffs}), flush=True)
            if max(diffs.values()) > 1e-4:
                print("the reference does not compute seqrec's model: no timing", file=sys.stderr)
                sys.exit(1)
            if a.check_only:
                return
        cache = persrec.compress(items)
        cached = median_ms(rounds, lambda: persrec.predict(items, cache)) / users
        uncached = median_ms(rounds, lambda: persrec.uncached(items)) / users
        full_ms = median_ms(rounds, lambda: full.run(full.embed(items), causal_mask(items != 0))) / users
        recent_items = items[:, p:].contiguous()
        recent_ms = median_ms(rounds, lambda: recent.run(recent.embed(recent_items), causal_mask(recent_items != 0))) / users
        compress_ms = median_ms(rounds, lambda: persrec.compress(items)) / users
        cache_bytes = sum((kk.numel() + vv.numel()) * kk.element_size() for kk, vv in cache) // users
    print(json.dumps({"what": "inference_ms_per_user", "P": p, "R": r, "K": k, "d": d, "layers": layers, "users": users,
                      "cached_predict": round(cached, 3), "uncached_segment_mask": round(uncached, 3),
                      "full_history": round(full_ms, 3), "recent_only": round(recent_ms, 3),
                      "compress": round(compress_ms, 3), "cache_bytes_per_user": cache_bytes,
                      "full_over_cached": round(full_ms / cached, 2)}), flush=True)
    # Training: forward + backward of the summed normalised outputs, dropout 0 as in bench_persrec.
    # The dense [B, H, W, W] scores of 16 layers are kept for backward: one sequence per step (as
    # bench_persrec's dense-mask row) keeps that in memory.
    for t in persrec.params() + full.params():
        t.requires_grad_(True)
    one = items[:1]
    plain_width = p + k + r
    plain = Hstu(num_items, plain_width, d, layers, heads)
    for t in plain.params():
        t.requires_grad_(True)
    plain_items = torch.randint(1, num_items + 1, (1, plain_width))

    def seg_step():
        l2(persrec.uncached(one)).sum().backward()

    def causal_step():
        l2(plain.run(plain.embed(plain_items), causal_mask(plain_items != 0))[0]).sum().backward()

    train_rounds = max(1, rounds // 2)
    seg = 1e3 / median_ms(train_rounds, seg_step)
    causal = 1e3 / median_ms(train_rounds, causal_step)
    print(json.dumps({"what": "training_seq_per_s", "segment_mask_dense": round(seg, 2), "plain_causal_dense": round(causal, 2),
                      "segment_over_causal": round(seg / causal, 3)}), flush=True)


if __name__ == "__main__":
    main()
