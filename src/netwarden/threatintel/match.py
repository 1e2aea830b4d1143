"""Flow records against the feeds: every flow to or from a listed address, and every DNS name
(query or answer) that a domain feed lists, becomes a hit naming feed and indicator.

For the flow store: address columns arrive as text (the flow schema's `source_ip` /
`dest_ip`); `address_columns` turns a column into uint32 / S16 keys once (inet_pton, about a
second per ten million), `FeedIndex.lookup` does the rest in bulk. Only listed rows become
Python objects.

    >>> from netwarden.threatintel.check import FeedIndex
    >>> index = FeedIndex.from_sets({"bad": ["198.51.100.0/24"]})
    >>> [str(h) for h in flow_hits(index, ["10.0.0.1"], ["198.51.100.7"])]
    ['row 0: dest 198.51.100.7 listed by bad']
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from netwarden.errors import UsageError
from netwarden.threatintel.check import FeedIndex


@dataclass(frozen=True)
class ThreatHit:
    row: int
    side: str  # "source", "dest" or "dns"
    indicator: str
    feeds: tuple[str, ...]

    def __str__(self) -> str:
        return f"row {self.row}: {self.side} {self.indicator} listed by {', '.join(self.feeds)}"


@dataclass(frozen=True)
class AddressColumns:
    """A text column as keys: rows holding IPv4 / IPv6 addresses, and their keys."""

    rows4: npt.NDArray[np.int64]
    keys4: npt.NDArray[np.uint32]
    rows6: npt.NDArray[np.int64]
    keys6: npt.NDArray[np.bytes_]


def address_columns(texts: Sequence[str | None]) -> AddressColumns:
    """Parse a column of addresses; empty, missing and unparsable values are left out."""
    rows4: list[int] = []
    keys4: list[int] = []
    rows6: list[int] = []
    keys6: list[bytes] = []
    pton = socket.inet_pton
    for row, text in enumerate(texts):
        if not text:
            continue
        try:
            if ":" in text:
                keys6.append(pton(socket.AF_INET6, text))
                rows6.append(row)
            else:
                keys4.append(int.from_bytes(pton(socket.AF_INET, text), "big"))
                rows4.append(row)
        except OSError:
            continue
    return AddressColumns(
        np.array(rows4, np.int64),
        np.array(keys4, np.uint32),
        np.array(rows6, np.int64),
        np.array(keys6, "S16") if keys6 else np.zeros(0, "S16"),
    )


def flow_hits(
    index: FeedIndex, source_ips: Sequence[str | None], dest_ips: Sequence[str | None]
) -> list[ThreatHit]:
    """One hit per listed source or destination address, in row order."""
    hits: list[ThreatHit] = []
    for side, texts in (("source", source_ips), ("dest", dest_ips)):
        columns = address_columns(texts)
        for rows, keys in ((columns.rows4, columns.keys4), (columns.rows6, columns.keys6)):
            if len(rows) == 0:
                continue
            masks = index.lookup(keys)
            for position in np.flatnonzero(masks).tolist():
                row = int(rows[position])
                feeds = index.feeds_of(int(masks[position]))
                hits.append(ThreatHit(row, side, str(texts[row]), feeds))
    return sorted(hits, key=lambda hit: (hit.row, hit.side != "source"))


def dns_hits(
    index: FeedIndex, names: Sequence[str | None], subdomains: bool = False
) -> list[ThreatHit]:
    """One hit per DNS name (a query or an answer) that a domain feed lists."""
    hits = []
    for row, name in enumerate(names):
        if not name:
            continue
        try:
            feeds = index.check_domain(name, subdomains)
        except UsageError:  # not a domain name (a PTR answer, garbage): not an indicator
            continue
        if feeds:
            hits.append(ThreatHit(row, "dns", name, feeds))
    return hits
