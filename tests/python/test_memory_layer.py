# kvtune.nn.MemoryLayer: the projections around the op, frozen banks stay frozen, trainable banks
# are Parameters that share the bank's memory and get sparse gradients.
import pytest
import torch

import kvtune
from reference import reference_attention


def layer_and_banks(seed=0):
    torch.manual_seed(seed)
    base = kvtune.Bank.create(64, 8, 6, seed=1, name="base")
    domain = kvtune.Bank.create(32, 8, 6, seed=2, name="domain", value_std=0.5)
    layer = kvtune.nn.MemoryLayer(16, 2, 8, 6, banks=[base, domain], k=5,
                                  trainable=[False, True])
    return layer, base, domain


def test_forward_is_projection_op_projection():
    layer, base, domain = layer_and_banks()
    x = torch.randn(3, 7, 16)
    y = layer(x)
    assert y.shape == (3, 7, 16)
    ids = layer.last_ids
    assert ids.shape == (3, 7, 2, 5)
    q = layer.query(x).reshape(3, 7, 2, 8).double()
    att = reference_attention(q, [base.keys.double(), domain.keys.double()],
                              [base.values.double(), domain.values.double()], ids=ids)
    ref = layer.output(att.float().reshape(3, 7, 12))
    assert torch.allclose(y, ref, atol=1e-5)


def test_trainable_banks_are_parameters_sharing_memory_and_frozen_banks_stay_frozen():
    layer, base, domain = layer_and_banks()
    names = dict(layer.named_parameters())
    assert "bank1_values" in names and "bank1_keys" in names
    assert not any(n.startswith("bank0_") for n in names)
    assert names["bank1_values"].data_ptr() == domain.values.data_ptr()
    assert names["bank1_keys"].data_ptr() == domain.keys.data_ptr()

    base_keys, base_values = base.keys.clone(), base.values.clone()
    domain_values = domain.values.clone()
    bank_params = [names["bank1_values"], names["bank1_keys"]]
    dense_params = [p for n, p in names.items() if not n.startswith("bank")]
    sparse_opt = torch.optim.SparseAdam(bank_params, lr=0.05)
    opt = torch.optim.Adam(dense_params, lr=1e-3)
    x = torch.randn(4, 5, 16)
    for _ in range(3):
        sparse_opt.zero_grad()
        opt.zero_grad()
        layer(x).pow(2).mean().backward()
        assert names["bank1_values"].grad.is_sparse
        sparse_opt.step()
        opt.step()
        layer.after_step()
    # The frozen bank is byte-identical; the domain bank's own memory was trained.
    assert base.keys.numpy().tobytes() == base_keys.numpy().tobytes()
    assert base.values.numpy().tobytes() == base_values.numpy().tobytes()
    assert not torch.equal(domain.values, domain_values)
    # after_step kept the trained keys unit.
    assert torch.allclose(domain.keys.norm(dim=1), torch.ones(32), atol=1e-5)


def test_set_trainable_and_usage():
    layer, base, domain = layer_and_banks()
    layer.set_trainable(1, False)
    assert not any(n.startswith("bank") for n, _ in layer.named_parameters())
    layer.set_trainable(0, True)
    assert {n for n, _ in layer.named_parameters() if n.startswith("bank")} == {
        "bank0_keys", "bank0_values"}
    layer.track_usage = True
    layer(torch.randn(2, 16))
    assert int(base.usage.sum() + domain.usage.sum()) == 2 * 2 * 5


def test_converting_the_layer_is_refused_with_a_message():
    layer, _, _ = layer_and_banks()
    layer.double()
    with pytest.raises(ValueError, match="is not the memory of bank 'domain'"):
        layer(torch.randn(2, 16, dtype=torch.float64))


def test_bad_arguments():
    base = kvtune.Bank.create(8, 4, 3)
    with pytest.raises(ValueError, match="banks is empty"):
        kvtune.nn.MemoryLayer(8, 2, 4, 3, banks=[])
    with pytest.raises(ValueError, match="one bool per bank"):
        kvtune.nn.MemoryLayer(8, 2, 4, 3, banks=[base], trainable=[True, False])
    with pytest.raises(ValueError, match="heads must be a positive int"):
        kvtune.nn.MemoryLayer(8, 0, 4, 3, banks=[base])
    layer = kvtune.nn.MemoryLayer(8, 2, 4, 3, banks=[base], k=3)
    with pytest.raises(ValueError, match="expected d_model = 8"):
        layer(torch.randn(2, 9))
