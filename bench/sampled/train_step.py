#!/usr/bin/python3
"""Forward + backward of kNN attention over a bank, timed in one process (docs/benchmarks.md,
"Forward and backward"): PyTorch dense softmax attention with autograd (keys and values read
once per chunk of 256 queries, gradients to the queries, keys and values), against kvtune's op
with the `gumbel` forward and the `sampled` backward through the bank's own IVF index, gradients
to the queries and (sparse) to the keys and values.

  tools/python bench/sampled/train_step.py BANK.h5 QUERIES.h5 [--k K] [--nprobe P]
      [--samples 32] [--backward-samples 32] [--repeats 3] [--threads 2]

Prints the minimum over repeats of each side's forward + backward time, the loading excluded,
and the relative RMS error of kvtune's query gradient against the peer's.
"""
import argparse
import math

import torch

import kvtune
from peer import read_inputs, timed  # the peer's own reading of the inputs, and its timer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bank")
    p.add_argument("queries")
    p.add_argument("--k", type=int, default=1024)
    p.add_argument("--nprobe", type=int, default=32)
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--backward-samples", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    keys, values, q = read_inputs(a.bank, a.queries)
    scale = math.sqrt(keys.shape[1])
    w = torch.randn(q.shape[0], values.shape[1], generator=torch.Generator().manual_seed(0))

    def peer():
        qq = q.clone().requires_grad_(True)
        kk = keys.clone().requires_grad_(True)
        vv = values.clone().requires_grad_(True)
        for i in range(0, q.shape[0], 256):
            # Normalized inside the graph, as kvtune's op does: the same gradient.
            qn = torch.nn.functional.normalize(qq[i:i + 256], dim=-1)
            s = scale * (qn @ kk.t())
            out = torch.softmax(s, dim=-1) @ vv
            (out * w[i:i + 256]).sum().backward()
        return qq.grad

    bank = kvtune.Bank.load(a.bank, nprobe=a.nprobe)
    kp = torch.nn.Parameter(bank.keys.detach())
    vp = torch.nn.Parameter(bank.values.detach())

    def ours(estimator="gumbel", backward="sampled"):
        qq = q.clone().requires_grad_(True)
        kp.grad = None
        vp.grad = None
        out, _, _ = kvtune.knn_attention(qq, [kp], [vp], a.k, estimator=estimator,
                                         backward=backward, samples=a.samples,
                                         backward_samples=a.backward_samples, seed=1,
                                         banks=[bank])
        (out * w).sum().backward()
        return qq.grad

    def rel(x, ref):
        return ((x - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()).item()

    peer_s, peer_dq = timed(peer, a.repeats)
    ours_s, ours_dq = timed(ours, a.repeats)
    # kvtune's dense forward and backward on the same problem: the gradients agree, so the
    # sampled error below is the estimator's own.
    dense_s, dense_dq = timed(lambda: ours("dense", "dense"), 1)
    print(f"n {keys.shape[0]} queries {q.shape[0]} k {a.k} nprobe {a.nprobe}: "
          f"PyTorch dense forward+backward {peer_s:.2f} s, kvtune gumbel({a.samples}) + "
          f"sampled({a.backward_samples}) {ours_s:.2f} s: {peer_s / ours_s:.2f}x; "
          f"kvtune dense + dense {dense_s:.2f} s")
    print(f"dQ relative RMS error against PyTorch: kvtune dense {rel(dense_dq, peer_dq):.2e}, "
          f"gumbel + sampled {rel(ours_dq, peer_dq):.3g}; RMS of PyTorch's dQ "
          f"{peer_dq.pow(2).mean().sqrt().item():.3g}, of the sampled error "
          f"{(ours_dq - peer_dq).pow(2).mean().sqrt().item():.3g}")


if __name__ == "__main__":
    main()
