#!/usr/bin/env bash
# LSVCR throughput on the synthetic two-behaviour data of docs/benchmarks.md (500 users, 200 videos,
# sections of up to 100 comments, stories260K text embeddings): stage 1 (alignment: stories260K
# with LoRA + RecCom, 16 + 16 samples per step) in LLM tokens/s, and stage 2 (RecCom alone, batch
# 128 video + 128 comment samples, histories of 20) in training samples/s, for the full model and
# the one without the comment history, at 1 and 2 threads; and stage 1 data-parallel over 2 ranks
# of one thread (seqrec launch, 8 + 8 samples each). Medians over the rounds.
#
# No reference runs beside it: LSVCR's own code (zhengbw0324/LSVCR) trains ChatGLM3-6B on GPUs
# with DeepSpeed and has no CPU path to compare with on these cores; this is a measurement of
# seqrec alone, not a comparison.
#
# Usage: bench/lsvcr_throughput.sh [rounds]     (needs build/seqrec and ../shared/models/stories260K)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rounds="${1:-3}"
seqrec="${SEQREC:-$root/build/seqrec}"
model=../shared/models/stories260K/hf
[[ -x $seqrec ]] || { echo "no seqrec binary at $seqrec: build first" >&2; exit 1; }
[[ -f $model/config.json ]] || { echo "no $model: stage 1 needs the stories260K LLM" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source "$root/bench/lsvcr_data.sh"
common=(--set data.dir="$work/data" --set lsvcr.video_title_emb="$work/data/title.safetensors"
        --set lsvcr.comment_emb="$work/data/comment.safetensors" --set model.max_history=20 --set model.max_position=40)
out="$work/results.jsonl"
for r in $(seq "$rounds"); do
  for threads in 1 2; do
    "$seqrec" train --config configs/lsvcr/align.yaml "${common[@]}" --set lsvcr.align.max_steps=20 \
      --set lsvcr.align.prompt_history=3 --set lsvcr.align.max_prompt_tokens=160 --set train.batch_size=16 \
      --set train.threads=$threads --set train.out_dir="$work/align" >"$work/align.out" 2>"$work/align.err" ||
      { cat "$work/align.err" >&2; exit 1; }
    tps=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["tokens_per_s"])' "$work/align.out")
    echo "{\"round\":$r,\"stage\":\"align\",\"threads\":$threads,\"value\":$tps}" | tee -a "$out"
    for variant in full no_comment_history; do
      extra=(); [[ $variant == full ]] || extra=(--set model.use_comment_history=false)
      "$seqrec" train --config configs/lsvcr/synthetic.yaml "${common[@]}" "${extra[@]}" --set train.batch_size=128 \
        --set train.epochs=1 --set train.eval_every=1 --set train.threads=$threads --set train.out_dir="$work/s2" \
        >"$work/s2.out" 2>"$work/s2.err" || { cat "$work/s2.err" >&2; exit 1; }
      # The epoch's closing progress line: "... step N/N ... X seq/s took Ys" (video + comment samples).
      sps=$(tr '\r' '\n' <"$work/s2.err" | grep -a 'lsvcr epoch 1/1' | grep -a 'took' | tail -1 | grep -o '[0-9.]* seq/s' | cut -d' ' -f1)
      [[ -n $sps ]] || { cat "$work/s2.err" >&2; echo "no throughput line in stage 2's log" >&2; exit 1; }
      echo "{\"round\":$r,\"stage\":\"$variant\",\"threads\":$threads,\"value\":$sps}" | tee -a "$out"
    done
  done
  # Stage 1 data-parallel: 2 ranks x 8 + 8 samples (the same 16 + 16 per step), one thread each,
  # negatives gathered across the ranks; tokens of both ranks over rank 0's step time.
  "$seqrec" launch --nproc-per-node 2 -- train --config configs/lsvcr/align.yaml "${common[@]}" \
    --set lsvcr.align.max_steps=20 --set lsvcr.align.prompt_history=3 --set lsvcr.align.max_prompt_tokens=160 \
    --set train.batch_size=8 --set train.threads=1 --set train.out_dir="$work/align2" >"$work/align2.out" 2>"$work/align2.err" ||
    { cat "$work/align2.err" >&2; exit 1; }
  tps=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["tokens_per_s"])' "$work/align2.out")
  echo "{\"round\":$r,\"stage\":\"align_2ranks\",\"threads\":1,\"value\":$tps}" | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("\n| what | threads | median | runs |")
print("|---|---:|---:|---|")
for stage, unit in [("align", "stage 1, LLM tokens/s"), ("full", "stage 2 full model, samples/s"),
                    ("no_comment_history", "stage 2 without the comment history, samples/s")]:
    for t in (1, 2):
        v = [r["value"] for r in rows if r["stage"] == stage and r["threads"] == t]
        print(f"| {unit} | {t} | {statistics.median(v):.0f} | {', '.join(f'{x:.0f}' for x in v)} |")
v = [r["value"] for r in rows if r["stage"] == "align_2ranks"]
print(f"| stage 1, LLM tokens/s, 2 ranks (seqrec launch) | 1 each | {statistics.median(v):.0f} | {', '.join(f'{x:.0f}' for x in v)} |")
PY
