# examples/python/domain_bank.py with fewer steps: the domain loss falls, the base bank stays
# byte-identical, and the CLI reads the bank it saves.
import json
import os
import re
import subprocess
import sys


def test_example_runs_and_its_bank_reads_in_the_cli(tmp_path, root, cli):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run(
        [sys.executable, os.path.join(root, "examples", "python", "domain_bank.py"),
         "--out", str(tmp_path), "--pretrain-steps", "60", "--steps", "40",
         "--base-slots", "256", "--domain-slots", "256"],
        capture_output=True, text=True, env=env, timeout=600)
    print(r.stdout)
    assert r.returncode == 0, r.stderr
    before = float(re.search(r"loss before: ([0-9.]+)", r.stdout).group(1))
    after = float(re.search(r"loss after \d+ steps: ([0-9.]+)", r.stdout).group(1))
    assert after < before
    assert "byte-identical" in r.stdout
    info = json.loads(cli("bank", "inspect", "--json", tmp_path / "domain.h5").stdout)
    assert "foldoc" in json.dumps(info)
    cli("bank", "inspect", tmp_path / "base.h5")
