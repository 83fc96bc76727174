#!/usr/bin/env bash
# Crash test of training (issue 21): kills `seqrec train` at random moments, resumes it with
# --resume until it finishes, and checks that the final last.safetensors, best.safetensors and
# metrics.jsonl are byte for byte those of an uninterrupted run.
#
# Kill points, alternating: a random time (SIGKILL after 0.3 s .. 85% of the reference run's time) and
# a named crash point inside the checkpoint writing (SEQREC_TEST_CRASH_AT, src/seqrec/common/crash_point.h)
# at a random epoch. Usage: scripts/crash_test.sh [TRIALS=20] [SEED=1]; SEQREC=path/to/seqrec.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seqrec="${SEQREC:-$root/build/seqrec}"
trials="${1:-20}"
RANDOM="${2:-1}"
work="$(mktemp -d /tmp/seqrec_crash_XXXXXX)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1

args=(--config "$root/configs/demo.yaml"
  --set synth.num_users=300 --set synth.num_items=100 --set "synth.output=$work/raw"
  --set "prepare.input=$work/raw/interactions.csv" --set "prepare.items=$work/raw/items.csv"
  --set "prepare.output=$work/data" --set "data.dir=$work/data" --set data.max_seq_len=20
  --set model.hidden_dim=16 --set model.num_blocks=1 --set train.epochs=6 --set train.eval_every=1
  --set train.patience=0 --set train.batch_size=32 --set train.lr=0.005 --set train.loss.num_negatives=16
  --set train.threads=1 --set train.log_every=100000)
"$seqrec" synth "${args[@]}" >/dev/null 2>&1
"$seqrec" prepare "${args[@]}" >/dev/null 2>&1

fingerprint() {  # the files that must match, as one line of checksums
  (cd "$1" && sha256sum last.safetensors best.safetensors metrics.jsonl | awk '{print $1}' | tr '\n' ' ')
}

start=$(date +%s.%N)
"$seqrec" train "${args[@]}" --set "train.out_dir=$work/ref" >/dev/null 2>&1
ref_seconds=$(echo "$(date +%s.%N) - $start" | bc)
ref="$(fingerprint "$work/ref")"
echo "reference run: ${ref_seconds} s"

points=(train.after_metrics_line train.after_best train.after_state train.after_last)
failed=0
for ((trial = 1; trial <= trials; ++trial)); do
  out="$work/run$trial"
  if ((trial % 2 == 1)); then
    span=$(echo "$ref_seconds * 850 / 1" | bc)  # ms: kills land before the run would end
    ms=$((300 + RANDOM % (span - 300)))
    how="SIGKILL after ${ms} ms"
    timeout -s KILL "$(echo "scale=3; $ms / 1000" | bc)" \
      "$seqrec" train "${args[@]}" --set "train.out_dir=$out" >/dev/null 2>&1 </dev/null
    (($? == 0)) && how="$how (too late: the run had finished)"
  else
    point="${points[RANDOM % ${#points[@]}]}@$((1 + RANDOM % 6))"
    how="crash point $point"
    SEQREC_TEST_CRASH_AT="$point" "$seqrec" train "${args[@]}" --set "train.out_dir=$out" >/dev/null 2>&1 || true
  fi
  done_epochs=$( (grep -c '"split":"valid"' "$out/metrics.jsonl" 2>/dev/null || true) | head -1)
  how="$how, killed after ${done_epochs:-0} evaluation lines"
  resumes=0
  until "$seqrec" train "${args[@]}" --set "train.out_dir=$out" --resume >"$work/resume.log" 2>&1; do
    resumes=$((resumes + 1))
    if ((resumes > 2)); then
      echo "trial $trial ($how): resume keeps failing:"; tail -5 "$work/resume.log"; failed=$((failed + 1)); continue 2
    fi
  done
  leftovers="$(find "$out" -name '*.tmp.*' | wc -l)"
  if [[ "$(fingerprint "$out")" == "$ref" && "$leftovers" == 0 ]]; then
    echo "trial $trial ($how): identical"
  else
    echo "trial $trial ($how): DIFFERENT (temp files left: $leftovers)"; failed=$((failed + 1))
  fi
  rm -rf "$out"
done
echo "$((trials - failed)) of $trials kill points resumed to identical weights and metrics.jsonl"
((failed == 0))
