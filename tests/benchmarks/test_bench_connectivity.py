"""Smoke run of benchmarks/bench_connectivity.py: one small size, netwarden and NCA measured
in the same run, the ratio printed, and NCA's map checked against netwarden's by-pod CSV."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_connectivity.py"


@pytest.mark.slow
def test_quick_benchmark_measures_both_tools_and_they_agree() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--sizes", "150x30"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    out = done.stdout
    assert "150 pods, 30 policies" in out
    figure = r"\s+(\d+\.\d+) s\s+(\d+) MiB peak\s+(\d+\.\d+) s CPU"
    workload = re.search(r"netwarden --by workload" + figure, out)
    by_pod = re.search(r"netwarden --by pod" + figure + r"\s+\(([\d,]+) rows\)", out)
    nca = re.search(r"NCA \(peer\)" + figure, out)
    assert workload and by_pod and nca, out
    for found in (workload, by_pod, nca):
        # wall seconds, MiB of a real process, CPU seconds
        assert float(found[1]) > 0 and int(found[2]) > 10 and float(found[3]) > 0
    assert int(by_pod[4].replace(",", "")) > 150
    ratio = re.search(r"ratio\s+(\d+\.\d+) x  NCA time / netwarden by pod time", out)
    assert ratio and float(ratio[1]) > 0, out
    assert re.search(r"check\s+equal: 150 pods compared", out), out
