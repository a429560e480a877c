#!/usr/bin/python3
"""The peer of the sampled-attention benchmark: plain PyTorch dense softmax attention over a
kvtune bank file, softmax(scale * q K^T) V, keys read once per chunk of 256 queries.

  peer.py BANK.h5 QUERIES.h5 OUT.h5 [--threads 2] [--scale S]

Reads /keys and /values of the bank and /queries (normalized here, as kvtune does), writes
/outputs. Timed as a whole process by run.sh, like `kvtune bank query`.
"""
import argparse
import math
import time

import h5py
import torch


def timed(fn, repeats):
    """(the minimum over `repeats` calls of fn's wall time, fn's last result): the in-process
    benchmarks' timer (forward.py, train_step.py)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def read_inputs(bank, queries):
    """(keys, values, unit queries) as float32 tensors from a bank file and a queries file."""
    with h5py.File(bank, "r") as f:
        keys = torch.from_numpy(f["keys"][...])
        values = torch.from_numpy(f["values"][...])
    with h5py.File(queries, "r") as f:
        q = torch.from_numpy(f["queries"][...]).float()
    return keys, values, torch.nn.functional.normalize(q, dim=-1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bank")
    p.add_argument("queries")
    p.add_argument("out")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--scale", type=float, default=0.0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    keys, values, q = read_inputs(a.bank, a.queries)
    scale = a.scale if a.scale > 0 else math.sqrt(keys.shape[1])
    out = torch.empty(q.shape[0], values.shape[1])
    with torch.no_grad():
        for i in range(0, q.shape[0], 256):
            s = scale * (q[i:i + 256] @ keys.t())
            out[i:i + 256] = torch.softmax(s, dim=-1) @ values
    with h5py.File(a.out, "w") as f:
        f["outputs"] = out.numpy()


if __name__ == "__main__":
    main()
