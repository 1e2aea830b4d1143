"""Flow records against the feeds: every flow to or from a listed address, and every DNS name
(query or answer) that a domain feed lists, becomes a hit naming feed and indicator.

For the flow store: address columns arrive as text (the flow schema's `source_ip` /
`dest_ip`); `address_columns` turns a column into uint32 / S16 keys once (IPv4 vectorized in
Arrow, `ipv4_keys`), `FeedIndex.lookup` does the rest in bulk. Only listed rows become
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
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

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


#: A dotted quad exactly as `inet_pton(AF_INET)` takes it: four decimal octets, no leading
#: zeros (values above 255 are refused after the match).
_OCTET = "0|[1-9][0-9]{0,2}"
_DOTTED_QUAD = "^" + r"\.".join(f"(?P<{name}>{_OCTET})" for name in "abcd") + "$"


def ipv4_keys(texts: Any) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]]:
    """The rows of a text column (a list, or an Arrow string array) that hold an IPv4
    address, and the addresses as uint32 keys: one regular expression and four casts run by
    Arrow over the whole column, no Python object per row.

        >>> ipv4_keys(["10.0.0.1", None, "2001:db8::1", "192.0.2.300", "0.0.0.255"])
        (array([0, 4]), array([167772161,       255], dtype=uint32))
    """
    column = _string_array(texts)
    parts = pc.extract_regex(column, _DOTTED_QUAD)
    matched = parts.is_valid().to_numpy(zero_copy_only=False)
    octets = [
        pc.fill_null(pc.cast(pc.struct_field(parts, [i]), pa.uint16()), 0).to_numpy()
        for i in range(4)
    ]
    valid = matched & (np.maximum.reduce(octets) <= 255)
    rows = np.flatnonzero(valid)
    key = np.zeros(len(rows), np.uint32)
    for octet in octets:
        key <<= np.uint32(8)
        key |= octet[rows].astype(np.uint32)
    return rows.astype(np.int64), key


def _string_array(texts: Any) -> Any:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not isinstance(texts, pa.Array):
        texts = pa.array(texts, pa.string())
    if not pa.types.is_string(texts.type):
        texts = texts.cast(pa.string())
    return texts


def address_columns(texts: Sequence[str | None] | Any) -> AddressColumns:
    """Parse a column of addresses (a list, or an Arrow string array); empty, missing and
    unparsable values are left out. IPv4 goes through `ipv4_keys`; only the rows holding a
    colon (IPv6 candidates, rare in flow logs) are parsed one by one."""
    column = _string_array(texts)
    rows4, keys4 = ipv4_keys(column)
    rows6: list[int] = []
    keys6: list[bytes] = []
    candidates = np.flatnonzero(
        pc.fill_null(pc.match_substring(column, ":"), False).to_numpy(zero_copy_only=False)
    )
    pton = socket.inet_pton
    for row in candidates.tolist():
        try:
            keys6.append(pton(socket.AF_INET6, column[row].as_py()))
        except OSError:
            continue
        rows6.append(row)
    return AddressColumns(
        rows4,
        keys4,
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
