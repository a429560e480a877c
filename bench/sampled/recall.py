#!/usr/bin/python3
"""Recall@k of a bank's own index against the exact search (docs/benchmarks.md, "Recall of the
benchmark's index"): kvtune's op through the bank's index (kvtune.Bank.load with each nprobe)
against the same op without it, which searches exactly. The first 256 queries.

  tools/python bench/sampled/recall.py BANK.h5 QUERIES.h5 K NPROBE [NPROBE ...]
"""
import sys
import time

import h5py
import torch

import kvtune


def main():
    bank_path, queries_path, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    nprobes = [int(x) for x in sys.argv[4:]]
    torch.set_num_threads(2)
    with h5py.File(queries_path, "r") as f:
        q = torch.from_numpy(f["queries"][...]).float()[:256]
    exact = None
    for nprobe in nprobes:
        bank = kvtune.Bank.load(bank_path, nprobe=nprobe)
        t0 = time.perf_counter()
        _, ids, _ = kvtune.knn_attention(q, [bank.keys], [bank.values], k, banks=[bank])
        seconds = time.perf_counter() - t0
        if exact is None:
            _, exact, _ = kvtune.knn_attention(q, [bank.keys], [bank.values], k)
        found = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(ids, exact))
        print(f"nprobe {nprobe}: recall@{k} {found / (q.shape[0] * k):.3f} "
              f"({seconds:.2f} s for {q.shape[0]} queries)")


if __name__ == "__main__":
    main()
