#!/usr/bin/env bash
# The built-in demo: synthetic data -> prepare -> train SASRec and most-popular -> evaluate both
# (full ranking over all items, history masked, leave-one-out test split).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seqrec="${SEQREC:-$root/build/seqrec}"
config=configs/demo.yaml

"$seqrec" synth --config "$config"
"$seqrec" prepare --config "$config"
"$seqrec" train --config "$config"
"$seqrec" train --config configs/demo_most_pop.yaml
echo
echo "== SASRec (runs/demo/sasrec/best.safetensors), protocol full, test split"
"$seqrec" eval --checkpoint runs/demo/sasrec/best.safetensors 2>&1 >/dev/null | cat
echo
echo "== most-popular baseline, protocol full, test split"
"$seqrec" eval --checkpoint runs/demo/most_pop/best.safetensors 2>&1 >/dev/null | cat
echo
echo "== top-5 for user u0"
"$seqrec" recommend --checkpoint runs/demo/sasrec/best.safetensors --user u0 --k 5
echo
echo "== report: runs/demo/report/report.md (learning curves and a test-metrics chart, SVG)"
"$seqrec" report runs/demo/sasrec runs/demo/most_pop --out runs/demo/report
