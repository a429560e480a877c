# kvtune.Bank: tensors shared with the C++ bank, search through the index, and the same files as
# the CLI both ways, bit-exact (checked with h5py).
import json

import faiss
import h5py
import numpy as np
import torch

import kvtune

DATASETS = ("keys", "values", "slot_ids", "usage")


def h5_arrays(path):
    with h5py.File(path, "r") as f:
        return {name: f[name][...] for name in DATASETS}, dict(f.attrs)


def assert_same_bytes(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def test_create_matches_the_cli_bit_for_bit(tmp_path, cli):
    py = tmp_path / "py.h5"
    kvtune.Bank.create(300, 16, 8, seed=42, name="same").save(py)
    cli("bank", "create", "--n", 300, "--key-dim", 16, "--value-dim", 8, "--seed", 42,
        "--name", "same", "--out", tmp_path / "cli.h5")
    a, attrs_a = h5_arrays(py)
    b, attrs_b = h5_arrays(tmp_path / "cli.h5")
    for name in DATASETS:
        assert_same_bytes(a[name], b[name])
    for attr in ("format_version", "key_dim", "value_dim", "name", "index_factory"):
        assert attrs_a[attr] == attrs_b[attr]


def test_a_bank_written_by_python_reads_in_the_cli(tmp_path, cli):
    gen = torch.Generator().manual_seed(9)
    keys = torch.nn.functional.normalize(torch.randn(40, 8, generator=gen), dim=1)
    values = torch.randn(40, 5, generator=gen)
    slot_ids = torch.arange(100, 140)
    usage = torch.randint(0, 9, (40,), generator=gen)
    bank = kvtune.Bank.from_tensors(keys, values, slot_ids, usage, name="from_python")
    bank.score_scale = 3.5
    bank.provenance = json.dumps({"made_by": "test_bank.py"})
    path = tmp_path / "python.h5"
    bank.save(path)

    info = json.loads(cli("bank", "inspect", "--json", path).stdout)
    text = json.dumps(info)
    assert "from_python" in text and "40" in text
    arrays, attrs = h5_arrays(path)
    assert_same_bytes(arrays["keys"], keys.numpy())
    assert_same_bytes(arrays["values"], values.numpy())
    assert_same_bytes(arrays["slot_ids"], slot_ids.numpy())
    assert_same_bytes(arrays["usage"], usage.numpy())
    assert attrs["score_scale"] == 3.5 and attrs["name"] == "from_python"
    # The index beside it is a faiss index any faiss reader loads.
    index = faiss.read_index(str(tmp_path / "python.faiss"))
    assert index.ntotal == 40 and index.d == 8
    # The CLI queries it through that index.
    np.save(tmp_path / "q.npy", keys[:3].numpy())


def test_a_bank_written_by_the_cli_reads_in_python(tmp_path, cli):
    path = tmp_path / "cli.h5"
    cli("bank", "create", "--n", 257, "--key-dim", 12, "--value-dim", 7, "--seed", 3,
        "--index", "HNSW32", "--out", path)
    bank = kvtune.Bank.load(path)
    arrays, attrs = h5_arrays(path)
    assert len(bank) == 257 and bank.key_dim == 12 and bank.value_dim == 7
    assert bank.name == "cli" and bank.index_factory == "HNSW32"
    for name in DATASETS:
        assert_same_bytes(getattr(bank, name).numpy(), arrays[name])
    # Saved again from Python: the same datasets, byte for byte.
    bank.save(tmp_path / "again.h5")
    again, _ = h5_arrays(tmp_path / "again.h5")
    for name in DATASETS:
        assert_same_bytes(again[name], arrays[name])
    cli("bank", "inspect", tmp_path / "again.h5")


def test_tensors_share_memory_with_the_bank():
    bank = kvtune.Bank.create(20, 4, 3, seed=1)
    assert bank.keys.data_ptr() == bank.keys.data_ptr()
    with torch.no_grad():
        bank.values[3] = 7.0
        bank.usage[5] = 11
    assert float(bank.values[3, 0]) == 7.0 and int(bank.usage[5]) == 11
    # The Flat index searches the bank's own key buffer: an in-place change is seen at once.
    target = torch.nn.functional.normalize(torch.tensor([[1.0, 2.0, -1.0, 0.5]]), dim=1)
    with torch.no_grad():
        bank.keys[17] = target[0]
    scores, ids = bank.search(target, 1)
    assert int(ids[0, 0]) == 17 and abs(float(scores[0, 0]) - 1.0) < 1e-6


def test_search_equals_brute_force():
    bank = kvtune.Bank.create(500, 16, 4, seed=2)
    queries = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(4))
    scores, ids = bank.search(queries, 5)
    assert scores.shape == (2, 3, 5) and ids.shape == (2, 3, 5) and ids.dtype == torch.int64
    qn = torch.nn.functional.normalize(queries, dim=-1)
    ref = (qn @ bank.keys.t()).topk(5, dim=-1)
    assert torch.equal(ids, ref.indices)
    assert torch.allclose(scores, ref.values, atol=1e-6)


def test_metadata_round_trips(tmp_path):
    bank = kvtune.Bank.create(10, 4, 3, name="meta", trainable=True)
    assert bank.trainable and bank.keys.requires_grad and bank.values.requires_grad
    bank.set_model("0123456789abcdef", 0)
    bank.save(tmp_path / "m.h5")
    back = kvtune.Bank.load(tmp_path / "m.h5")
    assert back.name == "meta" and back.trainable
    assert back.model_fingerprint == "0123456789abcdef" and back.memory_layer == 0
    assert back.format_version == 1 and back.effective_scale == 2.0
    assert "Bank.create" in back.provenance
    assert "meta" in repr(back)


def test_usage_is_recorded():
    bank = kvtune.Bank.create(10, 4, 3)
    bank.record_usage(torch.tensor([1, 1, 4, -1]))
    assert bank.usage.tolist() == [0, 2, 0, 0, 1, 0, 0, 0, 0, 0]
