"""The IP-feed part of threat-feed alerts: which stored addresses some feed lists, and the
feed entry (CIDR) that holds each.

Pass 1 (`listed_addresses`) reads `source_ip` and `dest_ip` alone; each batch's distinct
addresses are parsed and looked up in the feeds at once (`threatintel.match
.address_columns`, `threatintel.check.FeedIndex.lookup`), and each distinct text only once
over the whole scan (flow records repeat their addresses).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from netwarden.flows.alerts_groups import chunks
from netwarden.flows.store import FlowStore
from netwarden.threatintel.aggregate import cidr_texts
from netwarden.threatintel.check import FeedIndex
from netwarden.threatintel.match import address_columns
from netwarden.threatintel.parse import parse_ip_texts
from netwarden.threatintel.state import FeedStore

#: Which end of a record a direction reads: `to` a listed destination, `from` a listed source.
SIDES = {"from": "source_ip", "to": "dest_ip"}


def listed_addresses(
    store: FlowStore,
    index: FeedIndex,
    since: datetime | None,
    until: datetime | None,
    batch_size: int,
) -> tuple[dict[str, set[str]], int]:
    """Pass 1: per address column, the distinct addresses some feed lists; records read."""
    listed: dict[str, set[str]] = {column: set() for column in SIDES.values()}
    # Flow records repeat their addresses, within a batch and across batches: each distinct
    # text is parsed and looked up once.
    seen: dict[str, set[str]] = {column: set() for column in SIDES.values()}
    records = 0
    columns = list(SIDES.values())
    for chunk in chunks(store.scan_batches(None, since, until, columns, batch_size), batch_size):
        records += chunk.num_rows
        for column in columns:
            distinct = pc.unique(chunk.column(column)).drop_null().to_pylist()
            new = [text for text in distinct if text not in seen[column]]
            if new:
                seen[column].update(new)
                listed[column].update(_listed(index, pa.array(new, pa.string())))
    return listed, records


def _listed(index: FeedIndex, texts: Any) -> list[str]:
    """The texts (an Arrow string array) that are addresses some feed lists."""
    parsed = address_columns(texts)
    found: list[str] = []
    for rows, keys in ((parsed.rows4, parsed.keys4), (parsed.rows6, parsed.keys6)):
        if len(rows):
            hits = rows[np.flatnonzero(index.lookup(keys))]
            found += pc.take(texts, pa.array(hits, pa.int64())).to_pylist()
    return found


class Indicators:
    """Per listed address: the feeds that list it and the entry (CIDR) of each that holds
    it. Feeds keep their minimal CIDR cover, so the entries are disjoint: the one holding an
    address is the last that starts at or before it (one `searchsorted` per feed)."""

    def __init__(self, feeds: FeedStore, index: FeedIndex, addresses: Iterable[str]) -> None:
        texts = pa.array(sorted(set(addresses)), pa.string())
        parsed = address_columns(texts)
        found: dict[str, list[tuple[str, str]]] = {}
        families = ((4, parsed.rows4, parsed.keys4), (6, parsed.rows6, parsed.keys6))
        for family, rows, keys in families:
            if len(rows) == 0:
                continue
            masks = index.lookup(keys)
            for bit, feed in enumerate(index.names):
                has = np.flatnonzero(masks & np.uint64(1 << bit))
                if len(has) == 0:
                    continue
                networks, cidrs = self._entries(feeds, feed, family)
                wanted = keys[has].astype(np.uint64) if family == 4 else keys[has]
                at = np.searchsorted(networks, wanted, side="right") - 1
                listed = pc.take(texts, pa.array(rows[has], pa.int64())).to_pylist()
                for address, position in zip(listed, at.tolist(), strict=True):
                    found.setdefault(address, []).append((feed, cidrs[position]))
        self._found = found

    @staticmethod
    def _entries(feeds: FeedStore, feed: str, family: int) -> tuple[Any, list[str]]:
        """The feed's prefixes of one family, sorted by network, and their CIDR texts."""
        parsed = parse_ip_texts(feeds.entries(feed) or [])
        prefixes = parsed.v4 if family == 4 else parsed.v6
        order = np.argsort(prefixes.networks, kind="stable")
        networks = prefixes.networks[order]
        return networks, cidr_texts(family, networks, prefixes.lengths[order])

    def of(self, address: str) -> list[tuple[str, str]]:
        return self._found.get(address, [])
