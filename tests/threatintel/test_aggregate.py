"""Aggregation against its oracle, `ipaddress.collapse_addresses`, on generated prefix lists
that cluster (so that duplicates, containment and adjacency are common) in both families,
including the first and last addresses of each space."""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Network, IPv6Network

from hypothesis import given, settings
from hypothesis import strategies as st

from netwarden.threatintel.aggregate import aggregate, merge, to_networks
from netwarden.threatintel.parse import parse_ip_texts


def v4_prefix() -> st.SearchStrategy[str]:
    base = st.sampled_from([0, 0x0A000000, 0xC6336400, 0xFFFFFE00])
    return st.builds(
        lambda b, offset, length: str(IPv4Network(((b + offset) % 2**32, length), strict=False)),
        base,
        st.integers(0, 1023),
        st.sampled_from([32, 32, 32, 31, 30, 29, 26, 24, 23, 16, 1, 0]),
    )


def v6_prefix() -> st.SearchStrategy[str]:
    base = st.sampled_from([0, 0x20010DB8 << 96, 2**128 - 2048, (2**64 - 512) << 0])
    return st.builds(
        lambda b, offset, length: str(IPv6Network(((b + offset) % 2**128, length), strict=False)),
        base,
        st.integers(0, 2047),
        st.sampled_from([128, 128, 127, 126, 120, 65, 64, 63, 1, 0]),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(v4_prefix(), v6_prefix()), max_size=60))
def test_aggregation_equals_collapse_addresses(texts: list[str]) -> None:
    parsed = parse_ip_texts(texts)
    assert parsed.bad_count == 0
    networks = [ipaddress.ip_network(text) for text in texts]
    assert to_networks(aggregate(parsed.v4)) == list(
        ipaddress.collapse_addresses(n for n in networks if n.version == 4)
    )
    assert to_networks(aggregate(parsed.v6)) == list(
        ipaddress.collapse_addresses(n for n in networks if n.version == 6)
    )


def test_duplicates_contained_and_adjacent_prefixes() -> None:
    texts = ["10.0.0.0/25", "10.0.0.128/25", "10.0.0.7", "10.0.0.7", "10.0.1.0/24", "10.0.3.0"]
    assert aggregate(parse_ip_texts(texts).v4).cidrs() == ["10.0.0.0/23", "10.0.3.0/32"]


def test_whole_spaces() -> None:
    everything = parse_ip_texts(["0.0.0.0/0", "255.255.255.255", "::/0", "ffff::1"])
    assert aggregate(everything.v4).cidrs() == ["0.0.0.0/0"]
    assert aggregate(everything.v6).cidrs() == ["::/0"]
    top = parse_ip_texts(
        ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"]
    )
    assert aggregate(top.v6).cidrs() == ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"]


def test_merge_gives_disjoint_ranges_in_order() -> None:
    ranges = merge(parse_ip_texts(["10.0.0.9", "10.0.0.0/29", "10.0.0.8", "192.0.2.0/24"]).v4)
    assert ranges.starts.tolist() == [0x0A000000, 0xC0000200]
    assert ranges.ends.tolist() == [0x0A000009, 0xC00002FF]
