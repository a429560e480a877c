#!/usr/bin/env python3
"""PyTorch baselines of the memory-layer benchmark (docs/gpu.md), run on the GPU machine.

Memory layer: M queries x H heads (R = M*H rows, d_k = d_v = 128) against one bank of N keys,
top-k attention with k = 32, forward + backward. Baselines, each timed with CUDA events (warm-up,
then the median of repeats):
  mm_topk  bf16 scores q @ K^T in key chunks, top-k per chunk, merged; then gather, softmax,
           aggregate; backward through autograd (sparse by construction: gather / index_add).
  sdpa     dense softmax attention over all N keys (F.scaled_dot_product_attention, bf16),
           forward + backward.
  mm_floor the bf16 score matmul alone, in the same chunks (2 R N d_k FLOP): no top-k method
           that scores every key can beat it.
Writes a JSON list of {method, N, ms, ...}; prints a table last. No figures are claimed until
this has run on a GPU.
"""
import argparse
import json
import math

import torch
import torch.nn.functional as F


def timed(fn, warmup=2, repeats=5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def chunked_topk(q, keys, k, scale, chunk):
    """Best k of scale * q @ keys^T, in key chunks: (scores [R, k], ids [R, k])."""
    best_s, best_i = None, None
    for start in range(0, keys.shape[0], chunk):
        s = (q @ keys[start:start + chunk].T).float() * scale
        cs, ci = s.topk(min(k, s.shape[1]), dim=1)
        ci = ci + start
        if best_s is None:
            best_s, best_i = cs, ci
        else:
            ms, mi = torch.cat([best_s, cs], 1).topk(k, dim=1)
            best_s, best_i = ms, torch.cat([best_i, ci], 1).gather(1, mi)
    return best_s, best_i


def mm_topk_step(q, keys, values, k, scale, chunk, dout):
    with torch.no_grad():
        _, ids = chunked_topk(q.detach(), keys.detach(), k, scale, chunk)
    kk = keys[ids]            # [R, k, d]
    vv = values[ids]
    s = scale * torch.einsum("rd,rkd->rk", q.float(), kk.float())
    p = torch.softmax(s, dim=1)
    out = torch.einsum("rk,rkd->rd", p, vv.float())
    out.backward(dout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default="baselines.json")
    ap.add_argument("--sizes", default="16,20,22", help="log2 N values")
    ap.add_argument("--queries", type=int, default=16384)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("-k", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=1 << 15, help="keys per score chunk")
    args = ap.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    M, H, d, k = args.queries, args.heads, args.dim, args.k
    R, scale = M * H, math.sqrt(d)
    print(f"device {torch.cuda.get_device_name()} torch {torch.__version__} R={R} d={d} k={k}")
    rows = []
    for logn in [int(x) for x in args.sizes.split(",")]:
        N = 1 << logn
        keys = F.normalize(torch.randn(N, d, device=dev), dim=1).to(torch.bfloat16)
        values = torch.randn(N, d, device=dev, dtype=torch.bfloat16)
        q = F.normalize(torch.randn(R, d, device=dev), dim=1).to(torch.bfloat16)
        dout = torch.randn(R, d, device=dev)

        def floor():
            for start in range(0, N, args.chunk):
                q @ keys[start:start + args.chunk].T
        ms = timed(floor)
        tflops = 2 * R * N * d / ms / 1e9
        rows.append({"method": "mm_floor", "N": N, "ms": ms, "tflops": tflops})

        qg, kg, vg = (t.clone().requires_grad_(True) for t in (q, keys, values))
        ms = timed(lambda: mm_topk_step(qg, kg, vg, k, scale, args.chunk, dout))
        rows.append({"method": "mm_topk", "N": N, "ms": ms})

        # Dense SDPA: [1, H, M, d] queries, the bank shared by the heads.
        qs = q.view(M, H, d).transpose(0, 1).unsqueeze(0).clone().requires_grad_(True)
        ks = kg.detach().expand(H, N, d).unsqueeze(0).clone().requires_grad_(True)
        vs = vg.detach().expand(H, N, d).unsqueeze(0).clone().requires_grad_(True)
        do = dout.to(torch.bfloat16).view(M, H, d).transpose(0, 1).unsqueeze(0)

        def sdpa():
            o = F.scaled_dot_product_attention(qs, ks, vs, scale=scale)
            o.backward(do)
        try:
            ms = timed(sdpa, warmup=1, repeats=3)
        except RuntimeError as e:  # out of memory at large N
            ms = float("nan")
            print(f"sdpa N={N}: {e}")
        rows.append({"method": "sdpa", "N": N, "ms": ms})
        del qs, ks, vs, qg, kg, vg
        torch.cuda.empty_cache()
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(f"{'method':10} {'N':>9} {'ms':>10}")
    for r in rows:
        print(f"{r['method']:10} {r['N']:>9} {r['ms']:>10.2f}")


if __name__ == "__main__":
    main()
