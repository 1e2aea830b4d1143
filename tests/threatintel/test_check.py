"""`FeedIndex`: bulk lookups of address columns against several overlapping feeds, checked
against a plain Python oracle, and single indicators (addresses and domains)."""

from __future__ import annotations

import ipaddress
import random
import socket
from unittest.mock import patch

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwarden.errors import UsageError
from netwarden.threatintel import check
from netwarden.threatintel.check import FeedIndex
from netwarden.threatintel.match import address_columns, dns_hits, flow_hits, ipv4_keys


def test_bulk_lookup_matches_the_oracle() -> None:
    rng = random.Random(7)
    feeds: dict[str, list[str]] = {}
    for name in ("a", "b", "c"):
        entries = []
        for _ in range(300):
            base = rng.choice([0x0A000000, 0xC6336400, 0])
            entries.append(
                str(
                    ipaddress.IPv4Network(
                        (base + rng.randint(0, 4000), rng.choice([32, 30, 24, 28])), strict=False
                    )
                )
            )
        feeds[name] = entries
    feeds["edges"] = ["0.0.0.0/32", "255.255.255.255/32"]
    index = FeedIndex.from_sets(feeds)
    networks = {name: [ipaddress.ip_network(e) for e in entries] for name, entries in feeds.items()}
    probes = [rng.choice([0x0A000000, 0xC6336400, 0]) + rng.randint(0, 5000) for _ in range(3000)]
    probes += [0, 2**32 - 1, 2**32 - 2]
    masks = index.lookup(np.array(probes, dtype=np.uint32))
    for value, mask in zip(probes, masks.tolist(), strict=True):
        address = ipaddress.IPv4Address(value)
        expected = tuple(n for n in index.names if any(address in net for net in networks[n]))
        assert index.feeds_of(mask) == expected, address


def test_ipv6_columns_in_both_layouts() -> None:
    index = FeedIndex.from_sets(
        {"v6": ["2001:db8::/64", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"]}
    )
    values = [
        int(ipaddress.IPv6Address(text))
        for text in (
            "2001:db8::1",
            "2001:db8:0:1::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::",
        )
    ]
    pairs = np.array([[v >> 64, v & (2**64 - 1)] for v in values], dtype=np.uint64)
    keys = np.array([v.to_bytes(16, "big") for v in values], dtype="S16")
    assert index.lookup(pairs).tolist() == [1, 0, 1, 0]
    assert index.lookup(keys).tolist() == [1, 0, 1, 0]
    with pytest.raises(TypeError):
        index.lookup(np.zeros(3, np.int64))


def test_check_indicators() -> None:
    index = FeedIndex.from_sets(
        {"ips": ["198.51.100.0/24", "2001:db8::/32"], "more": ["198.51.100.7/32"]},
        {"dns": ["evil.example"], "dns2": ["evil.example", "phish.example"]},
    )
    assert index.check("198.51.100.7") == ("ips", "more")
    assert index.check("198.51.100.8") == ("ips",)
    assert index.check("203.0.113.1") == ()
    assert index.check("2001:db8::5") == ("ips",)
    assert index.check("EVIL.example.") == ("dns", "dns2")
    assert index.check("login.phish.example") == ()
    assert index.check("login.phish.example", subdomains=True) == ("dns2",)
    with pytest.raises(UsageError, match="neither an IP address nor a domain"):
        index.check("not a thing")


def test_empty_index() -> None:
    index = FeedIndex.from_sets({})
    assert index.lookup(np.array([1, 2], np.uint32)).tolist() == [0, 0]
    assert index.check("192.0.2.1") == ()


def test_long_columns_take_the_block_table_with_the_same_answers() -> None:
    rng = np.random.default_rng(5)
    starts = rng.integers(0, 2**32, 5000, dtype=np.uint64)
    entries = [
        f"{ipaddress.IPv4Address(int(s))}/{int(n)}"
        for s, n in zip(starts, rng.integers(20, 33, 5000), strict=True)
    ]
    index = FeedIndex.from_sets(
        {"a": entries[:2500], "b": entries[2500:], "edge": ["255.255.255.255/32", "0.0.0.0/32"]}
    )
    keys = rng.integers(0, 2**32, 400_000, dtype=np.uint64).astype(np.uint32)
    keys[:1000] = (starts[:1000] & 0xFFFFFFFF).astype(np.uint32)  # listed for sure
    keys[1000:1002] = [0, 2**32 - 1]
    whole = index.lookup(keys)  # one long column: the block table
    pieces = np.concatenate(
        [index.lookup(keys[i : i + 50_000]) for i in range(0, len(keys), 50_000)]
    )
    assert np.array_equal(whole, pieces)
    assert (whole[:1000] != 0).all() and whole[1000] == 4 and whole[1001] == 4


def test_flow_and_dns_hits() -> None:
    index = FeedIndex.from_sets(
        {"bad": ["198.51.100.0/24", "2001:db8:bad::/48"], "c2": ["203.0.113.9/32"]},
        {"dns": ["evil.example"]},
    )
    sources = ["10.0.0.1", "203.0.113.9", None, "2001:db8:bad::1", "garbage"]
    dests = ["198.51.100.7", "10.0.0.2", "198.51.100.1", "2001:db8::1", "203.0.113.9"]
    assert [str(hit) for hit in flow_hits(index, sources, dests)] == [
        "row 0: dest 198.51.100.7 listed by bad",
        "row 1: source 203.0.113.9 listed by c2",
        "row 2: dest 198.51.100.1 listed by bad",
        "row 3: source 2001:db8:bad::1 listed by bad",
        "row 4: dest 203.0.113.9 listed by c2",
    ]
    names = [
        "ok.example",
        "EVIL.example",
        "a.evil.example",
        None,
        "1.2.3.4.in-addr.arpa",
        "not a name",
    ]
    assert [(h.row, h.feeds) for h in dns_hits(index, names)] == [(1, ("dns",))]
    assert [h.row for h in dns_hits(index, names, subdomains=True)] == [1, 2]


# Property tests: both IPv4 lookup paths (a direct search of the range starts, and the block
# table long columns take) against a plain interval oracle, and the vectorized text parser
# against the C library's inet_pton.

_prefix = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32))
_feeds = st.lists(st.lists(_prefix, max_size=12), min_size=1, max_size=4)


