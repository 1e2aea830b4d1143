"""Which feeds list an indicator: one address, one domain, or a whole column of flow addresses.

`FeedIndex` cuts the address space at every boundary of every feed's ranges; each piece
carries a bit mask of the feeds that hold it (feed `i` is bit `i`). A lookup is then one
`np.searchsorted` over the sorted boundaries for the whole column, and one gather of masks:

    >>> index = FeedIndex.from_sets({"bad": ["198.51.100.0/24"], "worse": ["198.51.100.7/32"]})
    >>> index.feeds_of(int(index.lookup(np.array([0xC6336407], dtype=np.uint32))[0]))
    ('bad', 'worse')

IPv4 addresses are `uint32`; IPv6 addresses are `(N, 2)` `uint64` (high, low halves) or
16-byte big-endian `S16` keys. Domains match exactly, after lower-casing and dropping a
trailing dot (as Calico's DomainNameSet does), and also as the parent of a queried name when
`subdomains=True`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address, ip_address

import numpy as np
import numpy.typing as npt

from netwarden.errors import UsageError
from netwarden.model import FeedContent
from netwarden.threatintel.aggregate import Keys, Prefixes, join_v6, merge
from netwarden.threatintel.parse import normalize_domain, parse_ip_texts
from netwarden.threatintel.state import FeedStore

MAX_FEEDS = 64  # one bit per feed in a uint64 mask


#: IPv4 columns longer than this are searched bucket by bucket (see `_pieces_v4`).
BUCKETED_FROM = 200_000
_BUCKET_SHIFT = 20  # 4,096 buckets of 2**20 addresses


@dataclass(frozen=True)
class _FamilyIndex:
    bounds: Keys  # piece i covers [bounds[i], bounds[i+1])
    masks: npt.NDArray[np.uint64]

    def lookup(self, keys: Keys) -> npt.NDArray[np.uint64]:
        if len(self.bounds) == 0:
            return np.zeros(len(keys), np.uint64)
        if keys.dtype == np.uint32 and len(keys) >= BUCKETED_FROM:
            piece = self._pieces_v4(keys)
        else:
            piece = np.searchsorted(self.bounds, keys, side="right") - 1
        found = self.masks[np.maximum(piece, 0)]
        found[piece < 0] = 0
        return found

    def _pieces_v4(self, keys: npt.NDArray[np.uint32]) -> npt.NDArray[np.int64]:
        """`searchsorted(bounds, keys) - 1`, with the keys grouped by their top 12 bits first.

        A binary search of random keys over a million bounds misses the cache at nearly
        every step; grouped (a stable sort of 16-bit bucket numbers is a radix sort, linear),
        each group searches only its own slice of the bounds, which stays in cache. About
        twice as fast on this machine for 10 million keys."""
        edges = self._bucket_edges
        bucket = (keys >> np.uint32(_BUCKET_SHIFT)).astype(np.uint16)
        order = np.argsort(bucket, kind="stable")
        starts = np.concatenate([[0], np.cumsum(np.bincount(bucket, minlength=len(edges) - 1))])
        grouped = keys[order]
        pieces = np.empty(len(keys), np.int64)
        for b in np.flatnonzero(starts[1:] - starts[:-1]).tolist():
            first, last = starts[b], starts[b + 1]
            low, high = edges[b], edges[b + 1]
            found = np.searchsorted(self.bounds[low:high], grouped[first:last], side="right")
            pieces[first:last] = found + (low - 1)
        out = np.empty_like(pieces)
        out[order] = pieces
        return out

    @cached_property
    def _bucket_edges(self) -> npt.NDArray[np.int64]:
        """For each bucket, the index of the first bound at or after its first address."""
        firsts = np.arange((1 << (32 - _BUCKET_SHIFT)) + 1, dtype=np.uint64) << np.uint64(
            _BUCKET_SHIFT
        )
        return np.searchsorted(self.bounds.astype(np.uint64), firsts, side="left").astype(np.int64)


def _family_index(family: int, per_feed: Sequence[Prefixes]) -> _FamilyIndex:
    ranges = [merge(prefixes) for prefixes in per_feed]
    last = 2**32 if family == 4 else None
    edges: list[Keys] = []
    for r in ranges:
        edges.append(r.starts)
        edges.append(_after(family, r.ends))
    if not edges or sum(len(e) for e in edges) == 0:
        dtype = np.uint64 if family == 4 else np.dtype("S16")
        return _FamilyIndex(np.zeros(0, dtype), np.zeros(0, np.uint64))
    bounds = np.unique(np.concatenate(edges))
    masks = np.zeros(len(bounds), np.uint64)
    for bit, r in enumerate(ranges):
        if len(r) == 0:
            continue
        index = np.searchsorted(r.ends, bounds, side="left")
        inside = index < len(r)
        member = np.zeros(len(bounds), bool)
        member[inside] = r.starts[index[inside]] <= bounds[inside]
        masks[member] |= np.uint64(1 << bit)
    if family == 4:
        # The piece that starts at 2**32 is empty; uint32 bounds search uint32 columns as is.
        keep = bounds < last
        return _FamilyIndex(bounds[keep].astype(np.uint32), masks[keep])
    return _FamilyIndex(bounds, masks)


def _after(family: int, ends: Keys) -> Keys:
    """end + 1, where the last address of IPv6 (no successor) is dropped."""
    if family == 4:
        return np.asarray(ends, np.uint64) + np.uint64(1)
    last = ends == b"\xff" * 16
    values = ends[~last]
    pairs = np.ascontiguousarray(values).view(">u8").reshape(-1, 2).astype(np.uint64)
    hi, lo = pairs[:, 0], pairs[:, 1]
    carry = lo == np.uint64((1 << 64) - 1)
    return join_v6(hi + carry.astype(np.uint64), np.where(carry, np.uint64(0), lo + 1))


class FeedIndex:
    """Every feed's addresses and domains, for lookups by indicator or by column."""

    def __init__(
        self,
        names: Sequence[str],
        v4: Sequence[Prefixes],
        v6: Sequence[Prefixes],
        domains: Mapping[str, tuple[str, ...]],
    ) -> None:
        if len(names) > MAX_FEEDS:
            raise UsageError(f"{len(names)} IP feeds: a feed index holds at most {MAX_FEEDS}")
        self.names = tuple(names)
        self._v4 = _family_index(4, v4)
        self._v6 = _family_index(6, v6)
        self._domains = dict(domains)

    @classmethod
    def from_sets(
        cls, ip_sets: Mapping[str, Iterable[str]], domain_sets: Mapping[str, Iterable[str]] = {}
    ) -> FeedIndex:
        """From CIDR texts per feed name and domain names per feed name."""
        names = list(ip_sets)
        parsed = [parse_ip_texts(list(ip_sets[name])) for name in names]
        domains: dict[str, list[str]] = {}
        for feed, listed in domain_sets.items():
            for domain in listed:
                domains.setdefault(domain, []).append(feed)
        return cls(
            names,
            [p.v4 for p in parsed],
            [p.v6 for p in parsed],
            {d: tuple(sorted(f)) for d, f in domains.items()},
        )

    @classmethod
    def from_store(cls, store: FeedStore) -> FeedIndex:
        """The sets in force of every feed synced into `store`."""
        ip_sets: dict[str, list[str]] = {}
        domain_sets: dict[str, list[str]] = {}
        for name in store.names():
            status = store.status(name)
            entries = store.entries(name)
            if status is None or entries is None:
                continue
            if status.content == FeedContent.DOMAIN_SET.value:
                domain_sets[name] = entries
            else:
                ip_sets[name] = entries
        return cls.from_sets(ip_sets, domain_sets)

    def lookup(self, addresses: Keys) -> npt.NDArray[np.uint64]:
        """Feed masks for a column of addresses: uint32 (IPv4), (N, 2) uint64 or S16 (IPv6)."""
        if addresses.dtype == np.uint32:
            return self._v4.lookup(addresses)
        if addresses.dtype.kind == "S":
            return self._v6.lookup(addresses)
        if addresses.ndim == 2 and addresses.shape[1] == 2:
            return self._v6.lookup(join_v6(addresses[:, 0], addresses[:, 1]))
        raise TypeError("addresses must be uint32 (IPv4), (N, 2) uint64 or S16 (IPv6)")

    def feeds_of(self, mask: int) -> tuple[str, ...]:
        return tuple(name for bit, name in enumerate(self.names) if mask >> bit & 1)

    def check(self, indicator: str, subdomains: bool = False) -> tuple[str, ...]:
        """The feeds that list an address or a domain name (empty: none)."""
        try:
            address = ip_address(indicator.strip())
        except ValueError:
            return self.check_domain(indicator, subdomains)
        if isinstance(address, IPv4Address):
            mask = self._v4.lookup(np.array([int(address)], np.uint32))[0]
        else:
            mask = self._v6.lookup(np.array([address.packed], "S16"))[0]
        return self.feeds_of(int(mask))

    def check_domain(self, domain: str, subdomains: bool = False) -> tuple[str, ...]:
        name = normalize_domain(domain)
        if name is None:
            raise UsageError(f"{domain!r} is neither an IP address nor a domain name")
        found = set(self._domains.get(name, ()))
        if subdomains:
            labels = name.split(".")
            for start in range(1, len(labels) - 1):
                found.update(self._domains.get(".".join(labels[start:]), ()))
        return tuple(sorted(found))
