"""kvtune.nn.MemoryLayer: the memory layer of kvtune's models (model/memory_layer.h) as a
torch.nn.Module: a multi-head query projection, kNN attention over the listed banks (the C++ op,
each bank searched through its own faiss index), the heads concatenated, an output projection.
"""

import torch
from torch import nn

from .attention import knn_attention
from .bank import Bank


class MemoryLayer(nn.Module):
    """input [..., d_model] -> output [..., d_model].

    banks: kvtune.Bank objects with key_dim and value_dim of this layer; global ids follow
      their order. trainable: one bool per bank (default: each bank's own `trainable` flag).
      A trainable bank's values (and keys, unless train_keys=False) are Parameters named
      bank<i>_values / bank<i>_keys that share memory with the bank: an optimizer step updates
      the bank itself, and bank.save writes what was trained. Frozen banks get no gradient and
      are not parameters: they stay byte-identical.
    k, estimator, backward, scale and the other keywords: those of kvtune.knn_attention.
    Key and value gradients are sparse (torch.optim.SparseAdam, SGD); after an optimizer step
    that moved keys, call after_step() to renormalize them.
    """

    def __init__(self, d_model, heads, key_dim, value_dim, banks, k=32, trainable=None,
                 train_keys=True, estimator="topk", backward="exact", scale=0.0,
                 track_usage=False, **attention_options):
        super().__init__()
        for what, v in (("d_model", d_model), ("heads", heads), ("key_dim", key_dim),
                        ("value_dim", value_dim), ("k", k)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"MemoryLayer: {what} must be a positive int, got {v!r}")
        banks = list(banks)
        if not banks:
            raise ValueError("MemoryLayer: banks is empty: give at least one kvtune.Bank")
        for i, b in enumerate(banks):
            if not isinstance(b, Bank):
                raise ValueError(f"MemoryLayer: banks[{i}] is a {type(b).__name__}, expected a "
                                 "kvtune.Bank")
            if b.key_dim != key_dim or b.value_dim != value_dim:
                raise ValueError(
                    f"MemoryLayer: bank {b.name!r} has key_dim {b.key_dim} and value_dim "
                    f"{b.value_dim} but the layer has {key_dim} and {value_dim}: use a bank "
                    "made for this layer")
        if trainable is None:
            trainable = [b.trainable for b in banks]
        trainable = list(trainable)
        if len(trainable) != len(banks):
            raise ValueError(f"MemoryLayer: trainable has {len(trainable)} entries but there "
                             f"are {len(banks)} banks: one bool per bank")
        self.d_model, self.heads, self.key_dim, self.value_dim = d_model, heads, key_dim, value_dim
        self.k = k
        self.estimator, self.backward, self.scale = estimator, backward, scale
        self.attention_options = dict(attention_options)
        self.train_keys = train_keys
        self.track_usage = track_usage
        self.query = nn.Linear(d_model, heads * key_dim, bias=False)
        self.output = nn.Linear(heads * value_dim, d_model)
        self._banks = banks
        self._trainable = [False] * len(banks)
        for i, on in enumerate(trainable):
            self.set_trainable(i, bool(on))
        self.last_ids = None

    @property
    def banks(self):
        return list(self._banks)

    def is_trainable(self, i):
        return self._trainable[i]

    def set_trainable(self, i, on):
        """Makes bank i trainable (its values, and keys with train_keys, become Parameters that
        share the bank's memory) or frozen (no parameters, no gradient)."""
        bank = self._banks[i]
        for part in ("keys", "values"):
            name = f"bank{i}_{part}"
            if name in self._parameters:
                del self._parameters[name]
            if on and (part == "values" or self.train_keys):
                self.register_parameter(name, nn.Parameter(getattr(bank, part)))
        self._trainable[i] = on

    def _tensors(self, i):
        bank = self._banks[i]
        keys = self._parameters.get(f"bank{i}_keys")
        values = self._parameters.get(f"bank{i}_values")
        # detach(): the same memory, without a gradient (the bank's own tensors may require
        # one when its file says trainable).
        return (keys if keys is not None else bank.keys.detach(),
                values if values is not None else bank.values.detach())

    def forward(self, x):
        if x.shape[-1] != self.d_model:
            raise ValueError(f"MemoryLayer: input has last dim {x.shape[-1]}, expected d_model "
                             f"= {self.d_model}")
        lead = tuple(x.shape[:-1])
        q = self.query(x).reshape(*lead, self.heads, self.key_dim)
        keys, values = zip(*(self._tensors(i) for i in range(len(self._banks))))
        out, ids, _ = knn_attention(q, list(keys), list(values), self.k,
                                    estimator=self.estimator, backward=self.backward,
                                    scale=self.scale, banks=self._banks,
                                    **self.attention_options)
        self.last_ids = ids
        if self.track_usage:
            self.record_usage(ids)
        return self.output(out.reshape(*lead, self.heads * self.value_dim))

    def bank_rows(self, ids, i):
        """The local rows of bank i among global ids (any shape), sorted and distinct."""
        offset = sum(len(b) for b in self._banks[:i])
        flat = ids.reshape(-1)
        inside = (flat >= offset) & (flat < offset + len(self._banks[i]))
        return torch.unique(flat[inside] - offset)

    def record_usage(self, ids):
        with torch.no_grad():
            for i, bank in enumerate(self._banks):
                offset = sum(len(b) for b in self._banks[:i])
                flat = ids.reshape(-1)
                inside = (flat >= offset) & (flat < offset + len(bank))
                bank.record_usage(flat[inside] - offset)

    def after_step(self):
        """Call after optimizer.step() (before zero_grad): renormalizes the keys that the step
        moved (the rows of their sparse gradient; every row for a dense one) to unit norm."""
        for i, bank in enumerate(self._banks):
            p = self._parameters.get(f"bank{i}_keys")
            if p is None or p.grad is None:
                continue
            if p.grad.is_sparse:
                rows = torch.unique(p.grad.coalesce().indices()[0])
            else:
                rows = torch.arange(len(bank), dtype=torch.int64)
            bank.after_update(rows)

    def extra_repr(self):
        banks = ", ".join(f"{b.name}{'*' if t else ''}" for b, t in zip(self._banks,
                                                                         self._trainable))
        return (f"d_model={self.d_model}, heads={self.heads}, key_dim={self.key_dim}, "
                f"value_dim={self.value_dim}, k={self.k}, estimator={self.estimator!r}, "
                f"banks=[{banks}] (* trainable)")
