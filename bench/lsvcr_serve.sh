#!/usr/bin/env bash
# `seqrec serve` on an LSVCR stage 2 checkpoint: POST /v1/recommend (next videos over the whole
# catalogue, one forward per micro-batch) and POST /v1/comments (a video's comment section, one
# forward per request) under closed-loop load from bench_serve, at concurrency 1 and 8.
# Data: the synthetic two-behaviour set of bench/lsvcr_throughput.sh (500 users, 200 videos,
# sections of up to 100 comments, stories260K text embeddings); the model is
# configs/lsvcr/synthetic.yaml (d 64, histories of 50) trained for one epoch (latency depends on the
# shape, not on the ranking quality). Bodies: {"user": <each user>, "k": 10}, and for comments the
# same users with "video" = the largest comment section.
#
# No reference runs beside it: LSVCR's own code (zhengbw0324/LSVCR) has no serving path; the SASRec
# and HSTU rows of bench/serve_bench.sh (another data set) are the nearest thing, not a ratio.
#
# Usage: bench/lsvcr_serve.sh [SECONDS_PER_POINT] [ROUNDS]   (default 5 s, 3 rounds of the 4 points;
#        needs build/ and ../shared/models/stories260K). Prints one JSON line per point.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
point_s="${1:-5}"
rounds="${2:-3}"
build="${SEQREC_BUILD_DIR:-$root/build}"
seqrec="$build/seqrec"
model=../shared/models/stories260K/hf
[[ -f $model/config.json ]] || { echo "no $model: the text embeddings need the stories260K LLM" >&2; exit 1; }
ninja -C "$build" seqrec bench_serve >&2
work=$(mktemp -d)
server_pid=""
trap '[[ -n $server_pid ]] && kill -TERM $server_pid 2>/dev/null; rm -rf "$work"' EXIT
source "$root/bench/lsvcr_data.sh"
quiet "$seqrec" train --config configs/lsvcr/synthetic.yaml --set data.dir="$work/data" \
  --set lsvcr.video_title_emb="$work/data/title.safetensors" --set lsvcr.comment_emb="$work/data/comment.safetensors" \
  --set train.epochs=1 --set train.out_dir="$work/s2"

# Bodies: every user; the video with the most comments for /v1/comments.
video=$(cut -f4 "$work/data/comments/items.tsv" | tail -n +2 | sort | uniq -c | sort -rn | head -1 | awk '{print $2}')
video_raw=$(awk -F'\t' -v v="$video" '$1 == v {print $2}' "$work/data/videos/items.tsv")
cut -f2 "$work/data/users.tsv" | awk '{printf "{\"user\": \"%s\", \"k\": 10}\n", $1}' > "$work/recommend.jsonl"
cut -f2 "$work/data/users.tsv" | awk -v v="$video_raw" '{printf "{\"user\": \"%s\", \"video\": \"%s\", \"k\": 10}\n", $1, v}' \
  > "$work/comments.jsonl"
echo "comment section of $video_raw: $(awk -F'\t' -v v="$video" '$4 == v' "$work/data/comments/items.tsv" | wc -l) comments" >&2

"$seqrec" serve --checkpoint "$work/s2/best.safetensors" --port 0 --threads 80 --set serve.log_requests=false \
  --set serve.max_batch=64 --set serve.max_wait_us=500 > "$work/server.out" 2> "$work/server.log" &
server_pid=$!
for _ in $(seq 300); do
  grep -q '"port"' "$work/server.out" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.2
done
port=$(sed -n 's/.*"port": \([0-9]*\).*/\1/p' "$work/server.out")
for round in $(seq "$rounds"); do
  for route in recommend comments; do
    for c in 1 8; do
      line=$("$build/bench_serve" --port "$port" --bodies "$work/$route.jsonl" --path "/v1/$route" --connections "$c" \
             --seconds "$point_s" --server-pid "$server_pid")
      echo "{\"round\": $round, \"route\": \"/v1/$route\", \"result\": $line}"
    done
  done
done
