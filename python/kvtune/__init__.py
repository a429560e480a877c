"""kvtune from PyTorch: the kNN attention op, memory banks and the memory layer.

A thin layer over kvtune's C++ library (the same code the ``kvtune`` program runs), loaded as a
torch extension: ``torch.ops.kvtune.knn_attention`` and ``torch.classes.kvtune.Bank``.
See docs/python.md.
"""

import os as _os

import torch as _torch

_here = _os.path.dirname(_os.path.abspath(__file__))
_library = _os.path.join(_here, "_kvtune.so")
if not _os.path.exists(_library):
    raise ImportError(
        f"kvtune: {_library} is missing: build the package first (tools/build builds "
        "build/python/kvtune when /usr/bin/python3 has torch), then "
        "PYTHONPATH=build/python /usr/bin/python3")
_torch.ops.load_library(_library)

from .attention import knn_attention  # noqa: E402
from .bank import Bank  # noqa: E402
from . import nn  # noqa: E402


def model_fingerprint(model_dir):
    """The fingerprint of the kvtune model folder `model_dir` (docs/model.md). A bank made for
    that model records it with ``bank.set_model(kvtune.model_fingerprint(dir), layer)``, and
    ``kvtune eval --model DIR --banks bank.h5`` then attaches the bank; another model refuses
    it. A missing or invalid folder raises RuntimeError with the C++ message."""
    return _torch.ops.kvtune.model_fingerprint(_os.fspath(model_dir))

__version__ = "@PROJECT_VERSION@"
__all__ = ["knn_attention", "Bank", "nn", "model_fingerprint", "__version__"]
