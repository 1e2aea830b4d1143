"""Prefixes -> the fewest CIDRs that cover exactly the same addresses, with numpy.

A feed of a million lines is mostly duplicates, addresses inside listed prefixes and runs of
neighbours. Each prefix is an inclusive address range; ranges are sorted, merged where they
overlap or touch (a running maximum of the ends finds the groups), and each merged range is cut
into the largest aligned blocks that fit, which is the minimal CIDR cover
(`ipaddress.collapse_addresses` computes the same, one object at a time).

IPv4 values are `uint64` (room for `end + 1`). IPv6 values are 16-byte big-endian strings
(`S16`): numpy sorts and searches them in address order, and `np.unique` ranks them where
arithmetic is needed. IPv6 blocks are cut per merged range with Python integers: feeds carry
few IPv6 prefixes, and a merged range yields at most 2 x 128 blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
#: Address values: uint64 (IPv4) or S16 (IPv6); numpy's stubs cannot say which.
Keys = npt.NDArray[Any]
#: MASKS[k] = 2**k - 1: the host bits of a block with k host bits (k = 0..64).
MASKS = np.array([(1 << k) - 1 for k in range(65)], dtype=np.uint64)
_ALL64 = (1 << 64) - 1
_LAST_V6 = b"\xff" * 16


@dataclass(frozen=True)
class Prefixes:
    """Prefixes of one family in input order, host bits cleared, with where each was read
    (a 1-based line or item number) so that safety reports can point at the input."""

    family: int  # 4 or 6
    networks: Keys  # v4: uint64 values; v6: S16 big-endian
    lengths: npt.NDArray[np.uint8]
    lines: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def bits(self) -> int:
        return 32 if self.family == 4 else 128

    def ends(self) -> Keys:
        """The last address of every prefix."""
        host = (self.bits - self.lengths.astype(np.int64)).astype(np.int64)
        if self.family == 4:
            return np.asarray(self.networks, dtype=np.uint64) | MASKS[host]
        hi, lo = split_v6(self.networks)
        lo_end = lo | MASKS[np.minimum(host, 64)]
        hi_end = hi | MASKS[np.maximum(host - 64, 0)]
        return join_v6(hi_end, lo_end)

    def select(self, keep: npt.NDArray[np.bool_]) -> Prefixes:
        return Prefixes(self.family, self.networks[keep], self.lengths[keep], self.lines[keep])

    def cidrs(self) -> list[str]:
        return cidr_texts(self.family, self.networks, self.lengths)


@dataclass(frozen=True)
class Ranges:
    """Sorted, disjoint, non-adjacent inclusive address ranges of one family."""

    family: int
    starts: Keys
    ends: Keys

    def __len__(self) -> int:
        return len(self.starts)


def empty_prefixes(family: int) -> Prefixes:
    dtype = np.uint64 if family == 4 else np.dtype("S16")
    return Prefixes(family, np.zeros(0, dtype=dtype), np.zeros(0, np.uint8), np.zeros(0, np.int64))


def split_v6(keys: Keys) -> tuple[U64, U64]:
    """S16 big-endian keys -> (high 64 bits, low 64 bits)."""
    pairs = np.ascontiguousarray(keys).view(">u8").reshape(-1, 2).astype(np.uint64)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def join_v6(hi: U64, lo: U64) -> Keys:
    """(high, low) 64-bit halves -> S16 big-endian keys that sort in address order."""
    pairs = np.stack([hi, lo], axis=1).astype(">u8")
    return np.ascontiguousarray(pairs).view("S16").reshape(-1)


def v6_key(value: int) -> bytes:
    return value.to_bytes(16, "big")


def _plus_one(family: int, values: Keys) -> Keys:
    """`value + 1`; the last IPv6 address wraps to 0, which no merge can mistake for a gap."""
    if family == 4:
        return np.asarray(values, dtype=np.uint64) + np.uint64(1)
    hi, lo = split_v6(values)
    carry = lo == np.uint64(_ALL64)
    return join_v6(hi + carry.astype(np.uint64), np.where(carry, np.uint64(0), lo + 1))


def _running_max(values: Keys) -> Keys:
    if values.dtype.kind == "S":  # bytes have no maximum ufunc: accumulate over their ranks
        unique, rank = np.unique(values, return_inverse=True)
        return unique[np.maximum.accumulate(rank.reshape(-1))]
    return np.maximum.accumulate(values)


def merge(prefixes: Prefixes) -> Ranges:
    """Union of the prefixes as sorted disjoint ranges; touching ranges are joined."""
    if len(prefixes) == 0:
        return Ranges(prefixes.family, prefixes.networks[:0], prefixes.networks[:0])
    order = np.argsort(prefixes.networks, kind="stable")
    starts = prefixes.networks[order]
    ends = prefixes.ends()[order]
    reach = _running_max(ends)
    # A range opens a new group when it starts past the reach of everything before it plus 1.
    after_reach = _plus_one(prefixes.family, reach[:-1])
    opens = np.concatenate([[True], starts[1:] > after_reach])
    if prefixes.family == 6:  # past the last address there is nothing left to open
        opens[1:] &= reach[:-1] != _LAST_V6
    first = np.flatnonzero(opens)
    last = np.concatenate([first[1:] - 1, [len(starts) - 1]])
    return Ranges(prefixes.family, starts[first], reach[last])


def cover(ranges: Ranges) -> Prefixes:
    """The minimal CIDR cover of disjoint ranges, in address order."""
    if ranges.family == 6:
        return _cover_v6(ranges)
    start = np.asarray(ranges.starts, dtype=np.uint64).copy()
    end = np.asarray(ranges.ends, dtype=np.uint64)
    networks: list[U64] = []
    lengths: list[npt.NDArray[np.uint8]] = []
    owner: list[npt.NDArray[np.int64]] = []
    active = np.arange(len(start))
    while len(active):
        s, e = start[active], end[active]
        # The largest block that starts at s: as aligned as s is, and no longer than the rest.
        lowest = np.where(s == 0, np.uint64(1 << 32), s & (~s + np.uint64(1)))
        align = np.log2(lowest.astype(np.float64)).astype(np.int64)
        room = np.floor(np.log2((e - s + np.uint64(1)).astype(np.float64))).astype(np.int64)
        size = np.minimum(np.minimum(align, room), 32)
        # float64 rounds sizes near 2**53 only; IPv4 sizes are below 2**33, so this is exact.
        networks.append(s)
        lengths.append((32 - size).astype(np.uint8))
        owner.append(active)
        start[active] = s + (np.uint64(1) << size.astype(np.uint64))
        active = active[start[active] <= e]
    if not networks:
        return empty_prefixes(4)
    all_networks = np.concatenate(networks)
    order = np.argsort(all_networks, kind="stable")
    return Prefixes(
        4,
        all_networks[order],
        np.concatenate(lengths)[order],
        np.concatenate(owner)[order].astype(np.int64),
    )


def _cover_v6(ranges: Ranges) -> Prefixes:
    networks: list[bytes] = []
    lengths: list[int] = []
    for start_key, end_key in zip(ranges.starts.tolist(), ranges.ends.tolist(), strict=True):
        start = int.from_bytes(start_key.ljust(16, b"\0"), "big")
        end = int.from_bytes(end_key.ljust(16, b"\0"), "big")
        while start <= end:
            align = (start & -start).bit_length() - 1 if start else 128
            size = min(align, (end - start + 1).bit_length() - 1)
            networks.append(v6_key(start))
            lengths.append(128 - size)
            start += 1 << size
    return Prefixes(
        6,
        np.array(networks, dtype="S16") if networks else np.zeros(0, "S16"),
        np.array(lengths, dtype=np.uint8),
        np.zeros(len(lengths), np.int64),
    )


def aggregate(prefixes: Prefixes) -> Prefixes:
    """Duplicates, contained and adjacent prefixes merged into the minimal CIDR set.

    >>> from netwarden.threatintel.parse import parse_ip_texts
    >>> aggregate(parse_ip_texts(["10.0.0.0/25", "10.0.0.128/25", "10.0.0.7"]).v4).cidrs()
    ['10.0.0.0/24']
    """
    return cover(merge(prefixes))


def cidr_texts(family: int, networks: Keys, lengths: npt.NDArray[np.uint8]) -> list[str]:
    """Prefixes as `a.b.c.d/len` (v4) or compressed IPv6 text."""
    if family == 4:
        values = np.asarray(networks, dtype=np.uint64).astype(np.uint32)
        octets = values.astype(">u4").view(np.uint8).reshape(-1, 4).tolist()
        return [
            f"{o[0]}.{o[1]}.{o[2]}.{o[3]}/{length}"
            for o, length in zip(octets, lengths.tolist(), strict=True)
        ]
    return [
        str(IPv6Network((int.from_bytes(key.ljust(16, b"\0"), "big"), length)))
        for key, length in zip(networks.tolist(), lengths.tolist(), strict=True)
    ]


def to_networks(prefixes: Prefixes) -> list[IPv4Network | IPv6Network]:
    """As `ipaddress` networks (for the model's network sets and for tests)."""
    if prefixes.family == 4:
        return [
            IPv4Network((int(n), int(length)))
            for n, length in zip(prefixes.networks.tolist(), prefixes.lengths.tolist(), strict=True)
        ]
    return [
        IPv6Network((int.from_bytes(key.ljust(16, b"\0"), "big"), length))
        for key, length in zip(prefixes.networks.tolist(), prefixes.lengths.tolist(), strict=True)
    ]
