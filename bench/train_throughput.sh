#!/usr/bin/env bash
# Training throughput of seqrec vs the PyTorch SASRec reference, side by side in one run, on the
# SASRec-paper ML-1M config (2 cores). Needs the built tree (bench_train target), Debian's
# python3-torch for the reference, and ../shared/datasets/ml-1m.
# Usage: bench/train_throughput.sh [repeats]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
repeats="${1:-3}"
data=../shared/datasets/ml-1m/ml-1m.txt
[[ -f $data ]] || { echo "no $data: nothing to benchmark on" >&2; exit 1; }
# The reference is not optional (a run without its reference rows used to print seqrec's alone and
# exit 0).
source "$root/bench/require_torch.sh"  # sets $py, installs python3-torch or exits 1
ninja -C build bench_train >/dev/null
build/seqrec prepare --config configs/ml-1m/sasrec_paper.yaml >/dev/null 2>&1
for r in $(seq "$repeats"); do
  echo "{\"impl\":\"seqrec\",\"run\":$r,\"result\":$(build/bench_train --config configs/ml-1m/sasrec_paper.yaml --steps 30)}"
  echo "{\"impl\":\"seqrec-bucketed\",\"run\":$r,\"result\":$(build/bench_train --config configs/ml-1m/sasrec_paper.yaml --steps 30 --set train.length_bucketing=true)}"
  echo "{\"impl\":\"pytorch\",\"run\":$r,\"result\":$("$py" bench/reference_sasrec.py "$data" --steps 30)}"
done
