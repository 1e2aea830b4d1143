"""Which feeds list an indicator: one address, one domain, or a whole column of flow addresses.

`FeedIndex` cuts the address space at every boundary of every feed's ranges; each piece
carries a bit mask of the feeds that hold it (feed `i` is bit `i`). For IPv4 the listed
pieces become disjoint ranges (start, end, mask): a lookup is one `np.searchsorted` of the
whole column over the range starts, one comparison with the ends and one gather of masks;
a long column first reads a table of 2**24 blocks (see `_V4Ranges`), so only the addresses
of blocks a range boundary cuts are searched at all:

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


#: IPv4 columns at least this long go through the block table (see `_V4Ranges`); shorter
#: ones search the range starts directly, which costs less than building the table.
TABLE_FROM = 200_000
#: The block table has about this many blocks per listed range (at most 2**24 blocks, 64 MB).
_BLOCKS_PER_RANGE = 16
_MIXED = -2  # a block table entry: a range boundary falls inside the block
_UNLISTED = -1  # a block table entry: no range touches the block


@dataclass(frozen=True)
class _FamilyIndex:
    bounds: Keys  # piece i covers [bounds[i], bounds[i+1])
    masks: npt.NDArray[np.uint64]

    def lookup(self, keys: Keys) -> npt.NDArray[np.uint64]:
        if len(self.bounds) == 0:
            return np.zeros(len(keys), np.uint64)
        piece = np.searchsorted(self.bounds, keys, side="right") - 1
        found = self.masks[np.maximum(piece, 0)]
        found[piece < 0] = 0
        return found


@dataclass(frozen=True)
class _BlockTable:
    """Per block of 2**shift addresses: the range that covers all of it, `_UNLISTED` or
    `_MIXED`."""

    shift: int
    entries: npt.NDArray[np.int32]


@dataclass(frozen=True)
class _V4Ranges:
    """The listed IPv4 space as disjoint ranges `[starts[i], ends[i]]` with their feed masks.

    A binary search of random addresses over a million range starts misses the cache at
    nearly every step, so long columns first read a table indexed by the address's top bits:
    most blocks are wholly inside one range or outside all (one gather answers), and only
    the addresses of mixed blocks (about 15% with a 1M-entry feed) are searched, sorted first
    so that consecutive searches walk the same cache lines."""

    starts: npt.NDArray[np.uint32]
    ends: npt.NDArray[np.uint32]
    masks: npt.NDArray[np.uint64]

    @classmethod
    def from_pieces(cls, pieces: _FamilyIndex) -> _V4Ranges:
        bounds = pieces.bounds.astype(np.uint64)
        changes = np.ones(len(bounds), np.bool_)
        changes[1:] = pieces.masks[1:] != pieces.masks[:-1]  # equal neighbours: one range
        bounds, masks = bounds[changes], pieces.masks[changes]
        listed = np.flatnonzero(masks)
        after = np.append(bounds, np.uint64(1 << 32))[listed + 1]
        return cls(
            bounds[listed].astype(np.uint32),
            (after - np.uint64(1)).astype(np.uint32),
            masks[listed],
        )

    def lookup(self, keys: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint64]:
        if len(self.starts) == 0:
            return np.zeros(len(keys), np.uint64)
        if len(keys) < TABLE_FROM:
            return self._search(keys)
        table = self._table
        entry = table.entries[keys >> np.uint32(table.shift)]
        found: npt.NDArray[np.uint64] = self._masks_or_zero[entry]  # both markers read 0
        mixed = np.flatnonzero(entry == _MIXED)
        found[mixed] = self._search_sorted(keys[mixed])
        return found

    def _search(self, keys: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint64]:
        at = np.searchsorted(self.starts, keys, side="right") - 1
        inside = np.maximum(at, 0)
        hit = (at >= 0) & (keys <= self.ends[inside])
        return np.where(hit, self.masks[inside], np.uint64(0))

    def _search_sorted(self, keys: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint64]:
        """`_search` with the keys sorted first: each key packed above its position in one
        uint64, so one (SIMD) sort yields both the order and the way back."""
        position = np.arange(len(keys), dtype=np.uint64)
        packed = np.sort((keys.astype(np.uint64) << np.uint64(32)) | position)
        found = np.empty(len(keys), np.uint64)
        found[(packed & np.uint64(0xFFFFFFFF)).astype(np.intp)] = self._search(
            (packed >> np.uint64(32)).astype(np.uint32)
        )
        return found

    @cached_property
    def _masks_or_zero(self) -> npt.NDArray[np.uint64]:
        """The masks, then two zeros: index -1 (`_UNLISTED`) and -2 (`_MIXED`) read 0."""
        return np.concatenate([self.masks, np.zeros(2, np.uint64)])

    @cached_property
    def _table(self) -> _BlockTable:
        wanted = max(len(self.starts), 1) * _BLOCKS_PER_RANGE
        shift = 32 - min(max(int(wanted - 1).bit_length(), 8), 24)
        size = 1 << shift
        starts, ends = self.starts.astype(np.int64), self.ends.astype(np.int64)
        first_full = (starts + size - 1) >> shift  # the first block wholly in the range
        after_full = (ends + 1) >> shift  # the block after its last whole block
        whole = np.flatnonzero(first_full < after_full)
        # Ranges are disjoint, so the blocks they wholly cover never overlap: mark where each
        # run of blocks begins (+ (range + 1)) and ends (- (range + 1)), then add up.
        steps = np.zeros((1 << (32 - shift)) + 1, np.int32)
        number = (whole + 1).astype(np.int32)
        steps[first_full[whole]] += number
        steps[after_full[whole]] -= number
        entries = np.cumsum(steps[:-1], dtype=np.int32) - 1  # 0 (no range) -> _UNLISTED
        entries[starts[(starts & (size - 1)) != 0] >> shift] = _MIXED
        entries[ends[((ends + 1) & (size - 1)) != 0] >> shift] = _MIXED
        return _BlockTable(shift, entries)


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
        self._v4 = _V4Ranges.from_pieces(_family_index(4, v4))
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
