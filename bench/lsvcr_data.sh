# Sourced by bench/lsvcr_throughput.sh and bench/lsvcr_serve.sh: defines quiet() and writes the
# synthetic two-behaviour set of docs/benchmarks.md (500 users, 200 videos, sections of up to 100
# comments) prepared into $work/data, with the stories260K text embeddings of its videos and comments
# in $work/data/title.safetensors and $work/data/comment.safetensors. Needs $seqrec, $model, $work.
quiet() { "$@" >"$work/cmd.log" 2>&1 || { cat "$work/cmd.log" >&2; echo "failed: $*" >&2; exit 1; }; }
quiet "$seqrec" synth --set synth.mode=lsvcr --set synth.num_users=500 --set synth.num_videos=200 \
  --set synth.max_comments=100 --out "$work/raw"
quiet "$seqrec" prepare --set prepare.format=lsvcr --set prepare.input="$work/raw" --out "$work/data"
quiet "$seqrec" embed-items --model "$model" --data "$work/data/videos" --fields title -o "$work/data/title.safetensors"
quiet "$seqrec" embed-items --model "$model" --data "$work/data/comments" --fields text -o "$work/data/comment.safetensors"
