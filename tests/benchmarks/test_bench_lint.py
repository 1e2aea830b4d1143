"""Smoke run of benchmarks/bench_lint.py: one tiny size, netwarden and NCA's --sanity (the
named peer) measured in the same run, the ratio and the redundant-policy overlap printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_lint.py"


@pytest.mark.slow
def test_quick_benchmark_measures_netwarden_and_nca() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    out = done.stdout
    assert "60 pods, 12 policies" in out
    split = re.search(r"read (\d+\.\d+) s \(.*\), lint (\d+\.\d+) s \((\d+\.\d+) s CPU\)", out)
    assert split and float(split[2]) > 0 and float(split[3]) > 0, out
    figure = r"\s+(\d+\.\d+) s\s+(\d+) MiB peak\s+(\d+\.\d+) s CPU"
    ours = re.search(r"netwarden lint \(NCA's input\)" + figure, out)
    nca = re.search(r"NCA --sanity \(peer\)" + figure, out)
    assert ours and nca, out
    for found in (ours, nca):
        assert float(found[1]) > 0 and int(found[2]) > 10 and float(found[3]) > 0
    ratio = re.search(r"ratio\s+(\d+\.\d+) x  NCA time / netwarden time", out)
    assert ratio and float(ratio[1]) > 0, out
    overlap = re.search(r"redundant policies\s+NCA (\d+), netwarden (\d+), both (\d+)", out)
    assert overlap and int(overlap[3]) <= min(int(overlap[1]), int(overlap[2])), out
