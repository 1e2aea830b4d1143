"""The verify benchmark runs (`--quick`) and its figures hang together."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_verify.py"


@pytest.mark.slow
def test_bench_verify_quick() -> None:
    completed = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert re.search(r"^verify +\d+\.\d+ s +\d+\.\d+ s  read \+ map \+ check", out, re.MULTILINE), (
        out
    )
    assert re.search(r"^ratio +\d+\.\d+ x", out, re.MULTILINE), out
    assert "agreement yes" in out
    assert len(re.findall(r"^  (HOLDS|FAILS) ", out, re.MULTILINE)) == 5
