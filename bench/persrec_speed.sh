#!/usr/bin/env bash
# PerSRec inference and training cost, seqrec (bench_persrec) vs the PyTorch reference
# (bench/persrec_reference.py, PersonalizedHSTU as PerSRec's code computes it: dense masks, einsum
# attention, K/V concatenation for the cached predict), side by side in one run on the same shapes.
# The reference first loads seqrec's weights and histories and must reproduce its four outputs to
# 1e-4, or the run stops. Rounds alternate the two; medians per measurement and seqrec's speed-up.
# Needs the built tree (bench_persrec target) and Debian's python3-torch (installed if missing).
# Usage: bench/persrec_speed.sh [repeats] [P R K d layers heads users rounds]
#        (defaults: 3 repeats, PerSRec's MerRec shape 1024 256 4 64 16 8 8 5)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
repeats="${1:-3}"
shift || true
shape=("${@:-}")
[[ ${#shape[@]} -eq 8 ]] || shape=(1024 256 4 64 16 8 8 5)
source "$root/bench/require_torch.sh"  # sets $py, installs python3-torch or exits 1
ninja -C build bench_persrec >/dev/null
dump="$(mktemp -d)"
trap 'rm -rf "$dump"' EXIT
log="$dump/results.jsonl"
# Same weights, same histories: the reference must compute seqrec's model before it is timed.
build/bench_persrec "${shape[@]:0:7}" 1 "$dump" >/dev/null
"$py" bench/persrec_reference.py "${shape[@]:0:7}" 1 "$dump" --check-only | tee -a "$log" >&2
for r in $(seq "$repeats"); do
  build/bench_persrec "${shape[@]}" | sed "s/^{/{\"impl\":\"seqrec\",\"run\":$r,/" | tee -a "$log"
  "$py" bench/persrec_reference.py "${shape[@]}" | sed "s/^{/{\"impl\":\"pytorch\",\"run\":$r,/" | tee -a "$log"
done
"$py" - "$log" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(impl, what, key):
    v = [r[key] for r in rows if r.get("impl") == impl and r["what"] == what and key in r]
    return statistics.median(v) if v else None
print("\n| inference, ms per user (median) | seqrec | PyTorch reference | reference / seqrec |")
print("|---|---|---|---|")
for key in ("cached_predict", "full_history", "uncached_segment_mask", "recent_only", "compress"):
    s, p = med("seqrec", "inference_ms_per_user", key), med("pytorch", "inference_ms_per_user", key)
    print(f"| {key} | {s:.2f} | {p:.2f} | {p / s:.1f}x |")
for impl in ("seqrec", "pytorch"):
    print(f"{impl}: full history / cached predict = {med(impl, 'inference_ms_per_user', 'full_history') / med(impl, 'inference_ms_per_user', 'cached_predict'):.1f}x")
s = med("seqrec", "training_seq_per_s", "segment_mask_packed")
sd = med("seqrec", "training_seq_per_s", "segment_mask_dense")
p = med("pytorch", "training_seq_per_s", "segment_mask_dense")
print(f"\ntraining with the segment mask, sequences/s: seqrec packed {s:.2f}, seqrec dense mask {sd:.2f}, "
      f"PyTorch reference (dense, 1 sequence) {p:.2f}: seqrec packed / reference {s / p:.1f}x")
EOF
