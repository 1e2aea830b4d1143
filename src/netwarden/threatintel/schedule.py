"""The scheduler inside the long-running process: each feed on its own period, with jitter,
and exponential back-off after failures.

After a success the next pull is `period + U(0, jitter)` later: jitter keeps a fleet of nodes
from pulling a feed server at the same second. After the n-th failure in a row it is
`min(period, retry * 2**(n-1))` later (plus up to a tenth of that), `retry` being
`min(MAX_FIRST_RETRY, period / 8)`: a feed that is down is retried soon, then less and less
often, never less often than its period. A held feed counts as a success (the server
answered; a person has to look).

The loop sleeps on a `threading.Event`, so `stop()` ends it at once, between two syncs.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from netwarden.model import ThreatFeed
from netwarden.threatintel.state import FeedStatus

MAX_FIRST_RETRY = 60.0


def next_delay(feed: ThreatFeed, status: FeedStatus, rng: random.Random) -> float:
    """Seconds until the next pull of `feed`, after the sync that produced `status`."""
    failures = status.consecutive_failures
    if failures == 0:
        return float(feed.period_seconds + rng.uniform(0.0, max(feed.jitter_seconds, 0.0)))
    retry = min(MAX_FIRST_RETRY, feed.period_seconds / 8)
    backoff = min(feed.period_seconds, retry * 2.0 ** (failures - 1))
    return backoff + rng.uniform(0.0, backoff / 10)


@dataclass
class _Due:
    feed: ThreatFeed
    at: float


class Scheduler:
    """Pulls every feed when it is due until stopped; `sync` does one feed's work."""

    def __init__(
        self,
        feeds: Sequence[ThreatFeed],
        sync: Callable[[ThreatFeed], FeedStatus],
        *,
        after_sync: Callable[[ThreatFeed, FeedStatus], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._sync = sync
        self._after_sync = after_sync
        self._clock = clock
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        now = clock()
        # The first pull of every feed is now, spread by its jitter.
        self._due = [
            _Due(feed, now + self._rng.uniform(0.0, min(feed.jitter_seconds, 1.0)))
            for feed in feeds
            if feed.enabled
        ]
        self.syncs = 0

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self, max_syncs: int | None = None) -> None:
        """Sync feeds as they fall due until `stop()` (or `max_syncs` syncs)."""
        while self._due and not self._stop.is_set():
            due = min(self._due, key=lambda d: d.at)
            wait = due.at - self._clock()
            if wait > 0 and self._stop.wait(wait):
                break
            status = self._sync(due.feed)
            self.syncs += 1
            due.at = self._clock() + next_delay(due.feed, status, self._rng)
            if self._after_sync is not None:
                self._after_sync(due.feed, status)
            if max_syncs is not None and self.syncs >= max_syncs:
                break
