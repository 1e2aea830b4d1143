"""The alerts benchmark runs end to end in its quick mode, and agrees with its peer."""

from __future__ import annotations

import pytest
from benchmarks.bench_alerts import main


@pytest.mark.slow
def test_quick_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick"]) == 0  # 1: the peer found other listed records than the alerts
    out = capsys.readouterr().out
    assert "generated 200,000 stored flows" in out and "flows/s" in out
    assert "peer flow_hits per batch" in out and "ratio to peer" in out
    assert "added 20,000 DNS records" in out and "dns ratio to peer" in out
