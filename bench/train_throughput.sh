#!/usr/bin/env bash
# Training throughput of seqrec vs the PyTorch SASRec reference, side by side in one run, on the
# SASRec-paper ML-1M config (2 cores). Needs the built tree (bench_train target), Debian's
# python3-torch for the reference, and ../shared/datasets/ml-1m.
# Usage: bench/train_throughput.sh [repeats]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
repeats="${1:-3}"
py="${PYTHON:-/usr/bin/python3}"  # Debian python3 with python3-torch
data=../shared/datasets/ml-1m/ml-1m.txt
[[ -f $data ]] || { echo "no $data: nothing to benchmark on" >&2; exit 1; }
# The reference is not optional: install Debian's python3-torch, or stop (a run without its
# reference rows used to print seqrec's alone and exit 0).
if ! "$py" -c "import torch" 2>/dev/null; then
  sudo_cmd=(); [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends python3-torch >&2 ||
    { echo "cannot install python3-torch: no PyTorch reference, no benchmark" >&2; exit 1; }
  "$py" -c "import torch" 2>/dev/null || { echo "$py cannot import torch: no PyTorch reference" >&2; exit 1; }
fi
ninja -C build bench_train >/dev/null
build/seqrec prepare --config configs/ml-1m/sasrec_paper.yaml >/dev/null 2>&1
for r in $(seq "$repeats"); do
  echo "{\"impl\":\"seqrec\",\"run\":$r,\"result\":$(build/bench_train --config configs/ml-1m/sasrec_paper.yaml --steps 30)}"
  echo "{\"impl\":\"seqrec-bucketed\",\"run\":$r,\"result\":$(build/bench_train --config configs/ml-1m/sasrec_paper.yaml --steps 30 --set train.length_bucketing=true)}"
  echo "{\"impl\":\"pytorch\",\"run\":$r,\"result\":$("$py" bench/reference_sasrec.py "$data" --steps 30)}"
done
