#!/usr/bin/env bash
# prepare at scale, side by side with DuckDB, polars and pandas in one run (issue: data at scale).
#
#   bench/prepare_scale.sh compare [rows_millions] [rounds]
#     A synthetic Pixel8M-shaped log (`synth.mode: scale`, integer ids, rows in time order inside
#     chunks of 65,536 users) of about rows_millions (default 20) million `user_id,item_id,timestamp`
#     rows, and its Parquet twin written by DuckDB. Each round runs, in turn: `seqrec prepare` on the
#     CSV and on the Parquet file (parse + dense ids + sort by user and time + store), DuckDB
#     (read_csv / read_parquet + ORDER BY user_id, timestamp into a table), polars (read + sort) and
#     pandas read_csv (read only). Reports the median wall time of the whole process (start-up
#     included) and of the work alone, peak RSS, rows/s, and checks that the CSV and Parquet stores
#     are byte-identical.
#   bench/prepare_scale.sh scale [users_millions] [memory_limit_mb]
#     The 150M-event log (8.9M users by default), prepared under prepare.memory_limit_mb (default
#     4096): wall time, rows/s, peak RSS.
#
# References are installed into bench/.deps (npm: @duckdb/node-api, nodejs-polars 0.25.2;
# Debian: python3-pandas); when one cannot be installed the script says so and exits 1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
mode="${1:-compare}"
seqrec="${SEQREC:-$root/build/seqrec}"
work="${BENCH_WORK:-$(mktemp -d /tmp/seqrec_prepare_bench.XXXXXX)}"
deps="$root/bench/.deps"
[[ -x "$seqrec" ]] || { echo "no seqrec binary at $seqrec: build first" >&2; exit 1; }

