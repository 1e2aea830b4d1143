"""The replay benchmark runs end to end (store -> report) in its quick mode, its store and
in-memory reports are identical, and it agrees with the reference engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_replay.py"


@pytest.mark.slow
def test_bench_replay_quick() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARK), "--quick"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert {"cluster", "replay", "cpu", "table", "peer", "ratio", "agreement"} <= set(lines)
    assert "200,000 replayed" in lines["replay"] and "store -> report" in lines["replay"]
    assert lines["identical"].startswith("identical yes")
    assert lines["agreement"].startswith("agreement all 2,000 sampled records: the same")
    assert float(lines["ratio"].split()[1]) > 1
