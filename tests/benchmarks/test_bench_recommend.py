"""The recommendation benchmark runs end to end in its quick mode: the store's fold and the
scan give the same recommendation, and replayed, it denies no observed allowed record."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_recommend.py"


@pytest.mark.slow
def test_bench_recommend_quick() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARK), "--quick"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert {"cluster", "fold", "peer", "ratio", "cpu", "read", "identical", "replay"} <= set(lines)
    assert "200,000 flow records" in lines["cluster"]
    assert "records/s" in lines["fold"] and "policies for" in lines["fold"]
    assert "records/s" in lines["peer"] and "the previous way" in lines["peer"]
    assert float(lines["ratio"].split()[1]) > 0
    assert lines["identical"].startswith("identical yes")
    assert lines["replay"].startswith("replay    all 200,000 replayed records")
