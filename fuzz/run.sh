#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14, ASan + UBSan, no LibTorch) and runs each for a while.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default 20 s, every target)
#
# Environment: SEQREC_FUZZ_BUILD (build dir, default <repo>/build-fuzz, git-ignored),
# SEQREC_FUZZ_JOBS (targets run at the same time, default 1), SEQREC_SHARED (default <repo>/../shared:
# extra seeds from the shared models and data sets when present), CXX (default clang++-14).
# Each target keeps its growing corpus in <build>/corpus/<target> (seeded from fuzz/corpus/<target>
# and the shared files) and writes crashing inputs to <build>/crashes/<target>/. Prints one line per
# target (executions, corpus size, crashes) and exits 1 if any target crashed.
# Without clang++-14 and libFuzzer it says so in one line and exits 0.
set -euo pipefail

seconds="${1:-20}"
shift || true
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SEQREC_FUZZ_BUILD:-$root/build-fuzz}"
jobs="${SEQREC_FUZZ_JOBS:-1}"
shared="${SEQREC_SHARED:-$root/../shared}"
cxx="${CXX:-clang++-14}"

all_targets=(fuzz_interactions fuzz_config fuzz_safetensors fuzz_bpe_tokenizer fuzz_sentencepiece
             fuzz_parquet fuzz_request_json fuzz_item_table fuzz_index_json fuzz_lsvcr
             fuzz_lcrec_user_texts fuzz_tokenizer_config fuzz_item_tokens)
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")

if ! command -v "$cxx" >/dev/null 2>&1 ||
   ! compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null; then
  echo "fuzz: skipped: $cxx or libFuzzer not found (Debian: apt install clang-14 libfuzzer-14-dev)"
  exit 0
fi

cmake -S "$root/fuzz" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
ninja -C "$build" "${targets[@]}" >/dev/null

# Seeds from the shared models and data sets (when present): small files only.
seeds="$build/seeds"
rm -rf "$seeds"
for t in "${all_targets[@]}"; do mkdir -p "$seeds/$t"; done
if [[ -d "$shared" ]]; then
  copy_small() {  # copy_small TARGET FILE...: files under 64 KiB
    local t="$1"; shift
    local f
    for f in "$@"; do
      [[ -f "$f" && $(stat -c %s "$f") -lt 65536 ]] && cp "$f" "$seeds/$t/$(basename "$(dirname "$f")")_$(basename "$f")"
    done
    return 0
  }
  copy_small fuzz_bpe_tokenizer "$shared"/models/*/hf/tokenizer.json
  copy_small fuzz_sentencepiece "$shared"/models/*/hf/tokenizer.model
  copy_small fuzz_safetensors "$shared"/models/*/hf/*.safetensors
  copy_small fuzz_parquet "$shared"/datasets/parquet-testing/data/*.parquet
  copy_small fuzz_request_json "$shared"/models/*/hf/*.json
  for f in "$shared"/models/*/hf/tokenizer_config.json "$shared"/models/tokenizers/*/tokenizer_config.json; do
    [[ -f "$f" ]] && { printf '\x00'; cat "$f"; } > "$seeds/fuzz_tokenizer_config/$(basename "$(dirname "$f")").seed"
  done
  # Interaction files: a selector byte (see fuzz_interactions.cc), then the first lines.
  for spec in "3:ml-1m/ml-1m.txt" "4:ml-1m/ml-1m_full_sequences.tsv" "1:ml-1m/movies.dat" "4:amazon-beauty/Beauty.txt"; do
    sel="${spec%%:*}" f="$shared/datasets/${spec#*:}"
    [[ -f "$f" ]] || continue
    { printf "\\x0$sel"; head -c 2000 "$f" | head -n 30; } > "$seeds/fuzz_interactions/$(basename "$f").seed"
  done
  # Item tables: ML-1M movies.dat (selector 2 = movielens_dat), its first lines.
  if [[ -f "$shared/datasets/ml-1m/movies.dat" ]]; then
    { printf "\\x02"; head -n 30 "$shared/datasets/ml-1m/movies.dat"; } > "$seeds/fuzz_item_table/movies.dat.seed"
  fi
fi
for f in "$root"/configs/*.yaml "$root"/configs/*/*.yaml; do
  [[ -f "$f" ]] && cp "$f" "$seeds/fuzz_config/$(basename "$(dirname "$f")")_$(basename "$f")"
done

run_target() {
  local t="$1"
  local corpus="$build/corpus/$t" crashes="$build/crashes/$t" log="$build/logs/$t.log"
  mkdir -p "$corpus" "$crashes" "$(dirname "$log")"
  local before
  before=$(find "$crashes" -type f | wc -l)
  local rc=0 start=$SECONDS
  # -timeout: an input that runs 10 s is a hang; -rss_limit_mb: 2 GB is a finding too.
  "$build/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$crashes/" "$corpus" "$root/fuzz/corpus/$t" "$seeds/$t" >"$log" 2>&1 || rc=$?
  local execs size after took=$((SECONDS - start))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  size=$(find "$corpus" -type f | wc -l)
  after=$(find "$crashes" -type f | wc -l)
  printf '%-20s %6ss  executions %10s  corpus %6s  new crashes %s  (rc %s, log %s)\n' \
    "$t" "$took" "${execs:-?}" "$size" "$((after - before))" "$rc" "$log"
  if ((rc != 0 || after > before)); then
    grep -m1 -E 'ERROR: |runtime error|seqrec fuzz finding|terminate called' "$log" | sed 's/^/    /' || true
    return 1
  fi
}

failed=0
running=0
pids=()
for t in "${targets[@]}"; do
  run_target "$t" &
  pids+=($!)
  running=$((running + 1))
  if ((running >= jobs)); then
    wait -n || failed=1
    running=$((running - 1))
  fi
done
while ((running > 0)); do
  wait -n || failed=1
  running=$((running - 1))
done
if ((failed)); then
  echo "fuzz: crashes found (inputs under $build/crashes/)"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, no crash"
