# kvtune.knn_attention against the plain-PyTorch reference (reference.py), in float64: forward,
# gradcheck and sparse gradients, with two banks, one frozen and one trainable.
import torch

import kvtune
from reference import reference_attention

# Declared once: float64 results against the reference.
RTOL64 = 1e-12
SEED = 20261201


def two_banks(gen, n0=13, n1=11, dk=6, dv=5, dtype=torch.float64):
    """A frozen bank (no grad) and a trainable one (keys and values require grad); unit keys."""
    def unit(n):
        k = torch.randn(n, dk, generator=gen, dtype=dtype)
        return k / k.norm(dim=1, keepdim=True)

    k0, v0 = unit(n0), torch.randn(n0, dv, generator=gen, dtype=dtype)
    k1 = unit(n1).requires_grad_()
    v1 = torch.randn(n1, dv, generator=gen, dtype=dtype).requires_grad_()
    return k0, v0, k1, v1


def queries(gen, shape=(2, 3, 6), dtype=torch.float64):
    return torch.randn(*shape, generator=gen, dtype=dtype).requires_grad_()


class Densify(torch.autograd.Function):
    """Identity whose backward hands on a sparse gradient as the same values in dense layout:
    gradcheck compares Jacobians of dense inputs and refuses sparse gradients for them."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g.to_dense() if g.is_sparse else g


def assert_close(a, b, rtol=RTOL64):
    scale = max(b.abs().max().item(), 1e-300)
    err = (a - b).abs().max().item()
    assert err <= rtol * scale, f"max error {err:.3e} > {rtol:.0e} * {scale:.3e}"


def test_topk_with_every_key_equals_dense_and_reference():
    gen = torch.Generator().manual_seed(SEED)
    k0, v0, k1, v1 = two_banks(gen)
    q = queries(gen)
    n = k0.shape[0] + k1.shape[0]
    topk, ids, scores = kvtune.knn_attention(q, [k0, k1], [v0, v1], n, estimator="topk")
    dense, _, _ = kvtune.knn_attention(q, [k0, k1], [v0, v1], n, estimator="dense",
                                       backward="dense")
    ref = reference_attention(q, [k0, k1], [v0, v1])
    assert topk.shape == (2, 3, 5) and ids.shape == (2, 3, n) and scores.shape == (2, 3, n)
    assert topk.dtype == torch.float64
    assert_close(topk, ref)
    assert_close(dense, ref)
    assert_close(topk, dense)
    # Every global id once per row; the scores are scale * cos, best first.
    assert torch.equal(ids.sort(-1).values, torch.arange(n).expand(2, 3, n))
    qn = q / q.norm(dim=-1, keepdim=True)
    expected = (6 ** 0.5) * torch.gather(qn @ torch.cat([k0, k1]).t(), -1, ids)
    assert_close(scores, expected)
    assert bool((scores[..., :-1] >= scores[..., 1:]).all())


def test_k_larger_than_every_key_pads_with_minus_one():
    gen = torch.Generator().manual_seed(SEED + 1)
    k0, v0, k1, v1 = two_banks(gen, n0=3, n1=2)
    q = queries(gen, shape=(4, 6))
    out, ids, scores = kvtune.knn_attention(q, [k0, k1], [v0, v1], 8)
    assert torch.equal(ids[:, 5:], torch.full((4, 3), -1))
    assert bool(torch.isinf(scores[:, 5:]).all())
    assert_close(out, reference_attention(q, [k0, k1], [v0, v1]))


def test_topk_ids_are_global_and_output_is_the_restricted_reference():
    gen = torch.Generator().manual_seed(SEED + 2)
    k0, v0, k1, v1 = two_banks(gen)
    q = queries(gen)
    out, ids, _ = kvtune.knn_attention(q, [k0, k1], [v0, v1], 5)
    # The top 5 of all keys by the reference's own scores, with bank 1's rows offset by N0.
    qn = q / q.norm(dim=-1, keepdim=True)
    best = (qn @ torch.cat([k0, k1]).t()).topk(5, dim=-1).indices
    assert torch.equal(ids.sort(-1).values, best.sort(-1).values)
    assert bool((ids >= k0.shape[0]).any()) and bool((ids < k0.shape[0]).any())
    assert_close(out, reference_attention(q, [k0, k1], [v0, v1], ids=ids))


def test_gradcheck_dense():
    gen = torch.Generator().manual_seed(SEED + 3)
    k0, v0, k1, v1 = two_banks(gen, n0=7, n1=5, dk=4, dv=3)
    q = queries(gen, shape=(3, 4))

    def f(q, k1, v1):
        return kvtune.knn_attention(q, [k0, k1], [v0, v1], 4, estimator="dense",
                                    backward="dense")[0]

    assert torch.autograd.gradcheck(f, (q, k1, v1), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_gradcheck_topk_and_restricted_reference_gradients():
    gen = torch.Generator().manual_seed(SEED + 4)
    k0, v0, k1, v1 = two_banks(gen, n0=7, n1=6, dk=4, dv=3)
    q = queries(gen, shape=(3, 4))
    k = 4

    def f(q, k1, v1):
        return kvtune.knn_attention(q, [k0, k1], [v0, v1], k, estimator="topk")[0]

    def f_dense_layout(q, k1, v1):
        return f(q, Densify.apply(k1), Densify.apply(v1))

    # The top-k set does not change under gradcheck's perturbations (no near ties here).
    _, ids, _ = kvtune.knn_attention(q, [k0, k1], [v0, v1], k)
    assert torch.autograd.gradcheck(f_dense_layout, (q, k1, v1), eps=1e-6, atol=1e-8, rtol=1e-6)

    # The op's gradients equal those of the plain-PyTorch reference restricted to that set.
    w = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    got = torch.autograd.grad((f(q, k1, v1) * w).sum(), (q, k1, v1))
    ref = torch.autograd.grad(
        (reference_attention(q, [k0, k1], [v0, v1], ids=ids) * w).sum(), (q, k1, v1))
    assert got[1].is_sparse and got[2].is_sparse
    assert_close(got[0], ref[0])
    assert_close(got[1].to_dense(), ref[1])
    assert_close(got[2].to_dense(), ref[2])
    # The frozen bank received nothing.
    assert k0.grad is None and v0.grad is None


def test_sparse_gradients_are_the_retrieved_rows_and_sparse_adam_touches_only_them():
    gen = torch.Generator().manual_seed(SEED + 5)
    k0, v0, _, _ = two_banks(gen, n0=20, n1=1)
    n1, dk, dv = 30, 6, 5
    keys = torch.randn(n1, dk, generator=gen, dtype=torch.float64)
    keys = torch.nn.Parameter(keys / keys.norm(dim=1, keepdim=True))
    values = torch.nn.Parameter(torch.randn(n1, dv, generator=gen, dtype=torch.float64))
    q = torch.randn(4, dk, generator=gen, dtype=torch.float64)
    out, ids, _ = kvtune.knn_attention(q, [k0, keys], [v0, values], 3)
    (out ** 2).sum().backward()

    retrieved = torch.unique(ids[ids >= 20] - 20)
    assert retrieved.numel() > 0
    for p in (keys, values):
        assert p.grad.is_sparse and p.grad.layout == torch.sparse_coo
        g = p.grad.coalesce()
        assert torch.equal(g.indices()[0], retrieved)

    # The dense gradient of the reference over the same set, restricted to those rows.
    kd, vd = keys.detach().clone().requires_grad_(), values.detach().clone().requires_grad_()
    (reference_attention(q, [k0, kd], [v0, vd], ids=ids) ** 2).sum().backward()
    untouched = torch.ones(n1, dtype=torch.bool)
    untouched[retrieved] = False
    assert bool((kd.grad[untouched] == 0).all()) and bool((vd.grad[untouched] == 0).all())
    assert_close(keys.grad.to_dense(), kd.grad)
    assert_close(values.grad.to_dense(), vd.grad)

    before_k, before_v = keys.detach().clone(), values.detach().clone()
    torch.optim.SparseAdam([keys, values], lr=0.1).step()
    for p, before in ((keys, before_k), (values, before_v)):
        changed = (p.detach() != before).any(dim=1)
        assert torch.equal(torch.nonzero(changed).reshape(-1), retrieved)


def test_sgd_on_sparse_gradients():
    gen = torch.Generator().manual_seed(SEED + 6)
    k0, v0, k1, v1 = two_banks(gen, dtype=torch.float32)
    v1 = torch.nn.Parameter(v1.detach())
    opt = torch.optim.SGD([v1], lr=0.5)
    q = torch.randn(8, 6, generator=gen)
    target = torch.randn(8, 5, generator=gen)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        out, _, _ = kvtune.knn_attention(q, [k0, k1.detach()], [v0, v1], 4)
        loss = ((out - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_sampled_estimators_are_deterministic_for_a_seed_and_backward_sampled_is_sparse():
    gen = torch.Generator().manual_seed(SEED + 7)
    k0, v0, k1, v1 = two_banks(gen, n0=40, n1=30)
    q = queries(gen, shape=(5, 6))
    for est in ("gumbel", "topk+tail"):
        a = kvtune.knn_attention(q, [k0, k1], [v0, v1], 4, estimator=est, seed=3)[0]
        b = kvtune.knn_attention(q, [k0, k1], [v0, v1], 4, estimator=est, seed=3)[0]
        assert torch.equal(a, b)
    out, _, _ = kvtune.knn_attention(q, [k0, k1], [v0, v1], 4, estimator="dense",
                                     backward="sampled", backward_samples=16, seed=1)
    out.sum().backward()
    assert v1.grad.is_sparse and k1.grad.is_sparse and q.grad is not None
    # "dense" with every key is the reference.
    assert_close(out, reference_attention(q, [k0, k1], [v0, v1]))


def test_learned_scale_gets_a_gradient():
    gen = torch.Generator().manual_seed(SEED + 8)
    k0, v0, k1, v1 = two_banks(gen)
    q = queries(gen, shape=(3, 6))
    c = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
    n = k0.shape[0] + k1.shape[0]
    out, _, _ = kvtune.knn_attention(q, [k0, k1], [v0, v1], n, learned_scale=c)
    out.sum().backward()
    cr = c.detach().clone().requires_grad_()
    ref = reference_attention(q, [k0, k1], [v0, v1], scale=cr)
    assert_close(out, ref)
    ref.sum().backward()
    assert_close(c.grad, cr.grad, rtol=1e-10)


def test_op_is_registered_with_the_dispatcher():
    gen = torch.Generator().manual_seed(SEED + 9)
    k0, v0, k1, v1 = two_banks(gen)
    q = queries(gen, shape=(2, 6))
    out, ids, scores = torch.ops.kvtune.knn_attention(q, [k0, k1], [v0, v1], 3)
    ref, _, _ = kvtune.knn_attention(q, [k0, k1], [v0, v1], 3)
    assert torch.equal(out, ref)
