#!/usr/bin/env bash
# Bytes per data-parallel step, measured two ways (docs/distributed.md, "Bytes per step"):
#   - payload: what rank 0 handed to collectives, by kind (metrics.jsonl bytes_per_step);
#   - wire: the loopback interface's transmitted bytes (/proc/net/dev, "lo"), read around two runs
#     of S1 and S2 steps; their difference over S2 - S1 steps leaves out set-up and evaluation.
# Nothing else may use loopback meanwhile. Figures, not timings: no time is measured.
#   bench/distributed/run.sh [KVTUNE] [RECIPE] [WORLD...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kvtune="${1:-$root/build/kvtune}"
recipe="${2:-$root/recipes/foldoc.yaml}"
shift $(( $# > 2 ? 2 : $# )) || true
worlds=("$@")
((${#worlds[@]})) || worlds=(2 3)
base="${KVTUNE_BENCH_BASE:-$root/configs/bases/pretrain-general}"
s1=5
s2=25
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
lo_bytes() { awk '$1 == "lo:" { print $10 }' /proc/net/dev; }
run() {  # world steps out
  "$kvtune" finetune "$recipe" --nproc "$1" --out "$3" --set base="$base" \
    --set train.steps="$2" --set train.log_every=1 --set train.eval_batches=1 \
    --set train.checkpoint_every=0 >/dev/null 2>"$3.log"
}
printf '%-6s %-10s %14s %14s %14s %16s\n' world method dense_payload sparse_payload \
  loss_payload wire_per_step
for w in "${worlds[@]}"; do
  for method in memory; do
    a=$(lo_bytes); run "$w" "$s1" "$work/a$w"; b=$(lo_bytes)
    c=$(lo_bytes); run "$w" "$s2" "$work/b$w"; d=$(lo_bytes)
    wire=$(( ((d - c) - (b - a)) / (s2 - s1) ))
    last=$(grep bytes_per_step "$work/b$w/metrics.jsonl" | tail -n1)
    printf '%-6s %-10s %14.0f %14.0f %14.0f %16d\n' "$w" "$method" \
      "$(jq -r '.bytes_per_step.dense // 0' <<<"$last")" \
      "$(jq -r '.bytes_per_step.sparse // 0' <<<"$last")" \
      "$(jq -r '.bytes_per_step.loss // 0' <<<"$last")" "$wire"
  done
done
