#!/usr/bin/env bash
# Training throughput of SASRec, HSTU and HSTU-large in the generative-recommenders ML-1M setting
# (configs/ml-1m/{sasrec,hstu,hstu_large}.yaml), jagged vs padded attention, against the machine's
# fp32 matrix-multiply peak measured in the same run. Needs the built tree and
# ../shared/datasets/ml-1m. Usage: bench/gr_throughput.sh [rounds] [steps]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rounds="${1:-3}"
steps="${2:-10}"
[[ -f ../shared/datasets/ml-1m/ml-1m_full_sequences.tsv ]] || { echo "no ML-1M data (../shared/datasets/ml-1m): nothing to benchmark on" >&2; exit 1; }
ninja -C build bench_train bench_ops >/dev/null
[[ -f runs/ml-1m-full/data/interactions.bin ]] || build/seqrec prepare --config configs/ml-1m/hstu.yaml >/dev/null 2>&1
out=$(mktemp)
for r in $(seq "$rounds"); do
  echo "{\"round\":$r,\"peak\":$(build/bench_ops --only matmul_2048_peak | head -1)}" | tee -a "$out"
  for model in sasrec hstu hstu_large; do
    for jagged in true false; do
      res=$(build/bench_train --config "configs/ml-1m/$model.yaml" --steps "$steps" --warmup 2 \
              --set model.jagged_attention=$jagged)
      echo "{\"round\":$r,\"model\":\"$model\",\"jagged\":$jagged,\"result\":$res}" | tee -a "$out"
    done
  done
done
python3 - "$out" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
peak = statistics.median(r["peak"]["gflops"] for r in rows if "peak" in r)
print(f"\nmatmul peak (2048^3, median): {peak:.1f} GFLOP/s")
print("| model | attention | seq/s | non-padding positions/s | GFLOP/s | % of peak |")
print("|---|---|---|---|---|---|")
for model in ("sasrec", "hstu", "hstu_large"):
    for jagged in (True, False):
        rs = [r["result"] for r in rows if r.get("model") == model and r.get("jagged") == jagged]
        med = lambda k: statistics.median(x[k] for x in rs)
        print(f"| {model} | {'jagged' if jagged else 'padded'} | {med('seq_per_s'):.0f} | "
              f"{med('positions_per_s'):.0f} | {med('gflops'):.1f} | {100 * med('gflops') / peak:.0f}% |")
EOF
rm -f "$out"
