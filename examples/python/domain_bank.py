#!/usr/bin/env python3
"""A small GPT in plain PyTorch with a kvtune memory layer, and a domain bank fine-tuned on a
domain's text with everything else frozen.

  1. pretrain the GPT and its base bank on general English (WordNet, Debian's dict-wn);
  2. attach a new domain bank (keys from the model's own queries on the domain text);
  3. fine-tune only the domain bank on computing text (FOLDOC, dict-foldoc) with SparseAdam;
  4. print the held-out domain loss before and after, show that the frozen base bank is
     byte-identical, and save both banks as kvtune bank files (HDF5 + faiss index), which
     `build/kvtune bank inspect` reads.

Run from the checkout (about 20 s on 2 cores):
  PYTHONPATH=build/python /usr/bin/python3 examples/python/domain_bank.py --out runs/py-example
"""

import argparse
import gzip
import hashlib
import math
import os
import time

import torch
from torch import nn
from torch.nn import functional as F

import kvtune

DICTD = "/usr/share/dictd"


def read_dictd(name, limit):
    """The first `limit` bytes of a dictd dictionary (.dict.dz is gzip-compatible)."""
    path = os.path.join(DICTD, name + ".dict.dz")
    with gzip.open(path, "rb") as f:
        data = f.read(limit)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()


# --- the model: a GPT-2 style byte-level transformer, pre-LayerNorm, written out -------------
# The module names are those of kvtune's C++ TransformerLM (model.pt), so that a kvtune model
# folder loads into this model with load_state_dict (from_kvtune below).
class CausalSelfAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (f(x).reshape(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for f in (self.q, self.k, self.v))
        s = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)
        a = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1) @ v
        return self.out(a.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    def __init__(self, d, d_ff):
        super().__init__()
        self.up, self.down = nn.Linear(d, d_ff), nn.Linear(d_ff, d)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """x' = a + FFN(LN2(a)) [+ Mem(LN2(a))], a = x + Attn(LN1(x)): kvtune's beside_ffn layout."""

    def __init__(self, d, heads, d_ff, memory=None):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads)
        self.ffn = FeedForward(d, d_ff)
        self.memory = memory

    def forward(self, x):
        a = x + self.attn(self.ln1(x))
        h = self.ln2(a)
        y = a + self.ffn(h)
        return y + self.memory(h) if self.memory is not None else y


class TinyGPT(nn.Module):
    """Token and position embeddings, blocks, a final LayerNorm and the tied output head. The
    memory layer sits in block `memory_block` (the last one by default)."""

    def __init__(self, vocab, d, layers, heads, d_ff, context, memory, memory_block=None):
        super().__init__()
        self.vocab = vocab
        self.memory_block = layers - 1 if memory_block is None else memory_block
        self.token_embedding = nn.Embedding(vocab, d)
        self.position_embedding = nn.Embedding(context, d)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        self.blocks = nn.ModuleList(
            [Block(d, heads, d_ff, memory if i == self.memory_block else None)
             for i in range(layers)])
        self.final_norm = nn.LayerNorm(d)

    def forward(self, tokens):
        positions = torch.arange(tokens.shape[1])
        x = self.token_embedding(tokens) + self.position_embedding(positions)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x) @ self.token_embedding.weight.t()  # tied head

    @property
    def memory(self):
        return self.blocks[self.memory_block].memory

    def set_memory(self, layer):
        self.blocks[self.memory_block].memory = layer


def from_kvtune(folder, args):
    """The model of a kvtune model folder (config.yaml, model.pt, bank_0.h5: docs/model.md) as a
    TinyGPT, with its base bank. Only what this example's GPT can express is accepted: one
    memory layer beside the FFN, without query normalization."""
    import yaml  # python3-yaml

    with open(os.path.join(folder, "config.yaml")) as f:
        c = yaml.safe_load(f)
    m = c["memory"]
    unsupported = [what for what, ok in (
        ("memory_placement other than beside_ffn", c.get("memory_placement") == "beside_ffn"),
        ("more than one memory layer", len(c.get("memory_blocks", [])) == 1),
        ("memory.query_norm", m.get("query_norm", "none") == "none"),
        ("a memory.estimator other than topk", m.get("estimator", "topk") == "topk"),
        ("memory.scale", float(m.get("scale", 0)) == 0.0),
        # its prompts are bytes after <bos> = 257: the byte tokenizer's ids
        ("a tokenizer other than byte", c.get("tokenizer", "byte") == "byte")) if not ok]
    if unsupported:
        raise SystemExit(f"{folder}: this example's GPT cannot express {', '.join(unsupported)}: "
                         "give a model like configs/bases/pretrain-general")
    base = kvtune.Bank.load(os.path.join(folder, "bank_0.h5"))
    args.d_model, args.mem_heads = c["d_model"], m["heads"]
    args.key_dim, args.value_dim, args.k = m["key_dim"], m["value_dim"], m["k"]
    args.context = min(args.context, c["max_seq_len"])
    model = TinyGPT(c["vocab_size"], c["d_model"], c["n_layers"], c["n_heads"], c["d_ff"],
                    c["max_seq_len"], memory_layer(None, [base], [False], args),
                    memory_block=c["memory_blocks"][0])
    # kvtune's model.pt is a libtorch archive that torch.jit.load reads, its tensors named as
    # this model's.
    state = torch.jit.load(os.path.join(folder, "model.pt")).state_dict()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"{folder}/model.pt does not match this example's GPT: missing "
                         f"{missing}, unexpected {unexpected}")
    return model, base


