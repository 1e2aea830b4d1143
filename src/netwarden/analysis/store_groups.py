"""Flow groups straight from a store: what `preview` and `recommend` replay.

The store folds the matching records into their distinct identity rows (`FlowStore.fold`), so
only distinct conversations leave it; `engine.flow_batch.group_folded` resolves them to
endpoints. Where a report names the first record of a kind, it gives the row a time-ordered
scan of the same records would have put it at, counted by the store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]

from netwarden.engine.flow_batch import FlowGroups, group_folded, replay_keys
from netwarden.flows.filter import FlowFilter
from netwarden.flows.store import FOLD_FIRST, FOLD_RECORDS, FlowStore
from netwarden.model import ClusterState

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def fold_groups(
    cluster: ClusterState,
    store: FlowStore,
    extra: Sequence[str],
    sums: Sequence[str] = (),
    where: FlowFilter | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[FlowGroups, int]:
    """The groups of the matching records keyed on `replay_keys(extra)` with the counter
    columns `sums` totalled, and how many records they stand for."""
    folded = store.fold(replay_keys(extra), sums, where, since, until)
    count = folded.column(FOLD_RECORDS).to_numpy().astype(np.int64)
    first = folded.column(FOLD_FIRST).cast(pa.int64()).to_numpy().astype(np.int64)
    totals = {name: folded.column(name).to_numpy() for name in sums}
    row_of = _scan_row(store, where, since, until)
    return group_folded(cluster, folded, extra, count, first, totals, row_of), int(count.sum())


def _scan_row(
    store: FlowStore, where: FlowFilter | None, since: datetime | None, until: datetime | None
) -> Callable[[int], int]:
    """Start time (microseconds) -> the row a time-ordered scan puts the first record of that
    moment at: the number of matching records that started before it."""
    end = None if until is None else until if until.tzinfo else until.replace(tzinfo=UTC)

    def row_of(micros: int) -> int:
        moment = _EPOCH + timedelta(microseconds=micros)
        return store.count(where, since, moment if end is None else min(end, moment))

    return row_of
