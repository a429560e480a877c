# examples/python/domain_bank.py with fewer steps: the domain loss falls, the base bank stays
# byte-identical, and the CLI reads the bank it saves.
import ast
import json
import os
import re
import subprocess
import sys


def run_example(root, *args):
    """Runs the example with `args`; checks it succeeded, that the held-out domain loss fell and
    that the base bank stayed byte-identical. Returns its standard output."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run(
        [sys.executable, os.path.join(root, "examples", "python", "domain_bank.py"),
         *map(str, args)],
        capture_output=True, text=True, env=env, timeout=600)
    print(r.stdout)
    assert r.returncode == 0, r.stderr
    before = float(re.search(r"loss before: ([0-9.]+)", r.stdout).group(1))
    after = float(re.search(r"loss after \d+ steps: ([0-9.]+)", r.stdout).group(1))
    assert after < before
    assert "byte-identical" in r.stdout
    return r.stdout


def test_example_runs_and_its_bank_reads_in_the_cli(tmp_path, root, cli):
    run_example(root, "--out", tmp_path, "--pretrain-steps", "60", "--steps", "40",
                "--base-slots", "256", "--domain-slots", "256")
    info = json.loads(cli("bank", "inspect", "--json", tmp_path / "domain.h5").stdout)
    assert "foldoc" in json.dumps(info)
    cli("bank", "inspect", tmp_path / "base.h5")


def test_example_from_a_kvtune_model_makes_a_bank_the_cli_evaluates(tmp_path, root, cli):
    """--model: the example's plain-PyTorch GPT loads the shipped kvtune base, fine-tunes a
    domain bank, and the C++ model uses that bank as the Python model did: `kvtune generate
    --banks` gives the Python GPT's greedy continuation byte for byte (with and without the
    bank, so the continuation depends on it), and `kvtune eval --banks` reads it and scores a
    lower FOLDOC loss than the base alone."""
    model = os.path.join(root, "configs", "bases", "pretrain-general", "model")
    prompt = "A compiler is a program that"
    stdout = run_example(root, "--model", model, "--out", tmp_path, "--steps", "40",
                         "--prompt", prompt, "--new-tokens", "40")
    python_text = ast.literal_eval(
        re.search(r"greedy continuation: (.*)$", stdout, re.M).group(1))
    bank = tmp_path / "domain.h5"
    info = json.loads(cli("bank", "inspect", "--json", bank).stdout)
    assert "foldoc" in json.dumps(info)

    with_bank = cli("generate", "--model", model, "--banks", bank, "--prompt", prompt,
                    "--max-new-tokens", "40").stdout.rstrip("\n")
    without = cli("generate", "--model", model, "--prompt", prompt,
                  "--max-new-tokens", "40").stdout.rstrip("\n")
    assert with_bank == python_text
    assert with_bank != without, "the continuation does not depend on the domain bank"

    def foldoc_loss(*banks):
        out = tmp_path / f"eval{len(banks)}.json"
        extra = ["--banks", *banks] if banks else []
        cli("eval", "--model", model, *extra, "--data", "foldoc", "--batches", "4",
            "--json", out)
        return json.loads(out.read_text())

    base_metrics, bank_metrics = foldoc_loss(), foldoc_loss(bank)
    assert bank_metrics["banks"] == [str(bank)]
    before_cli = base_metrics["sets"]["foldoc"]["loss"]
    after_cli = bank_metrics["sets"]["foldoc"]["loss"]
    print(f"kvtune eval, FOLDOC loss: base {before_cli:.4f}, with the Python bank {after_cli:.4f}")
    assert after_cli < before_cli
