"""What a feed may never block, and when a new version of a feed waits for a person.

A feed is outside data, sometimes broken, sometimes hostile: a line `10.0.0.0/8` would cut a
cluster off from itself. So an entry that overlaps anything protected is withheld (reported
with its line and what it overlaps, never blocked): loopback, link-local, the cluster's own
node, pod and Service addresses and the CIDRs given with `--protect`, and the allowlist. The
whole entry is withheld, not the part outside the protected range: an entry that covers
the cluster is a mistake to look at, not something to half-apply.

A new version that shrinks to nothing, or grows past `max_growth_factor` times the last good
size, is held: the last good set stays in force until someone accepts the new one
(`feeds sync --accept NAME`). A feed that was empty, or smaller than `GROWTH_FLOOR`, may
grow freely up to that floor, so a young feed is not held for every addition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network

import numpy as np

from netwarden.model import ClusterState, IPNetwork
from netwarden.threatintel.aggregate import Prefixes, aggregate
from netwarden.threatintel.parse import parse_ip_texts

#: Never blocked, whatever a feed or the configuration says.
ALWAYS_PROTECTED: tuple[tuple[IPNetwork, str], ...] = (
    (IPv4Network("127.0.0.0/8"), "loopback"),
    (IPv6Network("::1/128"), "loopback"),
    (IPv4Network("169.254.0.0/16"), "link-local"),
    (IPv6Network("fe80::/10"), "link-local"),
)
#: A feed may grow to this many entries without being held, whatever its last size.
GROWTH_FLOOR = 100


@dataclass(frozen=True)
class ProtectedNet:
    network: IPNetwork
    reason: str  # "loopback", "node worker-1", "pod shop/db-0", "allowlist", "--protect"


@dataclass(frozen=True)
class Withheld:
    """A feed entry not blocked because it overlaps something protected."""

    where: str
    entry: str
    overlaps: str

    def __str__(self) -> str:
        return f"{self.where}: {self.entry} not blocked: overlaps {self.overlaps}"


def protected_nets(
    cluster: ClusterState | None = None,
    allowlist: Iterable[IPNetwork] = (),
    protect: Iterable[IPNetwork] = (),
) -> list[ProtectedNet]:
    """Loopback and link-local, the cluster's own addresses, `--protect` CIDRs, the allowlist."""
    found = [ProtectedNet(network, reason) for network, reason in ALWAYS_PROTECTED]
    found += [ProtectedNet(network, "allowlist") for network in allowlist]
    found += [ProtectedNet(network, "protected CIDR") for network in protect]
    if cluster is not None:
        for node in cluster.nodes:
            found += [ProtectedNet(ip_network(ip), f"node {node.name}") for ip in node.ips]
        for endpoint in cluster.endpoints:
            if endpoint.kind.value != "external":
                found += [ProtectedNet(ip_network(ip), endpoint.key) for ip in endpoint.ips]
        for service in cluster.services:
            reason = f"Service {service.namespace}/{service.name}"
            found += [ProtectedNet(ip_network(ip), reason) for ip in service.ips]
    return found


def withhold(
    prefixes: Prefixes, protected: Sequence[ProtectedNet], unit: str = "line"
) -> tuple[Prefixes, list[Withheld]]:
    """Split `prefixes` into those that may be blocked and those that overlap `protected`."""
    same = [p for p in protected if p.network.version == prefixes.family]
    if not same or len(prefixes) == 0:
        return prefixes, []
    parsed = parse_ip_texts([str(p.network) for p in same])
    guard = aggregate(parsed.v4 if prefixes.family == 4 else parsed.v6)
    guard_starts = guard.networks
    guard_ends = guard.ends()
    starts, ends = prefixes.networks, prefixes.ends()
    # The first protected range that ends at or after an entry's start is the only one that
    # can overlap it (the ranges are sorted and disjoint).
    index = np.searchsorted(guard_ends, starts, side="left")
    inside = index < len(guard_starts)
    overlap = np.zeros(len(prefixes), dtype=bool)
    overlap[inside] = guard_starts[index[inside]] <= ends[inside]
    if not overlap.any():
        return prefixes, []
    bad = prefixes.select(overlap)
    withheld = []
    for text, line in zip(bad.cidrs(), bad.lines.tolist(), strict=True):
        network = ip_network(text)
        reasons = sorted({p.reason for p in same if p.network.overlaps(network)})
        withheld.append(Withheld(f"{unit} {line}", text, ", ".join(reasons[:3])))
    return prefixes.select(~overlap), withheld


def hold_reason(previous: int | None, new: int, max_growth_factor: float) -> str | None:
    """Why a new version of a feed must wait for review, or None when it may be applied."""
    if previous is None:
        return None
    if previous > 0 and new == 0:
        return f"shrank from {previous} entries to nothing"
    if new > max(previous * max_growth_factor, GROWTH_FLOOR):
        return f"grew from {previous} to {new} entries (more than x{max_growth_factor:g})"
    return None