install_refs() {
  mkdir -p "$deps"
  if [[ ! -d "$deps/node_modules/@duckdb/node-api" || ! -d "$deps/node_modules/nodejs-polars-linux-x64-gnu" ]]; then
    (cd "$deps" && [[ -f package.json ]] || echo '{"private":true}' >"$deps/package.json"
     cd "$deps" && npm install --no-audit --no-fund @duckdb/node-api nodejs-polars@0.25.2 \
       nodejs-polars-linux-x64-gnu@0.25.2 >&2) ||
      { echo "cannot install DuckDB / polars from the npm registry: no reference, no benchmark" >&2; exit 1; }
  fi
  # ES modules resolve packages from the script's folder: run copies that live beside node_modules.
  cp "$root"/bench/prepare/*.mjs "$deps/"
  if ! /usr/bin/python3 -c 'import pandas' 2>/dev/null; then
    sudo_cmd=(); [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends python3-pandas >&2 ||
      { echo "cannot install python3-pandas: no pandas reference" >&2; exit 1; }
  fi
}

# Runs a command under /usr/bin/time; prints "wall_s rss_kb work_s" (work_s from the command's JSON
# "seconds" or from seqrec's "prepare: X s" line).
measure() {
  local log="$work/measure.log"
  /usr/bin/time -f "TIME %e %M" "$@" >"$log" 2>&1 || { cat "$log" >&2; echo "failed: $*" >&2; exit 1; }
  local wall rss work_s
  read -r wall rss < <(grep '^TIME' "$log" | awk '{print $2, $3}')
  work_s=$(grep -o '"seconds": *[0-9.e-]*' "$log" | head -1 | cut -d: -f2 | tr -d ' ' || true)
  [[ -n "$work_s" ]] || work_s=$(grep -o 'prepare: [0-9.]* s' "$log" | head -1 | awk '{print $2}' || true)
  echo "$wall $rss $work_s"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

case "$mode" in
compare)
  rows_m="${2:-20}"
  rounds="${3:-3}"
  install_refs
  users=$(awk -v r="$rows_m" 'BEGIN {printf "%d", r * 1e6 / 17.8}')
  if [[ ! -f "$work/log/interactions.csv" ]]; then
    "$seqrec" synth --set synth.mode=scale --set synth.num_users="$users" \
      --set synth.output="$work/log" >/dev/null 2>&1
  fi
  csv="$work/log/interactions.csv"
  pq="$work/log/interactions.parquet"
  [[ -f "$pq" ]] || (cd "$deps" && node "$deps/duckdb_prepare.mjs" "$csv" --to-parquet "$pq")
  rows=$(($(wc -l <"$csv") - 1))
  echo "rows: $rows; csv $(du -m "$csv" | cut -f1) MB, parquet (DuckDB) $(du -m "$pq" | cut -f1) MB; $(nproc) cores" >&2
  declare -A wall rss workt
  tools=(seqrec_csv seqrec_parquet duckdb_csv duckdb_parquet polars_csv polars_parquet pandas_csv)
  for r in $(seq "$rounds"); do
    for t in "${tools[@]}"; do
      case "$t" in
        seqrec_csv) cmd=("$seqrec" prepare --set prepare.input="$csv" --set prepare.user_col=user_id
                         --set prepare.output="$work/store_csv") ;;
        seqrec_parquet) cmd=("$seqrec" prepare --set prepare.input="$pq" --set prepare.format=parquet
                             --set prepare.user_col=user_id --set prepare.output="$work/store_parquet") ;;
        duckdb_csv) cmd=(node "$deps/duckdb_prepare.mjs" "$csv") ;;
        duckdb_parquet) cmd=(node "$deps/duckdb_prepare.mjs" "$pq") ;;
        polars_csv) cmd=(node "$deps/polars_prepare.mjs" "$csv") ;;
        polars_parquet) cmd=(node "$deps/polars_prepare.mjs" "$pq") ;;
        pandas_csv) cmd=(/usr/bin/python3 "$root/bench/prepare/pandas_read.py" "$csv") ;;
      esac
      read -r w m k < <(measure "${cmd[@]}")
      wall[$t]+="$w "; rss[$t]+="$m "; workt[$t]+="$k "
      echo "round $r $t: wall $w s, work $k s, peak RSS $((m / 1024)) MB" >&2
    done
  done
  if cmp -s "$work/store_csv/interactions.bin" "$work/store_parquet/interactions.bin" &&
     cmp -s "$work/store_csv/users.tsv" "$work/store_parquet/users.tsv" &&
     cmp -s "$work/store_csv/items.tsv" "$work/store_parquet/items.tsv"; then
    identical=yes
  else
    identical=NO
  fi
  echo
  echo "| tool | wall s (median of $rounds) | work s | rows/s (wall) | peak RSS MB |"
  echo "|---|---|---|---|---|"
  for t in "${tools[@]}"; do
    w=$(tr ' ' '\n' <<<"${wall[$t]}" | grep . | median)
    k=$(tr ' ' '\n' <<<"${workt[$t]}" | grep . | median)
    m=$(tr ' ' '\n' <<<"${rss[$t]}" | grep . | median)
    printf '| %s | %.2f | %.2f | %.2fM | %d |\n' "$t" "$w" "$k" "$(awk -v r="$rows" -v w="$w" 'BEGIN {print r / w / 1e6}')" $((m / 1024))
  done
  echo
  echo "CSV and Parquet stores byte-identical: $identical"
  [[ "$identical" == yes ]] || exit 1
  ;;
scale)
  users_m="${2:-8.9}"
  cap="${3:-4096}"
  users=$(awk -v u="$users_m" 'BEGIN {printf "%d", u * 1e6}')
  if [[ ! -f "$work/big/interactions.csv" ]]; then
    /usr/bin/time -f "synth: %e s, peak RSS %M KB" "$seqrec" synth --set synth.mode=scale \
      --set synth.num_users="$users" --set synth.output="$work/big" 2>&1 | grep -E 'synth:|events'
  fi
  csv="$work/big/interactions.csv"
  echo "input: $(du -m "$csv" | cut -f1) MB" >&2
  /usr/bin/time -f "TIME %e %M" "$seqrec" prepare --set prepare.input="$csv" --set prepare.user_col=user_id \
    --set prepare.memory_limit_mb="$cap" --set prepare.output="$work/big_store" 2>&1 |
    grep -E 'prepare:|TIME|spill|bucket' | sed 's/^TIME \(.*\) \(.*\)$/wall \1 s, peak RSS \2 KB/'
  ;;
*) echo "usage: $0 compare [rows_millions] [rounds] | scale [users_millions] [memory_limit_mb]" >&2; exit 2 ;;
esac
