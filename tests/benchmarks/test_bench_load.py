"""The load benchmark runs (`--quick`) and its figures hang together."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_load.py"


def test_bench_load_quick() -> None:
    completed = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    for label in ("peer", "read", "load", "compose"):
        assert re.search(rf"^{label} +\d+\.\d+ s cpu +\d+\.\d+ s wall", out, re.MULTILINE), out
    assert re.search(r"^ratio +\d+\.\d+ x read / peer", out, re.MULTILINE), out
    assert "agreement yes" in out, out
    assert re.search(r"^cluster +\d+ endpoints, 100 policies", out, re.MULTILINE), out
