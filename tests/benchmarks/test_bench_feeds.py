"""The feeds benchmark runs end to end in its quick mode (root: it loads the dataplane)."""

from __future__ import annotations

import pytest
from benchmarks.bench_feeds import generate_feed, main, sync_path


def test_generated_feed_is_seeded_and_aggregates() -> None:
    body = generate_feed(2000, seed=3)
    assert body == generate_feed(2000, seed=3)
    assert len(body.splitlines()) == 2000
    entries = sync_path(body)
    assert 0 < len(entries) < 2000


@pytest.mark.root
@pytest.mark.slow
def test_quick_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "parse + aggregate" in out and "ratio" in out
    assert "nft peak RSS" in out and "update, 100 out + 100 in" in out
    assert "counters(): " in out and "nft list chain x3" in out
    assert "FeedIndex.lookup" in out