def batches(data, batch, context, gen):
    while True:
        start = torch.randint(0, data.numel() - context - 1, (batch,), generator=gen)
        idx = start[:, None] + torch.arange(context + 1)
        chunk = data[idx]
        yield chunk[:, :-1], chunk[:, 1:]


def loss_on(model, tokens, target):
    logits = model(tokens)
    return F.cross_entropy(logits.reshape(-1, model.vocab), target.reshape(-1))


@torch.no_grad()
def held_out_loss(model, data, context):
    """Mean next-byte loss (nats) over consecutive windows of `data`."""
    n = (data.numel() - 1) // context
    x = data[: n * context].reshape(n, context)
    y = data[1: n * context + 1].reshape(n, context)
    return sum(loss_on(model, x[i:i + 32], y[i:i + 32]).item() * x[i:i + 32].shape[0]
               for i in range(0, n, 32)) / n


def memory_layer(old, banks, trainable, args):
    """A MemoryLayer over `banks` that keeps the projections of `old` (when given)."""
    layer = kvtune.nn.MemoryLayer(args.d_model, args.mem_heads, args.key_dim, args.value_dim,
                                  banks=banks, k=args.k, trainable=trainable)
    if old is not None:
        layer.query.load_state_dict(old.query.state_dict())
        layer.output.load_state_dict(old.output.state_dict())
    return layer


@torch.no_grad()
def greedy(model, prompt, new_tokens, bos=257, eos=258):
    """The greedy continuation of `prompt` (bytes after kvtune's <bos>), as `kvtune generate`
    computes it: argmax of the last position's logits, stopping at <eos>."""
    tokens = [bos] + list(prompt.encode())
    out = []
    for _ in range(new_tokens):
        logits = model(torch.tensor([tokens]))[0, -1]
        nxt = int(logits.argmax())
        if nxt == eos:
            break
        tokens.append(nxt)
        out.append(nxt)
    return prompt + bytes(t for t in out if t < 256).decode(errors="replace")


