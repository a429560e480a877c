"""The plain-PyTorch reference of kNN attention the tests compare kvtune against: softmax of
scale * cos(q, k) over every key of every bank, or over a given set of global ids. Written from
the definition (docs/design.md), not from kvtune's code."""

import math

import torch


def reference_attention(queries, keys, values, scale=0.0, ids=None):
    """queries [..., dk]; keys, values: lists of [N_b, d] tensors. ids [..., k] (global, -1 for
    none): the softmax runs over those keys only (the top-k set); None: over every key."""
    dk = queries.shape[-1]
    scale = scale or math.sqrt(dk)
    q = queries / queries.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    k = torch.cat(list(keys), 0)
    v = torch.cat(list(values), 0)
    s = scale * (q @ k.t())
    if ids is not None:
        n = s.shape[-1]
        # -1 (no result) goes to an extra column that is dropped.
        where = torch.where(ids >= 0, ids, torch.full_like(ids, n))
        keep = torch.zeros(s.shape[:-1] + (n + 1,), dtype=torch.bool)
        keep.scatter_(-1, where, True)
        s = s.masked_fill(~keep[..., :n], float("-inf"))
    return torch.softmax(s, dim=-1) @ v
