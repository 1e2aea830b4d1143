"""The dataplane benchmark runs end to end in its quick mode (root: it makes namespaces)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.root
@pytest.mark.slow
def test_bench_dataplane_quick() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces): run the suite as root, as CI does")
    process = subprocess.Popen(
        [sys.executable, "bench_dataplane.py", "--quick"],
        cwd=BENCHMARKS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err
    assert re.search(r"compile +[\d.]+ s +\d+ chains, \d+ rules", out), out
    for op in ("add local", "relabel local", "delete local", "add remote", "delete remote"):
        found = re.search(rf"{op} +[\d.]+ ms median.*\((?:.*); (\d+)/(\d+) element-only\)", out)
        assert found is not None, out
        assert found.group(1) == found.group(2), out  # every change was elements only
    assert re.search(r"ratio full reload / incremental +[\d.]+ x", out), out
    assert re.search(r"traffic +tcp connects/s .* ratio +[\d.]+ x", out), out
    # Every namespace it made (named after its pid) is gone.
    leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not re.search(rf"^nwb{process.pid % 100000}[a-z]", leftovers, re.M), leftovers