def digest(bank):
    h = hashlib.sha256()
    for t in (bank.keys, bank.values, bank.slot_ids):
        h.update(t.detach().numpy().tobytes())
    return h.hexdigest()[:16]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/python-example", help="folder for the bank files")
    p.add_argument("--pretrain-steps", type=int, default=250)
    p.add_argument("--steps", type=int, default=200, help="fine-tuning steps (domain bank only)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--context", type=int, default=48)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--mem-heads", type=int, default=2)
    p.add_argument("--key-dim", type=int, default=32)
    p.add_argument("--value-dim", type=int, default=32)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--base-slots", type=int, default=1024)
    p.add_argument("--domain-slots", type=int, default=512)
    p.add_argument("--lr", type=float, default=3e-3, help="pretraining learning rate")
    p.add_argument("--bank-lr", type=float, default=3e-2, help="domain bank learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None,
                   help="start from this kvtune model folder (e.g. configs/bases/pretrain-general"
                        "/model) instead of pretraining here: the domain bank is then made for "
                        "that model, and `kvtune eval --model DIR --banks OUT/domain.h5` "
                        "evaluates it")
    p.add_argument("--prompt", default=None,
                   help="with --model: print this GPT's greedy continuation of the prompt "
                        "after fine-tuning (the same as `kvtune generate --model DIR --banks "
                        "OUT/domain.h5 --prompt ...`)")
    p.add_argument("--new-tokens", type=int, default=40, help="tokens --prompt adds")
    args = p.parse_args()
    if args.prompt is not None and not args.model:
        p.error("--prompt needs --model (the continuation uses the kvtune tokenizer's <bos>)")
    t0 = time.time()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    general = read_dictd("wn", 600_000)
    domain = read_dictd("foldoc", 320_000)
    domain_train, domain_test = domain[:300_000], domain[300_000:310_000]

    if args.model:
        # 1. The pretrained model and its base bank, from a kvtune model folder.
        model, base = from_kvtune(args.model, args)
        print(f"loaded {args.model}: base bank {base.name!r}, {len(base)} slots, model "
              f"{kvtune.model_fingerprint(args.model)} ({time.time() - t0:.1f} s)")
    else:
        # 1. Pretraining: the GPT and its base bank (trainable now, frozen from here on).
        base = kvtune.Bank.create(args.base_slots, args.key_dim, args.value_dim,
                                  seed=args.seed + 1, name="base")
        model = TinyGPT(256, args.d_model, args.layers, 4, 4 * args.d_model, args.context,
                        memory_layer(None, [base], [True], args))
        dense = [p for n, p in model.named_parameters() if "bank" not in n]
        sparse = [p for n, p in model.named_parameters() if "bank" in n]
        opt = torch.optim.AdamW(dense, lr=args.lr)
        sparse_opt = torch.optim.SparseAdam(sparse, lr=args.lr)
        data = batches(general, args.batch, args.context, gen)
        for step in range(args.pretrain_steps):
            x, y = next(data)
            opt.zero_grad()
            sparse_opt.zero_grad()
            loss = loss_on(model, x, y)
            loss.backward()
            opt.step()
            sparse_opt.step()
            model.memory.after_step()  # the base keys that moved, back to unit norm
        print(f"pretrained {args.pretrain_steps} steps on WordNet: train loss {loss.item():.3f} "
              f"({time.time() - t0:.1f} s)")

    # 2. A domain bank beside the frozen base bank: its keys are the model's own queries on
    # domain text (normalized), its values zero.
    model.requires_grad_(False)
    with torch.no_grad():
        x, _ = next(batches(domain_train, 64, args.context, gen))
        captured = []
        hook = model.memory.query.register_forward_hook(lambda m, i, o: captured.append(o))
        model(x)
        hook.remove()
        queries = captured[0].reshape(-1, args.key_dim)
        pick = torch.randperm(queries.shape[0], generator=gen)[: args.domain_slots]
        keys = F.normalize(queries[pick], dim=1).contiguous()
    domain_bank = kvtune.Bank.from_tensors(keys, torch.zeros(args.domain_slots, args.value_dim),
                                           name="foldoc", trainable=True)
    if args.model:
        # Made for the kvtune model: `kvtune eval --banks` attaches only a bank that names the
        # model (its fingerprint) and the memory layer.
        # memory layer 0: the model's first (here its only) memory layer.
        domain_bank.set_model(kvtune.model_fingerprint(args.model), 0)
    model.set_memory(memory_layer(model.memory, [base, domain_bank], [False, True], args))
    model.memory.query.requires_grad_(False)
    model.memory.output.requires_grad_(False)
    os.makedirs(args.out, exist_ok=True)
    if not args.model:
        base.trainable = False
        base.save(os.path.join(args.out, "base.h5"))
    base_digest = digest(base)

    before = held_out_loss(model, domain_test, args.context)
    print(f"domain (FOLDOC) held-out loss before: {before:.4f} nats/byte")

    # 3. Fine-tuning: only the domain bank's keys and values (sparse row gradients).
    trained = [p for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.startswith("blocks.") and "bank1_" in n
               for n, p in model.named_parameters() if p.requires_grad), "only the domain bank"
    bank_opt = torch.optim.SparseAdam(trained, lr=args.bank_lr)
    data = batches(domain_train, args.batch, args.context, gen)
    for step in range(args.steps):
        x, y = next(data)
        bank_opt.zero_grad()
        loss = loss_on(model, x, y)
        loss.backward()
        bank_opt.step()
        model.memory.after_step()
    after = held_out_loss(model, domain_test, args.context)
    print(f"domain (FOLDOC) held-out loss after {args.steps} steps: {after:.4f} nats/byte "
          f"({after - before:+.4f})")

    # 4. The base bank did not move; the domain bank is a kvtune bank file.
    same = digest(base) == base_digest
    print(f"base bank sha256 before {base_digest}, after {digest(base)}: "
          f"{'byte-identical' if same else 'CHANGED'}")
    path = os.path.join(args.out, "domain.h5")
    domain_bank.trainable = False
    domain_bank.provenance = ('{"made_by": "examples/python/domain_bank.py", "domain": "foldoc", '
                              f'"steps": {args.steps}}}')
    domain_bank.save(path)
    print(f"saved {path} and {path[:-3]}.faiss ({len(domain_bank)} slots); "
          f"read it with: build/kvtune bank inspect {path}")
    if args.model and args.prompt is not None:
        print(f"greedy continuation: {greedy(model, args.prompt, args.new_tokens)!r}")
    if args.model:
        print(f"evaluate it with: build/kvtune eval --model {args.model} --banks {path} "
              "--data foldoc")
    print(f"done in {time.time() - t0:.1f} s")
    if not same:
        raise SystemExit("the frozen base bank changed")


if __name__ == "__main__":
    main()
