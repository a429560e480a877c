#!/bin/bash
# Sampled attention against PyTorch dense (docs/benchmarks.md, "Sampled attention").
#   bench/sampled/run.sh [KVTUNE] [N ...]      (default build/kvtune; N = 1048576)
# For each bank size n: a bank of n random unit keys (d_k = 64, d_v = 64) with an IVF index of
# about sqrt(n) lists (`kvtune bank create --index IVF<L>,Flat`), 1024 random unit queries, and
# whole-process wall times (2 threads) of
#   peer     plain PyTorch dense softmax attention (bench/sampled/peer.py)
#   dense    kvtune bank query --estimator dense
#   topk     --estimator topk --k sqrt(n)            (the IVF search plus the top-k softmax)
#   gumbel   --estimator gumbel --samples 32 --k sqrt(n)
#   tail     --estimator topk+tail --samples 64 --k sqrt(n)
# "op" is the whole-process time less that of the same command with one query: the bank's
# loading cancels. "err" is the RMS error of the output against the peer's, over the values' RMS.
set -euo pipefail
K=${1:-build/kvtune}
shift || true
SIZES=${*:-1048576}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
W=${KVTUNE_BENCH_DIR:-$(mktemp -d /tmp/kvtune-bench-sampled.XXXXXX)}
export OMP_NUM_THREADS=2
now() { date +%s.%N; }
timed() {  # timed CMD...: seconds of the whole command
  local t0; t0=$(now); "$@" > /dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
  echo "$(now) - $t0" | bc -l
}
$PY - "$W" <<'PYEOF'
import sys, h5py, numpy as np
w = sys.argv[1]
rng = np.random.default_rng(0)
q = rng.standard_normal((1024, 64)).astype(np.float32)
q /= np.linalg.norm(q, axis=1, keepdims=True)
for name, rows in (("q1024", q), ("q1", q[:1])):
    with h5py.File(f"{w}/{name}.h5", "w") as f:
        f["queries"] = rows
PYEOF
err() {  # err OUT.h5 PEER.h5 BANK.h5
  $PY - "$@" <<'PYEOF'
import sys, h5py, numpy as np
a = h5py.File(sys.argv[1], "r")["outputs"][...].astype(np.float64)
b = h5py.File(sys.argv[2], "r")["outputs"][...].astype(np.float64)
v = h5py.File(sys.argv[3], "r")["values"][...].astype(np.float64)
print(f"{np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(v ** 2)):.3g}")
PYEOF
}
printf "%-9s %-8s %-6s %9s %9s %10s %8s\n" n what k whole_s op_s vs_peer err
for n in $SIZES; do
  k=$($PY -c "import math; print(int(round(math.sqrt($n))))")
  lists=$($PY -c "import math; print(max(16, 2 ** int(round(math.log2(math.sqrt($n))))))")
  nprobe=$(( lists / 32 > 4 ? lists / 32 : 4 ))
  bank="$W/bank_$n.h5"
  [ -f "$bank" ] || "$K" bank create --n "$n" --key-dim 64 --value-dim 64 --seed 1 \
    --index "IVF$lists,Flat" --out "$bank" > /dev/null
  peer_whole=$(timed $PY "$HERE/peer.py" "$bank" "$W/q1024.h5" "$W/peer_$n.h5")
  peer_one=$(timed $PY "$HERE/peer.py" "$bank" "$W/q1.h5" "$W/peer1_$n.h5")
  peer_op=$(echo "$peer_whole - $peer_one" | bc -l)
  printf "%-9s %-8s %-6s %9.2f %9.2f %10s %8s\n" "$n" peer - "$peer_whole" "$peer_op" 1.00 0
  for what in dense topk gumbel tail; do
    case $what in
      dense) args=(--estimator dense --k 32) ;;
      topk) args=(--estimator topk --k "$k" --nprobe "$nprobe") ;;
      gumbel) args=(--estimator gumbel --samples 32 --k "$k" --nprobe "$nprobe") ;;
      tail) args=(--estimator topk+tail --samples 64 --k "$k" --nprobe "$nprobe") ;;
    esac
    whole=$(timed "$K" bank query "$bank" --queries "$W/q1024.h5" --out "$W/${what}_$n.h5" "${args[@]}")
    one=$(timed "$K" bank query "$bank" --queries "$W/q1.h5" --out "$W/${what}1_$n.h5" "${args[@]}")
    op=$(echo "$whole - $one" | bc -l)
    kk=$k; [ "$what" = dense ] && kk=-
    printf "%-9s %-8s %-6s %9.2f %9.2f %9.2fx %8s\n" "$n" "$what" "$kk" "$whole" "$op" \
      "$(echo "$peer_whole / $whole" | bc -l)" "$(err "$W/${what}_$n.h5" "$W/peer_$n.h5" "$bank")"
  done
  echo "  (IVF$lists,Flat, nprobe $nprobe; vs_peer: PyTorch whole-process time / this one's)"
done
echo "work folder: $W"
