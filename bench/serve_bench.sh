#!/usr/bin/env bash
# Load test of `seqrec serve` on loopback: ML-1M SASRec and HSTU checkpoints, histories of the last
# 200 items of real users, exact top-k and faiss HNSW and IVF-PQ indexes, concurrency 1 / 8 / 64, then one
# long run at concurrency 8 with a reload in the middle and the server's RSS before and after, and
# one run at concurrency 8 without reload with the server's RSS sampled every RSS_EVERY seconds.
#
#   bench/serve_bench.sh [OUT_DIR]      (default /tmp/seqrec_serve_bench)
# Env: SEQREC_BUILD_DIR (default build), SECONDS_PER_POINT (5), LONG_SECONDS (60), RSS_EVERY (5),
#      RUNS (which parts, default "sweep reload memory"),
#      SASREC_CKPT / HSTU_CKPT (use these checkpoints instead of training one epoch each).
# The models are trained for one epoch only when no checkpoint is given: latency does not depend
# on how well a model ranks, only on its shape (d 50, 2 blocks, L 200 for both).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SEQREC_BUILD_DIR:-$root/build}"
out="${1:-/tmp/seqrec_serve_bench}"
point_s="${SECONDS_PER_POINT:-5}"
long_s="${LONG_SECONDS:-60}"
rss_every="${RSS_EVERY:-5}"
runs="${RUNS:-sweep reload memory}"
ml1m="${ML1M_DIR:-/work/shared/datasets/ml-1m}"
seqrec="$build/seqrec"
load="$build/bench_serve"
ninja -C "$build" seqrec bench_serve >&2
mkdir -p "$out"

common=(--set "prepare.input=$ml1m/ml-1m_full_sequences.tsv" --set "prepare.items=$ml1m/movies.dat"
        --set "prepare.output=$out/data" --set "data.dir=$out/data" --set train.epochs=1 --set train.eval_every=1000)
if [[ ! -f "$out/data/interactions.bin" ]]; then
  nice "$seqrec" prepare --config "$root/configs/ml-1m/sasrec.yaml" "${common[@]}" >&2
fi
train_one() {  # name -> checkpoint path
  local name="$1" ckpt="$out/$1/best.safetensors"
  if [[ ! -f "$ckpt" ]]; then
    nice "$seqrec" train --config "$root/configs/ml-1m/$name.yaml" "${common[@]}" --set "train.out_dir=$out/$name" >&2
  fi
  echo "$ckpt"
}
sasrec="${SASREC_CKPT:-$(train_one sasrec)}"
hstu=""
[[ " $runs " == *" sweep "* ]] && hstu="${HSTU_CKPT:-$(train_one hstu)}"

server_pid=""
start_server() {  # checkpoint index -> sets port and server_pid
  local log="$out/server.log"
  nice "$seqrec" serve --checkpoint "$1" --data "$out/data" --port 0 --threads 80 --index "$2" \
    --set serve.log_requests=false --set serve.max_batch=64 --set serve.max_wait_us=500 > "$out/server.out" 2> "$log" &
  server_pid=$!
  for _ in $(seq 600); do
    grep -q '"port"' "$out/server.out" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.2
  done
  port=$(sed -n 's/.*"port": \([0-9]*\).*/\1/p' "$out/server.out")
  grep -E "recall|index" "$log" >&2 || true
}
stop_server() {
  kill -TERM "$server_pid"
  wait "$server_pid" || true
}

results="$out/results.jsonl"
: > "$results"
if [[ " $runs " == *" sweep "* ]]; then
for model in sasrec hstu; do
  ckpt="$sasrec"; [[ $model == hstu ]] && ckpt="$hstu"
  for index in exact hnsw ivfpq; do
    start_server "$ckpt" "$index"
    for c in 1 8 64; do
      line=$("$load" --port "$port" --data "$out/data" --connections "$c" --seconds "$point_s" --history 200)
      echo "{\"model\": \"$model\", \"index\": \"$index\", \"result\": $line}" | tee -a "$results"
    done
    stop_server
  done
done
fi

# Long run: SASRec exact, concurrency 8, a reload of the checkpoint (as after retraining) half-way.
if [[ " $runs " == *" reload "* ]]; then
  start_server "$sasrec" exact
  line=$("$load" --port "$port" --data "$out/data" --connections 8 --seconds "$long_s" --history 200 \
         --reload-at "$((long_s / 2))" --reload-checkpoint "$sasrec" --server-pid "$server_pid")
  echo "{\"model\": \"sasrec\", \"index\": \"exact\", \"long_run\": true, \"result\": $line}" | tee -a "$results"
  stop_server
fi

# Memory: SASRec exact, concurrency 8, no reload, the server's RSS every RSS_EVERY seconds.
if [[ " $runs " == *" memory "* ]]; then
  start_server "$sasrec" exact
  line=$("$load" --port "$port" --data "$out/data" --connections 8 --seconds "$long_s" --history 200 \
         --server-pid "$server_pid" --rss-every "$rss_every")
  echo "{\"model\": \"sasrec\", \"index\": \"exact\", \"memory_run\": true, \"result\": $line}" | tee -a "$results"
  stop_server
fi
