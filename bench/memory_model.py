#!/usr/bin/env python3
"""Memory model of data-parallel training in seqrec (docs/distributed.md, "Memory model").

Bytes per rank for the parameters, gradients, gradient buckets, AdamW moments and activations of one
LLaMA tower trained in fp32 (seqrec's master precision), under DDP and ZeRO-1/2/3, with and without
activation checkpointing. `--check PARAMS` prints the prediction for bench/zero_memory.sh's ~86M-parameter
LLaMA-ID at world size 2 (the numbers that run measures).

Usage: bench/memory_model.py [--check PARAMS]
"""
import sys

GiB = 2.0 ** 30
BUCKET = 25 * 2 ** 20  # GradientReducerOptions::bucket_bytes: gradients in flight before their send completes


def llama_params(d, layers, ffn, heads, kv_heads, vocab, tied=False):
    kv = d * kv_heads // heads
    block = d * (d + 2 * kv + d) + 3 * d * ffn + 2 * d  # q, k, v, o; gate, up, down; two RMSNorm weights
    return layers * block + vocab * d * (1 if tied else 2) + d


def states(psi, world, stage, psi_blocks=0, prefetch=True):
    """(params, grads, buckets, adam) bytes per rank, fp32 master weights. psi_blocks: the
    parameters of the block stack (ZeRO-3 reduces their gradients without buckets); prefetch:
    ZeRO-3's train.zero_prefetch (one more block whole and one more block's gradients in flight)."""
    p = g = b = 4 * psi
    adam = 8 * psi
    if stage >= 1:
        adam /= world
    if stage >= 2:
        g = 4 * psi / world + 2 * BUCKET  # own share + gradients waiting for their bucket's reduce
        b = 4 * psi / world
    if stage >= 3:
        # own share + the gathered blocks: in backward the block just left, the running one and,
        # with prefetch, the next one arriving
        p = 4 * psi / world + (3 if prefetch else 2) * 4 * psi_block_max
        # the running block's gradients, and with prefetch the last block's in their reduction's buffer
        g += (2 if prefetch else 1) * 4 * psi_block_max
        b = 4 * (psi - psi_blocks) / world          # only parameters outside the blocks go through buckets
    return p, g, b, adam


def activations(d, layers, ffn, heads, kv_heads, tokens, ctx, checkpoint, bytes_per=4):
    """Saved activations of the decoder blocks for `tokens` tokens in sequences of `ctx` tokens.
    Per token and layer without checkpointing: the block input and the inputs of the two RMSNorms,
    the normed inputs of the projections, q/k/v after RoPE, the attention output, the four SwiGLU
    tensors (gate, up, silu(gate), their product) and the softmax probabilities of the unfused CPU
    attention (heads x ctx); with checkpointing only each block's input stays, plus one block's
    full set during its recomputation."""
    kv = d * kv_heads // heads
    per_token_layer = 7 * d + 2 * kv + 4 * ffn + heads * ctx
    full = tokens * per_token_layer * bytes_per
    if not checkpoint:
        return layers * full
    return layers * tokens * d * bytes_per + full


TOWERS = {
    # name: (d, layers, ffn, heads, kv_heads, vocab)
    "1B (TinyLlama-1.1B, HLLM-1B's towers)": (2048, 22, 5632, 32, 4, 32000),
    "7B (LLaMA-2-7B, LC-Rec / HLLM-7B)": (4096, 32, 11008, 32, 32, 32000),
}
# Activations per rank and micro-batch: HLLM's item LLM, 16 users x (S=10 + 1) items x 256 tokens.
TOKENS, CTX = 16 * 11 * 256, 256


def table():
    global psi_block_max
    out = []
    for name, (d, layers, ffn, heads, kv_heads, vocab) in TOWERS.items():
        psi = llama_params(d, layers, ffn, heads, kv_heads, vocab)
        kv = d * kv_heads // heads
        psi_block_max = d * (2 * d + 2 * kv) + 3 * d * ffn
        out.append(f"\n{name}: {psi / 1e9:.2f}B parameters; activations for {TOKENS} tokens "
                   f"(sequences of {CTX}) per micro-batch\n")
        act = [activations(d, layers, ffn, heads, kv_heads, TOKENS, CTX, c) for c in (False, True)]
        out.append(f"activations per rank: {act[0] / GiB:.1f} GiB without checkpointing, "
                   f"{act[1] / GiB:.1f} GiB with\n")
        out.append("| world | scheme | params | grads | buckets | AdamW | states total | + activations (ckpt off / on) |\n")
        out.append("|---:|---|---:|---:|---:|---:|---:|---:|\n")
        for world in (8, 16, 32):
            for stage, scheme in enumerate(["DDP", "ZeRO-1", "ZeRO-2", "ZeRO-3"]):
                p, g, b, a = states(psi, world, stage, layers * psi_block_max)
                tot = p + g + b + a
                out.append(f"| {world} | {scheme} | {p / GiB:.1f} | {g / GiB:.1f} | {b / GiB:.1f} | {a / GiB:.1f} | "
                           f"{tot / GiB:.1f} | {(tot + act[0]) / GiB:.1f} / {(tot + act[1]) / GiB:.1f} |\n")
    return "".join(out)


def check(psi):
    """bench/zero_memory.sh's LLaMA-ID at world size 2 (psi: the parameter count its trainer logged):
    predicted bytes per rank by stage, over the base of a tiny model's run."""
    global psi_block_max
    d, layers, ffn, heads, tokens = 768, 12, 2048, 12, 8 * 50
    psi_block_max = 4 * d * d + 3 * d * ffn
    act = activations(d, layers, ffn, heads, heads, tokens, 50, False)
    print(f"LLaMA-ID: {psi / 1e6:.1f}M parameters (the trainer logs the exact count); activations "
          f"{act / 2 ** 20:.0f} MiB per rank (8 sequences of 50)")
    for stage, prefetch in ((0, True), (1, True), (2, True), (3, True), (3, False)):
        p, g, b, a = states(psi, 2, stage, layers * psi_block_max, prefetch)
        name = f"ZeRO-{stage}" + ("" if prefetch or stage < 3 else " without prefetch")
        print(f"{name}: params {p / 2**20:.0f} + grads {g / 2**20:.0f} + buckets {b / 2**20:.0f} + AdamW "
              f"{a / 2**20:.0f} = {(p + g + b + a) / 2**20:.0f} MiB; + activations {(p + g + b + a + act) / 2**20:.0f} MiB")


psi_block_max = 0
if __name__ == "__main__":
    if "--check" in sys.argv:
        check(int(sys.argv[sys.argv.index("--check") + 1]))
    else:
        sys.stdout.write(table())