def _oracle(feeds: list[list[tuple[int, int]]], address: int) -> int:
    mask = 0
    for bit, prefixes in enumerate(feeds):
        for base, length in prefixes:
            size = 1 << (32 - length)
            if base // size * size <= address < base // size * size + size:
                mask |= 1 << bit
    return mask


@settings(max_examples=60, deadline=None)
@given(feeds=_feeds, seed=st.integers(0, 2**32 - 1))
def test_both_lookup_paths_match_an_interval_oracle(
    feeds: list[list[tuple[int, int]]], seed: int
) -> None:
    index = FeedIndex.from_sets(
        {
            f"f{bit}": [str(ipaddress.IPv4Network((b, n), strict=False)) for b, n in prefixes]
            for bit, prefixes in enumerate(feeds)
        }
    )
    rng = np.random.default_rng(seed)
    edges = [
        value
        for prefixes in feeds
        for base, length in prefixes
        for start in [base >> (32 - length) << (32 - length)]
        for value in (
            start - 1,
            start,
            start + (1 << (32 - length)) - 1,
            start + (1 << (32 - length)),
        )
    ]
    probes = np.array(
        [v % 2**32 for v in edges] + [0, 2**32 - 1] + rng.integers(0, 2**32, 200).tolist(),
        dtype=np.uint64,
    ).astype(np.uint32)
    expected = [_oracle(feeds, int(v)) for v in probes.tolist()]
    assert index.lookup(probes).tolist() == expected  # short column: direct search
    with patch.object(check, "TABLE_FROM", 0):  # the same column through the block table
        assert index.lookup(probes).tolist() == expected


def test_block_table_on_a_big_feed_agrees_with_the_direct_search() -> None:
    rng = np.random.default_rng(11)
    singles = rng.integers(0, 2**32, 30_000, dtype=np.uint64)
    entries = [str(ipaddress.IPv4Address(int(v))) for v in singles]
    entries += [str(ipaddress.IPv4Address(int(v) & ~255)) + "/24" for v in singles[:300]]
    entries += ["10.0.0.0/8", "10.1.2.3/32", "11.0.0.0/31"]
    index = FeedIndex.from_sets({"a": entries[::2], "b": entries[1::2], "c": entries[-3:]})
    keys = rng.integers(0, 2**32, 300_000, dtype=np.uint64).astype(np.uint32)
    keys[:20_000] = singles[:20_000].astype(np.uint32)
    keys[20_000:20_004] = [0x0A000000, 0x0AFFFFFF, 0x0A010203, 0x0B000001]
    with patch.object(check, "TABLE_FROM", 10**9):
        direct = index.lookup(keys)
    table = index.lookup(keys)
    assert np.array_equal(direct, table)
    assert (table[:20_000] != 0).all()
    edge_keys, edge_masks = keys[20_000:20_004].tolist(), table[20_000:20_004].tolist()
    for value, mask in zip(edge_keys, edge_masks, strict=True):
        found = index.feeds_of(int(mask))
        assert "c" in found and found == index.check(str(ipaddress.IPv4Address(value)))


_octet_text = st.one_of(
    st.integers(0, 300).map(str),
    st.sampled_from(["00", "01", "007", "", "1a", " 1", "-1", "+1", "٣", "0x1"]),
)
_address_text = st.one_of(
    st.lists(_octet_text, min_size=3, max_size=5).map(".".join),
    st.text(alphabet="0123456789.:abcdef x", max_size=20),
    st.integers(0, 2**32 - 1).map(lambda v: str(ipaddress.IPv4Address(v))),
    st.none(),
)


def _pton4(text: str | None) -> int | None:
    if not text or ":" in text:
        return None
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except OSError:
        return None


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(_address_text, max_size=30))
def test_vectorized_ipv4_parsing_accepts_exactly_what_inet_pton_does(
    texts: list[str | None],
) -> None:
    rows, keys = ipv4_keys(texts)
    expected = [(row, key) for row, key in enumerate(map(_pton4, texts)) if key is not None]
    assert list(zip(rows.tolist(), keys.tolist(), strict=True)) == expected
    columns = address_columns(pa.chunked_array([texts[:5], texts[5:]], pa.string()))
    assert columns.rows4.tolist() == rows.tolist() and columns.keys4.tolist() == keys.tolist()
