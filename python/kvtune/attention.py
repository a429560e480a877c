"""kvtune.knn_attention: the C++ op (torch.ops.kvtune.knn_attention) with Python defaults."""

import torch

ESTIMATORS = ("topk", "dense", "gumbel", "topk+tail")
BACKWARDS = ("exact", "sampled", "dense")


def _tensor_list(name, xs):
    if isinstance(xs, torch.Tensor):
        raise ValueError(f"{name} must be a list of tensors, one per bank (got one tensor: "
                         f"pass [{name}])")
    try:
        xs = list(xs)
    except TypeError:
        raise ValueError(f"{name} must be a list of tensors, one per bank, got "
                         f"{type(xs).__name__}") from None
    for i, x in enumerate(xs):
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name}[{i}] is a {type(x).__name__}, expected a tensor")
    return xs


def knn_attention(queries, keys, values, k, estimator="topk", backward="exact", scale=0.0,
                  samples=128, groups=4, tail_samples=64, backward_samples=32, seed=0,
                  learned_scale=None, banks=None, names=None):
    """kNN attention of ``queries`` over one or more banks.

    queries: [..., d_k] float32 or float64 (normalized inside: scores are scale * cos(q, k)).
    keys, values: lists, one [N_b, d_k] and one [N_b, d_v] tensor per bank (same dtype as the
      queries, contiguous, keys of unit rows). Bank b's row i has the global id offset(b) + i,
      offset(b) = N_0 + ... + N_{b-1}.
    k: the number of keys kept per query over all banks (k above every key is allowed; the
      missing results have id -1 and score -inf).
    estimator: "topk" | "dense" | "gumbel" | "topk+tail"; backward: "exact" | "sampled" |
      "dense" (docs/python.md, docs/sampled-attention.md).
    scale: 0 means sqrt(d_k). samples, groups: "gumbel"; tail_samples: "topk+tail";
      backward_samples: the "sampled" backward; seed: the sampled estimators and backward.
    learned_scale: an optional positive 0-dim tensor used as the scale, with its gradient.
    banks: optional list with one kvtune.Bank (or None) per bank: its index does the search,
      and keys[b] must be that bank's memory (bank.keys or a Parameter made from it).

    Returns (output [..., d_v], ids [..., k] int64, scores [..., k]). Gradients reach the
    queries and every key and value tensor that requires grad; those of keys and values are
    sparse COO tensors (rows that were retrieved) with backward "exact" or "sampled", dense
    with backward "dense" (docs/python.md, "Gradients").
    """
    if not isinstance(queries, torch.Tensor):
        raise ValueError(f"queries must be a tensor, got {type(queries).__name__}")
    keys = _tensor_list("keys", keys)
    values = _tensor_list("values", values)
    if isinstance(k, bool) or not isinstance(k, int):
        raise ValueError(f"k must be an int, got {type(k).__name__}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}: choose one of {', '.join(ESTIMATORS)}")
    if backward not in BACKWARDS:
        raise ValueError(f"unknown backward {backward!r}: choose one of {', '.join(BACKWARDS)}")
    handles = None
    if banks is not None:
        handles = [None if b is None else b._c for b in banks]
    if names is not None:
        names = [str(n) for n in names]
    output, ids, scores = torch.ops.kvtune.knn_attention(
        queries, keys, values, k, estimator, backward, float(scale), int(samples), int(groups),
        int(tail_samples), int(backward_samples), int(seed), learned_scale, handles, names)
    return output, ids, scores
