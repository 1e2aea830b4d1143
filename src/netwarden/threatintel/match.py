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
from collections.abc import Iterable, Mapping, Sequence
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


# ------------------------------------------------------------------------------ DNS names


def normalize_names(texts: Sequence[str | None] | Any) -> Any:
    """DNS names as domain feeds keep them: lower case, without the trailing dot (an Arrow
    string array; nulls stay null).

        >>> normalize_names(["Evil.Example.", None]).to_pylist()
        ['evil.example', None]
    """
    return pc.utf8_rtrim(pc.utf8_lower(_string_array(texts)), characters=".")


class DomainSets:
    """The names every domain feed lists, for whole columns of DNS names at once.

    A name matches exactly, after lower-casing and dropping a trailing dot: Calico Enterprise
    looks a DomainNameSet up in its DNS logs with exact terms on `qname`, `rrsets.name` and
    `rrsets.rdata`, so a subdomain of a listed name is not listed (unless a CNAME leads to
    the listed name, which then appears among the answers).

        >>> sets = DomainSets({"bad": ["evil.example"], "worse": ["Evil.Example."]})
        >>> sets.feeds_of("evil.example"), sets.feeds_of("www.evil.example")
        (('bad', 'worse'), ())
    """

    def __init__(self, domain_sets: Mapping[str, Iterable[str]]) -> None:
        feeds: dict[str, list[str]] = {}
        for feed in sorted(domain_sets):  # so each name's feeds come in name order
            names = normalize_names(list(domain_sets[feed])).drop_null()
            for name in pc.unique(names).to_pylist():
                if name:
                    feeds.setdefault(name, []).append(feed)
        self._feeds = feeds
        self.names = pa.array(list(feeds), pa.string())

    def __len__(self) -> int:
        return len(self._feeds)

    def feeds_of(self, name: str) -> tuple[str, ...]:
        """The feeds that list a normalized name (empty: none)."""
        return tuple(self._feeds.get(name, ()))


@dataclass(frozen=True)
class NameHits:
    """Per DNS record of a batch, each listed name among its query and answers (one pair per
    record and name): `rows` index the batch, `names` are normalized (Arrow strings)."""

    rows: npt.NDArray[np.int64]
    names: Any

    def __len__(self) -> int:
        return len(self.rows)


def dns_name_hits(domains: DomainSets, qnames: Any, answers: Any) -> NameHits:
    """The listed names of each record, from its `dns_qname` (Arrow strings) and its
    `dns_answers` (Arrow lists of strings): every distinct text is normalized and looked up
    once, then mapped back to its records by Arrow's hash lookup (`index_in`), so no Python
    object is made per record.

        >>> sets = DomainSets({"bad": ["evil.example"]})
        >>> hits = dns_name_hits(sets, pa.array(["a.shop.example", "evil.example", "x.example"]),
        ...     pa.array([["Evil.Example.", "192.0.2.1"], ["192.0.2.1"], []]))
        >>> hits.rows.tolist(), hits.names.to_pylist()
        ([0, 1], ['evil.example', 'evil.example'])
    """
    qnames = _string_array(qnames)
    answers = answers.combine_chunks() if isinstance(answers, pa.ChunkedArray) else answers
    empty = NameHits(np.zeros(0, np.int64), pa.array([], pa.string()))
    if len(domains) == 0 or len(qnames) == 0:
        return empty
    values = pa.concat_arrays([qnames, pc.list_flatten(answers).cast(pa.string())])
    rows = np.concatenate(
        [
            np.arange(len(qnames), dtype=np.int64),
            np.asarray(pc.list_parent_indices(answers).to_numpy(), dtype=np.int64),
        ]
    )
    distinct = pc.unique(values).drop_null()
    normalized = normalize_names(distinct)
    listed = pc.fill_null(pc.is_in(normalized, value_set=domains.names), False)
    if not pc.any(listed).as_py():
        return empty
    position = pc.index_in(values, value_set=distinct.filter(listed))
    found = np.flatnonzero(position.is_valid().to_numpy(zero_copy_only=False))
    names = pc.take(normalized.filter(listed), pc.take(position, pa.array(found)))
    # A record may hold one name twice (asked, and again as an answer): one pair each.
    pairs = pa.table({"row": pa.array(rows[found]), "name": names})
    pairs = pairs.group_by(["row", "name"], use_threads=False).aggregate([])
    pairs = pairs.sort_by([("row", "ascending"), ("name", "ascending")])
    return NameHits(
        np.asarray(pairs.column("row").to_numpy(), dtype=np.int64),
        pairs.column("name").combine_chunks(),
    )
