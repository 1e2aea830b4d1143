"""The flows benchmark runs end to end in its quick mode."""

from __future__ import annotations

import pytest
from benchmarks.bench_flows import main


@pytest.mark.slow
def test_quick_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "ingest VPC text -> DuckDB" in out and "ingest Arrow batch -> DuckDB" in out
    assert (
        "ingest Hubble JSON -> DuckDB" in out and "ratio to peer" in out and "per CPU-second" in out
    )
    assert "query count(filter)" in out and "over 200,000 records" in out
