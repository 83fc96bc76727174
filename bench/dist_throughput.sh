#!/usr/bin/env bash
# Data-parallel training throughput: 1 process vs `seqrec launch --nproc-per-node 2` on the demo
# HSTU config (synthetic data, 1,000 users), the same global batch (64 = 1 x 64 = 2 x 32), rounds
# alternating in one run. On the project's 2-core machine the two workers share the two cores
# (one intra-op thread each, against two for the single process), so this measures the cost of the
# machinery (gradient buckets, Gloo all-reduce over loopback, sharded evaluation), not a speed-up.
#
# Prints one JSON line per run and a summary: median training seq/s over the epochs after the
# first (evaluation excluded; the trainer's progress line counts the sequences of every rank), the
# ratio 2-process / 1-process, and the gradient bytes all-reduced per step.
# Usage: bench/dist_throughput.sh [rounds] [epochs]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rounds="${1:-3}"
epochs="${2:-4}"
seqrec="${SEQREC:-$root/build/seqrec}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

data=(--set synth.output="$work/raw" --set prepare.input="$work/raw/interactions.csv"
      --set prepare.items="$work/raw/items.csv" --set prepare.output="$work/data")
"$seqrec" synth --config configs/demo.yaml "${data[@]}" >/dev/null 2>&1
"$seqrec" prepare --config configs/demo.yaml "${data[@]}" >/dev/null 2>&1
common=(--config configs/demo_hstu.yaml --set data.dir="$work/data" --set train.epochs="$epochs"
        --set train.eval_every="$epochs" --set train.patience=0 --set train.log_every=100000)

# Median seq/s of the "took" lines of epochs 2..E in a log.
rate() { grep -o '[0-9]* seq/s took' "$1" | awk '{print $1}' | tail -n +2 | sort -n |
         awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

one=() two=() ratios=()
for r in $(seq "$rounds"); do
  "$seqrec" train "${common[@]}" --set train.batch_size=64 --set train.out_dir="$work/one" \
    >/dev/null 2>"$work/one.log"
  "$seqrec" launch --nproc-per-node 2 -- train "${common[@]}" --set train.batch_size=32 \
    --set train.out_dir="$work/two" >/dev/null 2>"$work/two.log"
  a=$(rate "$work/one.log") b=$(rate "$work/two.log")
  one+=("$a") two+=("$b") ratios+=("$(awk -v a="$b" -v b="$a" 'BEGIN {printf "%.2f", a/b}')")
  comm=$(grep -o 'data parallel: .*' "$work/two.log" | head -1)
  echo "{\"round\":$r,\"one_process_seq_per_s\":$a,\"two_processes_seq_per_s\":$b,\"comm\":\"$comm\"}"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
m1=$(median "${one[@]}") m2=$(median "${two[@]}")
mb=$(grep -o '[0-9.]* MB all-reduced per step' "$work/two.log" | head -1 | awk '{print $1}')
steps=$(grep -o 'training [0-9]* sequences, [0-9]* batches/epoch' "$work/two.log" | head -1)
echo "median: 1 process $m1 seq/s, 2 processes $m2 seq/s; per-round ratios ${ratios[*]}, median ratio $(median "${ratios[@]}")"
echo "gradient all-reduce per step: $mb MB per rank (a ring all-reduce sends and receives 2(W-1)/W of it per rank: $mb MB at W=2); $steps"
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg)"
