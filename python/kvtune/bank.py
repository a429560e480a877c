"""kvtune.Bank: a memory bank (keys, values, slot ids, usage, metadata) and its faiss index.

A Python class over torch.classes.kvtune.Bank, which holds the C++ bank (bank/indexed_bank.h).
Files are the CLI's: an HDF5 bank (docs/bank-format.md) and the faiss index beside it.
"""

import os

import torch


class Bank:
    """One memory bank. Make one with Bank.create, Bank.load or Bank.from_tensors."""

    def __init__(self, handle):
        if not isinstance(handle, torch.ScriptObject):
            raise ValueError("kvtune.Bank is made with Bank.create, Bank.load or "
                             "Bank.from_tensors")
        self._c = handle

    # --- making and saving ------------------------------------------------------------------
    @classmethod
    def create(cls, n, key_dim, value_dim, seed=0, index="Flat", name="bank", trainable=False,
               value_std=0.02):
        """Random unit keys and small random values (Gaussian * value_std), slot ids 0..n-1 and
        usage 0: the same bank as `kvtune bank create --n N --key-dim D --value-dim V --seed S`
        (deterministic for the seed). `index` is a faiss factory string."""
        return cls(torch.classes.kvtune.Bank.create(
            int(n), int(key_dim), int(value_dim), int(seed), str(index), str(name),
            bool(trainable), float(value_std)))

    @classmethod
    def load(cls, path, nprobe=0, ef_search=0):
        """Reads and validates an HDF5 bank and the faiss index beside it (x.h5 -> x.faiss; built
        from the bank's index_factory when absent). A bad file raises RuntimeError with the
        reader's message (which file, what is wrong, the fix)."""
        return cls(torch.classes.kvtune.Bank.load(os.fspath(path), int(nprobe), int(ef_search)))

    @classmethod
    def from_tensors(cls, keys, values, slot_ids=None, usage=None, name="bank", index="Flat",
                     trainable=False):
        """A bank over existing tensors (float32 [N, d_k] unit keys, float32 [N, d_v] values;
        int64 slot ids default to 0..N-1, usage to 0). Contiguous tensors are shared, not
        copied. Invalid banks (non-unit keys, NaN, duplicate ids) raise ValueError."""
        return cls(torch.classes.kvtune.Bank.from_tensors(keys, values, slot_ids, usage,
                                                           str(name), str(index),
                                                           bool(trainable)))

    def save(self, path):
        """Writes the bank (HDF5) and its index beside it, each atomically, after the same
        validation as the CLI (keys moved off unit norm by an optimizer are refused: call
        after_update on the touched rows first)."""
        self._c.save(os.fspath(path))

    # --- the bank's tensors (the C++ bank's own memory) --------------------------------------
    @property
    def keys(self):
        """[N, key_dim] float32 unit rows; the index searches this memory (Flat: no copy)."""
        return self._c.keys()

    @property
    def values(self):
        """[N, value_dim] float32."""
        return self._c.values()

    @property
    def slot_ids(self):
        """[N] int64, unique, stable across merge and compact."""
        return self._c.slot_ids()

    @property
    def usage(self):
        """[N] int64: how often each slot was retrieved (record_usage adds to it)."""
        return self._c.usage()

    # --- search and updates -----------------------------------------------------------------
    def search(self, queries, k):
        """queries [..., key_dim] (normalized to unit rows) -> (scores [..., k] float32 cosines,
        ids [..., k] int64 rows of this bank), best first, through the bank's faiss index."""
        return self._c.search(queries, int(k))

    def after_update(self, rows=None):
        """After an optimizer moved keys: renormalizes those rows (all when None) to unit norm
        and rebuilds an approximate index when its rebuild interval is reached."""
        if rows is None:
            rows = torch.arange(len(self), dtype=torch.int64)
        self._c.after_update(rows)

    def rebuild_index(self):
        self._c.rebuild_index()

    def record_usage(self, rows):
        """Adds one to the usage of each row given (local row ids, -1 ignored)."""
        self._c.record_usage(rows)

    # --- metadata -----------------------------------------------------------------------------
    def __len__(self):
        return self._c.size()

    @property
    def key_dim(self):
        return self._c.key_dim()

    @property
    def value_dim(self):
        return self._c.value_dim()

    @property
    def name(self):
        return self._c.name()

    @name.setter
    def name(self, value):
        self._c.set_name(str(value))

    @property
    def trainable(self):
        """Saved in the file; setting it also sets requires_grad on keys and values."""
        return self._c.trainable()

    @trainable.setter
    def trainable(self, value):
        self._c.set_trainable(bool(value))

    @property
    def score_scale(self):
        """Scores are score_scale * cos(q, k); 0 means sqrt(key_dim)."""
        return self._c.score_scale()

    @score_scale.setter
    def score_scale(self, value):
        self._c.set_score_scale(float(value))

    @property
    def effective_scale(self):
        return self._c.effective_scale()

    @property
    def provenance(self):
        return self._c.provenance()

    @provenance.setter
    def provenance(self, text):
        self._c.set_provenance(str(text))

    @property
    def index_factory(self):
        return self._c.index_factory()

    @property
    def model_fingerprint(self):
        """The kvtune model the bank was trained for ("" when none: `kvtune eval --banks`
        attaches only banks whose fingerprint is the model's)."""
        return self._c.model_fingerprint()

    @property
    def memory_layer(self):
        return self._c.memory_layer()

    def set_model(self, fingerprint, memory_layer):
        """Records the kvtune model (its fingerprint) and memory layer the bank is for."""
        self._c.set_model(str(fingerprint), int(memory_layer))

    @property
    def format_version(self):
        return self._c.format_version()

    def __repr__(self):
        return (f"kvtune.Bank(name={self.name!r}, n={len(self)}, key_dim={self.key_dim}, "
                f"value_dim={self.value_dim}, index={self.index_factory!r}, "
                f"trainable={self.trainable})")
