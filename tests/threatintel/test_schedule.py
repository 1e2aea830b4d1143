"""The scheduler: period with jitter, exponential back-off after failures, stop at once; and
the real loop pulling a real HTTP feed with short periods."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from netwarden.model import FeedContent, ThreatFeed
from netwarden.model.feeds import HttpSource, NewlineFormat
from netwarden.threatintel.schedule import Scheduler, next_delay
from netwarden.threatintel.state import FeedStatus, FeedStore
from netwarden.threatintel.sync import SyncOptions, sync_feed
from tests.threatintel.conftest import FeedServer


def feed(url: str = "http://127.0.0.1:9/x", period: float = 3600, jitter: float = 0) -> ThreatFeed:
    return ThreatFeed(
        "f",
        FeedContent.IP_SET,
        HttpSource(url, NewlineFormat()),
        period_seconds=period,
        jitter_seconds=jitter,
    )


def test_period_jitter_and_back_off() -> None:
    rng = random.Random(1)
    ok = FeedStatus("f", "IPSet", "x")
    delays = [next_delay(feed(jitter=300), ok, rng) for _ in range(200)]
    assert all(3600 <= d <= 3900 for d in delays) and max(delays) - min(delays) > 100
    backoff = [next_delay(feed(), ok.evolve(consecutive_failures=n), rng) for n in range(1, 11)]
    bases = [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600, 3600]
    assert all(base <= d <= base * 1.1 for base, d in zip(bases, backoff, strict=True)), backoff
    short = [
        next_delay(feed(period=0.8), ok.evolve(consecutive_failures=n), rng) for n in (1, 2, 3, 9)
    ]
    assert [round(d, 1) for d in short][:1] == [0.1] and short[-1] <= 0.88


def test_the_loop_pulls_when_due_and_stops_at_once(feed_server: FeedServer, tmp_path: Path) -> None:
    url = feed_server.serve("/list.txt", "198.51.100.7\n")
    store = FeedStore(tmp_path)
    seen: list[FeedStatus] = []
    scheduler = Scheduler(
        [feed(url, period=0.2)],
        lambda f: sync_feed(f, store, SyncOptions()),
        after_sync=lambda f, status: seen.append(status),
    )
    thread = threading.Thread(target=scheduler.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        feed_server.serve("/list.txt", "198.51.100.8\n")
        while store.entries("f") != ["198.51.100.8/32"] and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        scheduler.stop()
        thread.join(5)
    assert not thread.is_alive()
    assert store.entries("f") == ["198.51.100.8/32"]
    assert len(feed_server.statuses("/list.txt")) >= 4

    # Failing: retries come sooner than the period, then further apart. The waits are
    # measured from the end of one sync to the start of the next (a loaded machine can only
    # make them longer, never shorter).
    feed_server.routes["/list.txt"].status = 500
    starts: list[float] = []
    ends: list[float] = []

    def failing_sync(f: ThreatFeed) -> FeedStatus:
        starts.append(time.monotonic())
        return sync_feed(f, store, SyncOptions())

    failing = Scheduler(
        [feed(url, period=1.6)],
        failing_sync,
        after_sync=lambda f, status: ends.append(time.monotonic()),
    )
    failing.run(max_syncs=4)
    waits = [start - end for end, start in zip(ends, starts[1:], strict=False)]
    # retry = period / 8 = 0.2 s, doubling: 0.2, 0.4, 0.8 (plus up to a tenth each)
    assert waits[0] >= 0.2 and waits[1] >= 0.4 and waits[2] >= 0.8, waits
    assert waits[0] < 1.0, waits  # sooner than the period
    assert store.entries("f") == ["198.51.100.8/32"]  # the last good set stays
    status = store.status("f")
    assert status is not None and status.consecutive_failures == 4
