#!/usr/bin/env bash
# Peak memory and step time per rank of a ~86M-parameter LLaMA-ID (hidden 768, 12 blocks, 12
# heads, SwiGLU 2048, an item table of width 768 over the ~900 items the 64 users touch) trained by `seqrec launch --nproc-per-node 2`
# under train.zero_stage 0 (DDP), 1, 2 and 3, against the memory model of docs/distributed.md. Also
# one process (world size 1) and a tiny model of the same pipeline: its peak RSS is the base that
# does not scale with the parameters (LibTorch, the data, the evaluator).
#
# Every run trains one epoch of `steps` optimiser steps (global batch 16 = 2 x 8 sequences of 50
# items, full softmax), then evaluates; the trainer logs every rank's peak RSS (getrusage) and the
# epoch's duration (seconds per step = duration / steps, the first step's warm-up included). Rounds alternate the stages so that machine noise falls on all of them.
# "3n" is stage 3 with train.zero_prefetch false (each block gathered when needed, blocking), beside
# stage 3's default prefetch. STAGES picks the runs (default "0 1 2 3 3n"; "one" is the single process).
# Usage: [STAGES="3 3n"] bench/zero_memory.sh [rounds] [steps]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rounds="${1:-2}"
steps="${2:-4}"
stages="${STAGES:-one 0 1 2 3 3n}"
seqrec="${SEQREC:-$root/build/seqrec}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

users=$((16 * steps))
data=(--set synth.num_users="$users" --set synth.num_items=16000 --set synth.output="$work/raw"
      --set prepare.input="$work/raw/interactions.csv" --set prepare.items="$work/raw/items.csv"
      --set prepare.output="$work/data")
"$seqrec" synth --config configs/demo.yaml "${data[@]}" >/dev/null 2>&1
"$seqrec" prepare --config configs/demo.yaml "${data[@]}" >/dev/null 2>&1
big=(--set model.item_dim=768 --set model.hidden_dim=768 --set model.num_blocks=12 --set model.num_heads=12)
common=(--config configs/demo_llama_id.yaml --set data.dir="$work/data" --set model.dropout=0 --set train.epochs=1
        --set train.patience=0 --set train.log_every=100000 --set train.loss.name=softmax
        --set train.loss.temperature=0.05 --set train.threads=1 --set eval.batch_size=16 --set 'eval.ks=[10]')

# run NAME NPROC BATCH [overrides...]: prints "params rss0 [rss1] seconds_per_step".
run() {
  local name=$1 nproc=$2 batch=$3
  shift 3
  local cmd=(train "${common[@]}" --set train.batch_size="$batch" --set train.out_dir="$work/$name" "$@")
  if [ "$nproc" = 1 ]; then "$seqrec" "${cmd[@]}" >/dev/null 2>"$work/$name.log"
  else "$seqrec" launch --nproc-per-node "$nproc" -- "${cmd[@]}" >/dev/null 2>"$work/$name.log"; fi
  local params rss rate
  params=$(grep -o '[0-9]* params' "$work/$name.log" | head -1 | awk '{print $1}')
  rss=$(grep -o 'peak RSS[^0-9]*[0-9, ]*MB' "$work/$name.log" | tail -1 | sed 's/[^0-9,]//g; s/,/ /g')
  rate=$(grep -o 'took [0-9hms.]*' "$work/$name.log" | tail -1 | awk -v n="$steps" '{
    t = $2; s = 0; if (t ~ /h/) { split(t, a, "h"); s += a[1] * 3600; t = a[2] }
    if (t ~ /m/) { split(t, a, "m"); s += a[1] * 60; t = a[2] }
    sub(/s$/, "", t); printf "%.2f", (s + t) / n }')
  echo "$params $rss $rate"
}

declare -A rss0 rss1 rate
for r in $(seq "$rounds"); do
  read -r p a rest <<<"$(run tiny 2 8 --set train.zero_stage=0)"
  echo "{\"round\":$r,\"run\":\"tiny_ddp\",\"params\":$p,\"peak_rss_mb\":[$a]}"
  for stage in $stages; do
    if [ "$stage" = one ]; then
      read -r p a s <<<"$(run one 1 16 "${big[@]}")"
      echo "{\"round\":$r,\"run\":\"one_process\",\"params\":$p,\"peak_rss_mb\":[$a],\"s_per_step\":$s}"
      rss0[one]+="$a " rate[one]+="$s "
      continue
    fi
    prefetch=true
    [ "$stage" = 3n ] && prefetch=false
    read -r p a b s <<<"$(run "zero$stage" 2 8 "${big[@]}" --set train.zero_stage="${stage%n}" --set train.zero_prefetch=$prefetch)"
    echo "{\"round\":$r,\"run\":\"zero$stage\",\"params\":$p,\"peak_rss_mb\":[$a,$b],\"s_per_step\":$s}"
    rss0[zero$stage]+="$a " rss1[zero$stage]+="$b " rate[zero$stage]+="$s "
    grep -o 'ZeRO-3: [0-9]* of [0-9]* block uses gathered on demand' "$work/zero$stage.log" | head -1 || true
  done
done
median() { printf '%s\n' $@ | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for stage in $stages; do
  k=zero$stage
  [ "$stage" = one ] && k=one
  echo "median $k: peak RSS rank 0 $(median ${rss0[$k]}) MB, rank 1 $(median ${rss1[$k]:-0}) MB, $(median ${rate[$k]}) s/step"
done
echo "memory model (bench/memory_model.py --check $p):"
/usr/bin/python3 "$root/bench/memory_model.py" --check "$p"
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg)"
