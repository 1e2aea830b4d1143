"""The oracle for connectivity maps: netwarden's engines asked pair by pair.

Every two distinct pods, and each pod with each outside address range (both ways), are asked
about one representative flow per atom: the port space cut wherever a rule's port range or a
pod's named port starts or ends, the portless protocols grouped into those a rule names and
the rest, the IPv4 space cut at every block a rule or network set names. Inside an atom no
policy can tell flows apart, so one answer per atom is the exact answer for all of it. (The
cuts cover Kubernetes, admin and Calico peers and ports; an ICMP flow is an echo request, so
ICMP type and code rules are answered for that message only.)

    found = reference_connectivity(cluster)     # PolicyEngine.decide, one flow at a time
    found = vectorized_connectivity(cluster)    # the same questions in one vectorized batch
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

try:  # imported as benchmarks.connectivity_oracle (tests), or from a script in benchmarks/
    from benchmarks.connectivity_sets import (
        NON_PORTED,
        PORT_SPACE,
        PORTED,
        ConnectivityMap,
        End,
        Interval,
        Intervals,
        IPRange,
        normalize,
        subtract,
    )
except ModuleNotFoundError:
    from connectivity_sets import (  # type: ignore[no-redef, import-not-found]
        NON_PORTED,
        PORT_SPACE,
        PORTED,
        ConnectivityMap,
        End,
        Interval,
        Intervals,
        IPRange,
        normalize,
        subtract,
    )
from netwarden.analysis.atoms import enforced_rules
from netwarden.engine import PolicyEngine, evaluate
from netwarden.engine.batch import ProbeBatch
from netwarden.model import (
    ICMP,
    ClusterState,
    Endpoint,
    EndpointKind,
    EntityMatch,
    Flow,
    NetworkPeer,
    Rule,
    external_endpoint,
)

IPV4_LAST = 2**32 - 1


def port_atoms(cluster: ClusterState) -> dict[int, list[Interval]]:
    """Per ported protocol, the port ranges no rule and no named port tells apart."""
    cuts: dict[int, set[int]] = {protocol: {1, 65536} for protocol in PORTED}
    for rule in enforced_rules(cluster):
        for match in (*rule.ports, *rule.not_ports):
            if match.ports is None:
                continue
            for protocol in PORTED if match.protocol is None else (match.protocol,):
                if protocol in cuts:
                    cuts[protocol].update((match.ports.start, match.ports.end + 1))
    # named ports, and the ports a Service in a Calico rule opens
    declared = [(n.protocol, n.port) for e in cluster.endpoints for n in e.ports]
    declared += [(p.protocol, p.port) for service in cluster.services for p in service.ports]
    for protocol, port in declared:
        if protocol in cuts:
            cuts[protocol].update((port, port + 1))
    atoms: dict[int, list[Interval]] = {}
    for protocol, points in cuts.items():
        ordered = sorted(p for p in points if 1 <= p <= 65536)
        atoms[protocol] = [(s, e - 1) for s, e in itertools.pairwise(ordered)]
    return atoms


def protocol_atoms(cluster: ClusterState) -> list[Intervals]:
    """Portless protocols in classes no rule tells apart: each one a rule names (and ICMP),
    then all the rest together."""
    named = {ICMP}
    for rule in enforced_rules(cluster):
        named.update(m.protocol for m in (*rule.ports, *rule.not_ports) if m.protocol is not None)
        named.update(p for p in (rule.protocol, rule.not_protocol) if p is not None)
    singles = normalize((p, p) for p in named if p not in PORTED)
    rest = subtract(NON_PORTED, singles)
    return [((s, s),) for s, _ in singles] + ([rest] if rest else [])


def _networks(rule: Rule) -> Iterator[IPv4Network]:
    for peer in rule.peers:
        if isinstance(peer, NetworkPeer):
            yield from (n for n in (peer.cidr, *peer.excepted) if isinstance(n, IPv4Network))
        elif isinstance(peer, EntityMatch):
            yield from (n for n in (*peer.nets, *peer.not_nets) if isinstance(n, IPv4Network))


def address_atoms(cluster: ClusterState) -> list[IPRange]:
    """The IPv4 space cut at every block a rule or network set names, and around each node
    and Service address (node peers and Calico service matches look at those)."""
    cuts = {0, IPV4_LAST + 1}
    networks = [n for rule in enforced_rules(cluster) for n in _networks(rule)]
    networks += [n for s in cluster.network_sets for n in s.nets if isinstance(n, IPv4Network)]
    for network in networks:
        cuts.update((int(network[0]), int(network[-1]) + 1))
    addresses = [ip for node in cluster.nodes for ip in node.ips]
    addresses += [ip for service in cluster.services for ip in service.ips]
    for ip in addresses:
        if isinstance(ip, IPv4Address):
            cuts.update((int(ip), int(ip) + 1))
    return [IPRange(s, e - 1) for s, e in itertools.pairwise(sorted(cuts))]


class Questions(NamedTuple):
    """What the oracle asks: the ends (pods, then one outside endpoint per address atom), the
    ordered pairs of them as index arrays, and one representative flow per port / protocol
    atom with the set it stands for."""

    names: list[End]
    endpoints: list[Endpoint]
    src: npt.NDArray[np.int32]
    dst: npt.NDArray[np.int32]
    flows: list[tuple[int, int, Intervals, Intervals]]  # protocol, port, protocols, ports


def questions(cluster: ClusterState) -> Questions:
    """Every two distinct pods, and each pod with each outside address atom both ways. An
    address atom stands for addresses outside the inventory (an external endpoint at its
    first address), as NCA's IP blocks do."""
    pods = [e for e in cluster.endpoints if e.kind is EndpointKind.POD]
    atoms = address_atoms(cluster)
    names: list[End] = [pod.key for pod in pods] + list(atoms)
    endpoints = pods + [external_endpoint(IPv4Address(atom.first)) for atom in atoms]
    count, outside = len(pods), np.arange(len(pods), len(names), dtype=np.int32)
    src, dst = np.divmod(np.arange(count * count, dtype=np.int32), count)
    distinct = src != dst
    pod_index = np.arange(count, dtype=np.int32)
    src = np.concatenate(
        [src[distinct], np.repeat(pod_index, len(outside)), np.tile(outside, count)]
    )
    dst = np.concatenate(
        [dst[distinct], np.tile(outside, count), np.repeat(pod_index, len(outside))]
    )
    flows: list[tuple[int, int, Intervals, Intervals]] = []
    for protocol, port_ranges in port_atoms(cluster).items():
        flows += [(protocol, s, ((protocol, protocol),), ((s, e),)) for s, e in port_ranges]
    flows += [(group[0][0], 0, group, PORT_SPACE) for group in protocol_atoms(cluster)]
    return Questions(names, endpoints, src.astype(np.int32), dst.astype(np.int32), flows)


