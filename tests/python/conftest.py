# The Python tests import the package the build put into <build>/python (KVTUNE_BUILD_DIR, default
# build/ in the checkout) and run the CLI from <build>/kvtune. Run them with tools/test, or:
#   /usr/bin/python3 -m pytest tests/python
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("KVTUNE_BUILD_DIR", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(BUILD, "python"))


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session")
def cli():
    """Runs build/kvtune with arguments; returns the CompletedProcess (check=True)."""
    program = os.path.join(BUILD, "kvtune")
    if not os.path.exists(program):
        pytest.fail(f"{program} is missing: build it first (tools/build)")

    def run(*args, check=True):
        return subprocess.run([program, *map(str, args)], check=check, capture_output=True,
                              text=True)

    return run
