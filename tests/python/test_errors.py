# Bad input raises a Python exception naming the problem (ValueError for bad arguments,
# RuntimeError for bad files) and the interpreter lives on.
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

import kvtune


def banks(dtype=torch.float32):
    gen = torch.Generator().manual_seed(5)
    k = torch.randn(10, 4, generator=gen, dtype=dtype)
    k = k / k.norm(dim=1, keepdim=True)
    return [k], [torch.randn(10, 3, generator=gen, dtype=dtype)]


def q(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


@pytest.mark.parametrize("queries, keys, values, match", [
    (q(2, 5), None, None, "key dim 4 but the queries have d_k = 5"),
    (q(2, 0), None, None, "d_k >= 1"),
    (q(2, 4), [torch.randn(10)], None, "must be 2-D"),
    (q(2, 4), None, [torch.randn(9, 3)], "10 keys but 9 values"),
    (q(2, 4), [], [], "empty list"),
    (q(2, 4), None, [], "one key and one value tensor per bank"),
])
def test_bad_shapes(queries, keys, values, match):
    k, v = banks()
    with pytest.raises(ValueError, match=match):
        kvtune.knn_attention(queries, k if keys is None else keys, v if values is None else values,
                             3)


def test_a_single_tensor_instead_of_a_list():
    k, v = banks()
    with pytest.raises(ValueError, match="list of tensors"):
        kvtune.knn_attention(q(2, 4), k[0], v, 3)


def test_wrong_dtypes():
    k, v = banks()
    with pytest.raises(ValueError, match="float32 or float64"):
        kvtune.knn_attention(q(2, 4, dtype=torch.float16), k, v, 3)
    with pytest.raises(ValueError, match="convert one side"):
        kvtune.knn_attention(q(2, 4, dtype=torch.float64), k, v, 3)
    with pytest.raises(ValueError):
        kvtune.knn_attention(q(2, 4), [k[0].to(torch.int64)], v, 3)
    with pytest.raises(ValueError, match="float32"):
        kvtune.Bank.from_tensors(k[0].double(), v[0])


def test_wrong_devices():
    k, v = banks()
    meta = torch.empty(2, 4, device="meta")
    with pytest.raises(ValueError, match="device meta"):
        kvtune.knn_attention(meta, k, v, 3)
    with pytest.raises(ValueError, match=r"keys\[0\] is on device meta"):
        kvtune.knn_attention(q(2, 4), [torch.empty(10, 4, device="meta")], v, 3)
    bank = kvtune.Bank.create(8, 4, 3)
    with pytest.raises(ValueError, match="device meta"):
        bank.search(meta, 2)
    if not torch.cuda.is_available():
        with pytest.raises((RuntimeError, AssertionError)):
            torch.empty(1, device="cuda")


def test_sparse_and_non_contiguous_inputs():
    k, v = banks()
    with pytest.raises(ValueError, match="strided"):
        kvtune.knn_attention(q(2, 4).to_sparse(), k, v, 3)
    with pytest.raises(ValueError, match="contiguous"):
        kvtune.knn_attention(q(2, 4), [torch.randn(4, 10).t()], v, 3)


@pytest.mark.parametrize("k", [0, -1])
def test_k_out_of_range(k):
    keys, values = banks()
    with pytest.raises(ValueError, match="k >= 1"):
        kvtune.knn_attention(q(2, 4), keys, values, k)
    bank = kvtune.Bank.create(8, 4, 3)
    with pytest.raises(ValueError, match="1 <= k <= 8"):
        bank.search(q(2, 4), k)
    with pytest.raises(ValueError, match="1 <= k <= 8"):
        bank.search(q(2, 4), 9)


def test_bad_options():
    k, v = banks()
    with pytest.raises(ValueError, match="unknown estimator"):
        kvtune.knn_attention(q(2, 4), k, v, 3, estimator="softmax")
    with pytest.raises(ValueError, match="unknown backward"):
        kvtune.knn_attention(q(2, 4), k, v, 3, backward="approx")
    with pytest.raises(ValueError, match="unknown estimator"):
        torch.ops.kvtune.knn_attention(q(2, 4), k, v, 3, estimator="softmax")
    with pytest.raises(ValueError, match="scale must be finite"):
        kvtune.knn_attention(q(2, 4), k, v, 3, scale=-1.0)
    with pytest.raises(ValueError, match="groups"):
        kvtune.knn_attention(q(2, 4), k, v, 3, estimator="gumbel", samples=2, groups=4)
    with pytest.raises(ValueError, match="learned_scale must be finite and > 0"):
        kvtune.knn_attention(q(2, 4), k, v, 3, learned_scale=torch.tensor(-1.0))


def test_keys_that_are_not_the_banks_memory():
    bank = kvtune.Bank.create(8, 4, 3)
    with pytest.raises(ValueError, match="is not the memory of bank 'bank'"):
        kvtune.knn_attention(q(2, 4), [bank.keys.clone()], [bank.values], 3, banks=[bank])


def test_bad_bank_arguments():
    with pytest.raises(ValueError, match="n is 0"):
        kvtune.Bank.create(0, 4, 3)
    with pytest.raises(ValueError, match="key_dim 0"):
        kvtune.Bank.create(5, 0, 3)
    with pytest.raises(ValueError):
        kvtune.Bank.create(5, 4, 3, index="NoSuchIndex")
    with pytest.raises(ValueError, match="norm"):
        kvtune.Bank.from_tensors(torch.ones(3, 4), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="MemoryLayer: bank 'bank' has key_dim 4"):
        kvtune.nn.MemoryLayer(8, 2, 5, 3, banks=[kvtune.Bank.create(5, 4, 3)])


def write_bank_h5(path, keys, n=6, value_dim=3):
    with h5py.File(path, "w") as f:
        f["keys"] = keys
        f["values"] = np.zeros((n, value_dim), dtype=np.float32)
        f["slot_ids"] = np.arange(n, dtype=np.int64)
        f["usage"] = np.zeros(n, dtype=np.int64)
        f.attrs["format_version"] = np.int32(1)
        f.attrs["key_dim"] = keys.shape[1]
        f.attrs["value_dim"] = value_dim


def test_corrupt_files(tmp_path):
    with pytest.raises(RuntimeError, match="does not exist|cannot|no such|not found"):
        kvtune.Bank.load(tmp_path / "missing.h5")

    text = tmp_path / "text.h5"
    text.write_text("this is not a bank\n")
    with pytest.raises(RuntimeError, match="not an HDF5 file"):
        kvtune.Bank.load(text)

    good = tmp_path / "good.h5"
    kvtune.Bank.create(50, 8, 4, seed=1).save(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match="truncated.h5"):
        kvtune.Bank.load(truncated)

    keys = np.ones((6, 4), dtype=np.float32)
    write_bank_h5(tmp_path / "nonunit.h5", keys)
    with pytest.raises(RuntimeError, match="expected unit norm"):
        kvtune.Bank.load(tmp_path / "nonunit.h5")

    write_bank_h5(tmp_path / "f64.h5", np.eye(6, 4))
    with pytest.raises(RuntimeError, match="float64, expected float32"):
        kvtune.Bank.load(tmp_path / "f64.h5")

    # A foreign index beside a good bank.
    (tmp_path / "good.faiss").write_bytes(b"garbage")
    with pytest.raises(RuntimeError):
        kvtune.Bank.load(good)


def test_saving_keys_moved_off_unit_norm_is_refused(tmp_path):
    bank = kvtune.Bank.create(6, 4, 3)
    with torch.no_grad():
        bank.keys[2] *= 3
    with pytest.raises(RuntimeError, match="unit norm"):
        bank.save(tmp_path / "b.h5")
    assert not (tmp_path / "b.h5").exists()
    bank.after_update(torch.tensor([2]))
    bank.save(tmp_path / "b.h5")


def test_the_interpreter_survives_every_error(tmp_path):
    """A fresh interpreter hits every kind of bad input, then exits normally."""
    (tmp_path / "bad.h5").write_text("x")
    script = f"""
import torch, kvtune
k = torch.nn.functional.normalize(torch.randn(10, 4), dim=1)
v = torch.randn(10, 3)
calls = [
    lambda: kvtune.knn_attention(torch.randn(2, 5), [k], [v], 3),
    lambda: kvtune.knn_attention(torch.randn(2, 4).half(), [k], [v], 3),
    lambda: kvtune.knn_attention(torch.empty(2, 4, device="meta"), [k], [v], 3),
    lambda: kvtune.knn_attention(torch.randn(2, 4), [k], [v], 0),
    lambda: kvtune.knn_attention(torch.randn(2, 4), [k[:, :2]], [v], 3),
    lambda: kvtune.Bank.load({str(tmp_path / 'bad.h5')!r}),
    lambda: kvtune.Bank.create(-3, 4, 3),
]
for c in calls:
    try:
        c()
    except (ValueError, RuntimeError):
        pass
    else:
        raise SystemExit("no exception")
print("alive")
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "alive"