def reference_connectivity(cluster: ClusterState) -> ConnectivityMap:
    """What the reference engine (`PolicyEngine.decide`) allows, one flow at a time for every
    question of `questions`: slow, and the oracle the others answer to."""
    engine = PolicyEngine(cluster)
    asked = questions(cluster)
    found = ConnectivityMap()
    for a, b in zip(asked.src.tolist(), asked.dst.tolist(), strict=True):
        src, dst = asked.endpoints[a], asked.endpoints[b]
        for protocol, port, protocols, ports in asked.flows:
            if engine.decide(Flow(src, dst, port, protocol)).allowed:
                found.allow(asked.names[a], asked.names[b], protocols, ports)
    return found


def vectorized_connectivity(cluster: ClusterState) -> ConnectivityMap:
    """The same questions answered in one batch by the vectorized engine (`evaluate`), for
    inputs too large to decide flow by flow."""
    asked = questions(cluster)
    pairs, kinds = len(asked.src), len(asked.flows)
    protocol = np.array([f[0] for f in asked.flows], dtype=np.int32)
    port = np.array([f[1] for f in asked.flows], dtype=np.int32)
    batch = ProbeBatch(
        tuple(asked.endpoints),
        np.repeat(asked.src, kinds),
        np.repeat(asked.dst, kinds),
        np.tile(port, pairs),
        np.tile(protocol, pairs),
    )
    allowed = evaluate(cluster, batch).allowed.reshape(pairs, kinds)
    found = ConnectivityMap()
    for pair, flow in zip(*np.nonzero(allowed), strict=True):
        _, _, protocols, ports = asked.flows[flow]
        src, dst = asked.names[asked.src[pair]], asked.names[asked.dst[pair]]
        found.allow(src, dst, protocols, ports)
    return found
