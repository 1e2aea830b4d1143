"""Smoke run of benchmarks/bench_diff.py: one small size, netwarden (directories, git ref,
files) and NCA's semantic diff measured in the same run, the ratio printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_diff.py"


@pytest.mark.slow
def test_quick_benchmark_measures_both_tools() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    out = done.stdout
    assert "150 pods, 30 policies" in out
    figure = r"\s+(\d+\.\d+) s\s+(\d+) MiB peak\s+(\d+\.\d+) s CPU"
    dirs = re.search(r"netwarden --base/--head" + figure + r"\s+\(([\d,]+) changed", out)
    ref = re.search(r"netwarden --base-ref" + figure, out)
    files = re.search(r"netwarden \(files\)" + figure, out)
    nca = re.search(r"NCA --semantic_diff" + figure, out)
    assert dirs and ref and files and nca, out
    for found in (dirs, ref, files, nca):
        assert float(found[1]) > 0 and int(found[2]) > 10 and float(found[3]) > 0
    assert int(dirs[4].replace(",", "")) > 0  # the edit changes connections
    ratio = re.search(r"ratio\s+(\d+\.\d+) x  NCA time / netwarden time", out)
    assert ratio and float(ratio[1]) > 0, out
