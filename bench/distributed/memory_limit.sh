#!/usr/bin/env bash
# A bank larger than any one process may hold (docs/distributed.md, "A bank larger than one
# process"): a base model whose base bank has ROWS slots is fine-tuned under a per-process data
# limit (ulimit -d, RLIMIT_DATA: the heap and every private writable mapping) of LIMIT_MIB:
#   1. in one process, which must fail with an error (the bank does not fit);
#   2. on WORLD local ranks with train.shard_base_banks, each holding 1/WORLD of the bank.
# Prints each run's exit status and the largest peak RSS of any of its processes.
#   bench/distributed/memory_limit.sh [KVTUNE] [ROWS] [LIMIT_MIB] [WORLD]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kvtune="${1:-$root/build/kvtune}"
rows="${2:-4194304}"
limit_mib="${3:-900}"
world="${4:-3}"
work="${KVTUNE_BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$work"
# Peak RSS of the largest descendant (RUSAGE_CHILDREN), and the exit status, of a command.
measure() {
  /usr/bin/python3 - "$@" <<'PY'
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:]).returncode
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"exit {rc}, largest process peak RSS {peak:.0f} MiB")
PY
}
base="$work/base"
if [[ ! -f "$base/model/config.yaml" ]]; then
  echo "== the base: tiny with a base bank of $rows slots and an IVF1024,Flat index (no limit)"
  measure "$kvtune" pretrain "$root/recipes/pretrain-general.yaml" --out "$base" --overwrite \
    --set model_overrides.memory.base_bank_size="$rows" \
    --set model_overrides.memory.index.factory=IVF1024,Flat \
    --set model_overrides.memory.index.nprobe=32 \
    --set train.steps=1 --set train.batch_size=2 --set train.eval_batches=1 \
    --set train.eval_every=0 --set train.checkpoint_every=0 --set train.background_batches=0 \
    --set data.max_entries=2000 >"$work/pretrain.log" 2>&1
  tail -n 1 "$work/pretrain.log"
fi
ls -l "$base/model/"bank_0.* | awk '{ printf "%s %.0f MiB\n", $NF, $5 / 1048576 }'
finetune() {  # nproc out [extra --set ...]
  local nproc=$1 out=$2
  shift 2
  (ulimit -d $((limit_mib * 1024)) && measure "$kvtune" finetune "$root/recipes/foldoc.yaml" \
    --nproc "$nproc" --out "$out" --overwrite --set base="$base" --set train.steps=4 \
    --set train.batch_size=8 --set train.eval_batches=1 --set train.eval_every=0 \
    --set train.checkpoint_every=0 --set train.log_every=1 "$@")
}
echo "== one process, limit $limit_mib MiB"
finetune 1 "$work/one" 2>"$work/one.log" || true
tail -n 2 "$work/one.log"
echo "== $world ranks, train.shard_base_banks: true, limit $limit_mib MiB per process"
finetune "$world" "$work/sharded" --set train.shard_base_banks=true 2>"$work/sharded.log"
grep -h '"domain"' "$work/sharded/report.json" 2>/dev/null | head -n 3 || true
tail -n 3 "$work/sharded.log"
