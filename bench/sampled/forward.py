#!/usr/bin/python3
"""Forward passes of kNN attention over a bank, timed in one process (docs/benchmarks.md,
"Sampled attention"): PyTorch dense softmax attention (keys and values read once per chunk of
256 queries, bench/sampled/peer.py's arithmetic) against kvtune's op with each estimator through
the bank's own index, the bank loaded once, so loading is out of every figure.

  tools/python bench/sampled/forward.py BANK.h5 QUERIES.h5 [--k K] [--nprobe P]
      [--samples 32] [--tail-samples 64] [--repeats 3] [--threads 2]

Prints, per method, the minimum over repeats of the forward time, its ratio to PyTorch's, and
the RMS error of the output against PyTorch's over the values' RMS.
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
    p.add_argument("--tail-samples", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    keys, values, q = read_inputs(a.bank, a.queries)
    scale = math.sqrt(keys.shape[1])

    @torch.no_grad()
    def peer():
        outs = []
        for i in range(0, q.shape[0], 256):
            qn = torch.nn.functional.normalize(q[i:i + 256], dim=-1)
            outs.append(torch.softmax(scale * (qn @ keys.t()), dim=-1) @ values)
        return torch.cat(outs)

    bank = kvtune.Bank.load(a.bank, nprobe=a.nprobe)

    @torch.no_grad()
    def ours(estimator, k):
        out, _, _ = kvtune.knn_attention(q, [bank.keys], [bank.values], k, estimator=estimator,
                                         samples=a.samples, tail_samples=a.tail_samples, seed=1,
                                         banks=[bank])
        return out

    v_rms = values.double().pow(2).mean().sqrt().item()
    peer_s, ref = timed(peer, a.repeats)
    print(f"n {keys.shape[0]} queries {q.shape[0]} k {a.k} nprobe {a.nprobe} threads {a.threads}")
    print(f"{'PyTorch dense':24s} {peer_s:7.3f} s   1.00x")
    for name, estimator, k in (("kvtune dense", "dense", 32), ("kvtune topk", "topk", a.k),
                               (f"kvtune gumbel({a.samples})", "gumbel", a.k),
                               (f"kvtune topk+tail({a.tail_samples})", "topk+tail", a.k)):
        s, out = timed(lambda: ours(estimator, k), a.repeats)
        err = (out.double() - ref.double()).pow(2).mean().sqrt().item() / v_rms
        print(f"{name:24s} {s:7.3f} s {peer_s / s:6.2f}x   err {err:.3g}")


if __name__ == "__main__":
    main()
