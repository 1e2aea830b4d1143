"""The collector: flow records from netwarden's own dataplane, with the rule that decided them.

On each node, `collect_sources.NodeSources` reads the flow logs of the ruleset (compiled with
`flow_logs=True`: one NFLOG message per rule a new connection's first packet hits, per
direction) and conntrack's per-connection counters. `flow_records` joins the two on the
connection's 5-tuple: the logged hits give the action and the policies in Calico's
`<index>|<tier>|<policy>|<action>|<rule>` form (egress hits make the `src` reporter's record,
ingress hits the `dst` reporter's), conntrack gives packets and bytes each way, start and end;
the inventory gives each end's identity. A denied connection has no conntrack entry (its
first packet never left): its counters are the packets that were logged and dropped.

Inventory changes while collecting (pods come, go, change labels), so a record is named from
the inventory valid when its connection started: of the timed `enrich.InventorySnapshot`s the
collector is given, the latest taken at or before the first logged packet (the earliest for an
older one), as `enrich` picks them. `policies_pending` is decided on that inventory too
(`collect_pending`).

    collector = FlowCollector(cluster, {"node-a": "nw-lab-node-a"})  # or with a timeline
    collector.start()
    ...                                   # traffic
    result = collector.stop()             # result.table: FLOW_SCHEMA records
    store.append(result.table)

Nothing is dropped silently: packets that are not endpoint traffic (IPv6 multicast listener
reports, link-local), conntrack entries of connections whose first packet came before
collection started, and unreadable lines are counted in `CollectResult`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_address, ip_network
from typing import Any

from netwarden.flows.collect_pending import PendingQuestion, pending_hits
from netwarden.flows.collect_sources import (
    ConnectionCounters,
    NodeSources,
    PacketLog,
    SourceOutput,
)
from netwarden.flows.enrich import InventorySnapshot
from netwarden.flows.schema import empty_table, from_records
from netwarden.model import ClusterState, Direction, Endpoint, EndpointKind, protocol_name
from netwarden.model.endpoints import NetworkSet

PROFILE = "__PROFILE__"
#: What Calico's `name_aggr` calls a private address (`pvt`): RFC 1918 and IPv6 unique local.
PRIVATE_NETWORKS = tuple(
    ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
#: Connection key: protocol, source, destination, source port, destination port.
Key = tuple[int, str, str, int | None, int | None]
#: The inventory snapshots valid during a collection, asked for when it stops.
Timeline = Callable[[], Sequence[InventorySnapshot]]


@dataclass(frozen=True)
class CollectResult:
    """The records, and an account of everything read that did not become one."""

    table: Any  # FLOW_SCHEMA Arrow table
    packets: int  # flow log messages read
    ignored_packets: int  # not endpoint traffic (multicast, link-local, unspecified)
    connections: int  # conntrack entries read
    unmatched_connections: int  # no logged first packet (opened before collection began)
    unreadable: tuple[str, ...]
    inventories: int = 1  # inventory snapshots the records were named from


def _endpoint_traffic(packet: PacketLog) -> bool:
    for text in (packet.src, packet.dst):
        address = ip_address(text)
        if address.is_multicast or address.is_link_local or address.is_unspecified:
            return False
    return True


def _final(hit: str) -> bool:
    return hit.split("|")[2:3] in (["allow"], ["deny"])


@dataclass(frozen=True)
class _Connection:
    """The logged packets of one connection in one direction, in order."""

    node: str
    direction: Direction
    key: Key
    packets: tuple[PacketLog, ...]

    @property
    def hits(self) -> list[str]:
        """The first packet's hits: up to the first allow or deny (retransmissions repeat)."""
        found = []
        for packet in self.packets:
            found.append(packet.hit)
            if _final(packet.hit):
                break
        return found

    @property
    def action(self) -> str:
        final = self.hits[-1].split("|")
        return final[2] if len(final) > 2 and final[2] in ("allow", "deny") else "deny"


class Identity:
    """Endpoint identity for addresses, from the inventory: pods are workloads, node and
    hostNetwork addresses hosts, network set members network sets, the rest external."""

    def __init__(self, cluster: ClusterState, extra_sets: Sequence[NetworkSet] = ()) -> None:
        self.cluster = cluster
        self.nodes = {ip: node.name for node in cluster.nodes for ip in node.ips}
        self.network_sets = (*cluster.network_sets, *extra_sets)

    def of(self, text: str, side: str) -> dict[str, Any]:
        address = ip_address(text)
        endpoint = self.cluster.endpoints_by_ip.get(address)
        if endpoint is not None and endpoint.kind is EndpointKind.POD:
            return self._fields(
                side,
                "workload",
                endpoint.namespace,
                endpoint.name,
                aggregate_name(endpoint),
                endpoint.labels,
            )
        if endpoint is not None and endpoint.kind is not EndpointKind.EXTERNAL:
            node = endpoint.node or self.nodes.get(address) or endpoint.name
            return self._fields(side, "host", "-", node, node, endpoint.labels)
        if address in self.nodes:
            return self._fields(side, "host", "-", self.nodes[address], self.nodes[address], {})
        for network_set in self.network_sets:
            if any(address in net for net in network_set.nets):
                namespace = network_set.namespace or "-"
                return self._fields(
                    side,
                    "networkset",
                    namespace,
                    network_set.name,
                    network_set.name,
                    network_set.labels,
                )
        where = "pvt" if any(address in net for net in PRIVATE_NETWORKS) else "pub"
        return self._fields(side, "external", "-", "-", where, {})

    @staticmethod
    def _fields(
        side: str,
        kind: str,
        namespace: str | None,
        name: str,
        aggregate: str,
        labels: Mapping[str, str],
    ) -> dict[str, Any]:
        return {
            f"{side}_type": kind,
            f"{side}_namespace": namespace or "-",
            f"{side}_name": name,
            f"{side}_name_aggr": aggregate,
            f"{side}_labels": sorted(f"{k}={v}" for k, v in labels.items()),
        }


def aggregate_name(endpoint: Endpoint) -> str:
    """Calico's aggregated pod name: the owner's prefix and `*` (`frontend-7d4f9-*`)."""
    if endpoint.workload:
        return f"{endpoint.workload.rpartition('/')[2]}-*"
    prefix, dash, _ = endpoint.name.rpartition("-")
    return f"{prefix}-*" if dash else endpoint.name


class InventoryTimeline:
    """Inventory snapshots in time order, each with its identities (made when first asked)."""

    def __init__(self, inventory: ClusterState | Sequence[InventorySnapshot]) -> None:
        if isinstance(inventory, ClusterState):  # one inventory, valid all along
            inventory = [InventorySnapshot(datetime.fromtimestamp(0, UTC), inventory)]
        if not inventory:
            raise ValueError("flow records need an inventory snapshot to name endpoints from")
        self.snapshots = sorted(inventory, key=lambda snapshot: snapshot.taken_at)
        self.times = [snapshot.taken_at.timestamp() for snapshot in self.snapshots]
        self._identities: dict[int, Identity] = {}

    def at(self, seconds: float) -> int:
        """The snapshot valid at `seconds`: the latest taken at or before, else the first."""
        return max(bisect_right(self.times, seconds) - 1, 0)

    def identity(self, index: int) -> Identity:
        if index not in self._identities:
            snapshot = self.snapshots[index]
            self._identities[index] = Identity(snapshot.cluster, snapshot.extra_sets)
        return self._identities[index]


def flow_records(
    inventory: ClusterState | Sequence[InventorySnapshot], outputs: Mapping[str, SourceOutput]
) -> CollectResult:
    """Join each node's flow logs with its conntrack counters into flow records, each named
    from the inventory valid when its connection started."""
    timeline = InventoryTimeline(inventory)
    records: list[dict[str, Any]] = []
    questions: list[tuple[int, PendingQuestion]] = []
    packets = ignored = connections = unmatched = 0
    unreadable: list[str] = []
    for node, output in outputs.items():
        unreadable += [f"{node}: {line}" for line in output.unreadable]
        packets += len(output.packets)
        grouped: dict[tuple[Direction, Key], list[PacketLog]] = defaultdict(list)
        for packet in sorted(output.packets, key=lambda p: p.time):
            if not _endpoint_traffic(packet):
                ignored += 1
                continue
            key = (packet.protocol, packet.src, packet.dst, packet.sport, packet.dport)
            grouped[(packet.direction, key)].append(packet)
        counters = _counters_by_key(output.connections)
        connections += len(output.connections)
        logged = {key for _, key in grouped}
        unmatched += sum(1 for key in counters if key not in logged)
        for (direction, key), logs in grouped.items():
            connection = _Connection(node, direction, key, tuple(logs))
            when = timeline.at(connection.packets[0].time)
            records.append(_record(connection, counters.get(key), timeline.identity(when)))
            questions.append((when, _question(connection)))
    _add_pending(records, questions, timeline)
    table = from_records(list(records)) if records else empty_table()  # as Mappings
    return CollectResult(
        table,
        packets,
        ignored,
        connections,
        unmatched,
        tuple(unreadable),
        len({when for when, _ in questions}) or 1,
    )


def _add_pending(
    records: list[dict[str, Any]],
    questions: Sequence[tuple[int, PendingQuestion]],
    timeline: InventoryTimeline,
) -> None:
    """Fill `policies_pending`, each record decided on the inventory it was named from."""
    by_snapshot: dict[int, list[int]] = defaultdict(list)
    for position, (when, _) in enumerate(questions):
        by_snapshot[when].append(position)
    for when, positions in by_snapshot.items():
        asked = [questions[position][1] for position in positions]
        pending = pending_hits(timeline.snapshots[when].cluster, asked)
        if pending is None:  # this inventory stages nothing
            continue
        for position, hits in zip(positions, pending, strict=True):
            records[position]["policies_pending"] = hits


def _question(connection: _Connection) -> PendingQuestion:
    """What the staged set is asked about a record: its connection, from its reporter."""
    protocol, src, dst, _, dport = connection.key
    return PendingQuestion(src, dst, dport or 0, protocol, connection.direction)


def _counters_by_key(entries: list[ConnectionCounters]) -> dict[Key, ConnectionCounters]:
    """One entry per connection: its DESTROY event when there is one (final counters), else
    the table as read when collection stopped."""
    found: dict[Key, ConnectionCounters] = {}
    for entry in entries:
        key = (entry.protocol, entry.src, entry.dst, entry.sport, entry.dport)
        if key not in found or (entry.ended and not found[key].ended):
            found[key] = entry
    return found


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _record(
    connection: _Connection, counters: ConnectionCounters | None, identity: Identity
) -> dict[str, Any]:
    protocol, src, dst, sport, dport = connection.key
    egress = connection.direction is Direction.EGRESS
    source, dest = identity.of(src, "source"), identity.of(dst, "dest")
    reporter = source if egress else dest
    side = "source" if egress else "dest"
    hits = [_profile(hit, reporter[f"{side}_namespace"]) for hit in connection.hits]
    first, last = connection.packets[0], connection.packets[-1]
    action = connection.action
    if counters is not None and action == "allow":
        sent = (counters.packets_orig, counters.bytes_orig)
        answered = (counters.packets_reply, counters.bytes_reply)
        end, completed = max(counters.seen, first.time), counters.ended
    else:  # dropped here, or dropped further on before conntrack confirmed it
        sent = (len(connection.packets), sum(p.length for p in connection.packets))
        answered = (0, 0)
        end, completed = last.time, True
    # Counters are the reporter's: out is what it sent, in what it received.
    (packets_out, bytes_out), (packets_in, bytes_in) = (
        (sent, answered) if egress else (answered, sent)
    )
    return {
        "start_time": _time(first.time),
        "end_time": _time(end),
        "source_ip": src,
        "dest_ip": dst,
        "source_port": sport,
        "dest_port": dport,
        "proto": protocol_name(protocol).lower(),
        **source,
        **dest,
        "action": action,
        "reporter": "src" if egress else "dst",
        "host": connection.node,
        "policies_enforced": [f"{i}|{hit}" for i, hit in enumerate(hits)],
        "policies_pending": [],
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "packets_in": packets_in,
        "packets_out": packets_out,
        "num_flows": 1,
        "num_flows_started": 1,
        "num_flows_completed": 1 if completed else 0,
    }


def _profile(hit: str, namespace: str) -> str:
    """The ruleset logs `__PROFILE__|__PROFILE__|...`; Calico names the namespace's profile."""
    if hit.startswith(f"{PROFILE}|{PROFILE}|"):
        return hit.replace(f"{PROFILE}|{PROFILE}|", f"{PROFILE}|{PROFILE}.kns.{namespace}|", 1)
    return hit


class FlowCollector:
    """Collect on several nodes at once: node name -> its network namespace (None: here).
    Endpoints are named from `cluster`, or from the snapshots `timeline` gives when
    collection stops (when the inventory changes while collecting)."""

    def __init__(
        self,
        cluster: ClusterState,
        nodes: Mapping[str, str | None],
        timeline: Timeline | None = None,
    ) -> None:
        self.cluster = cluster
        self.timeline = timeline
        self.sources = {node: NodeSources(netns) for node, netns in nodes.items()}
        self._started: list[NodeSources] = []

    def start(self) -> None:
        """Start every node's readers; if one cannot start, stop those already started."""
        try:
            for sources in self.sources.values():
                sources.start()
                self._started.append(sources)
        except BaseException:
            self.close()
            raise

    def stop(self) -> CollectResult:
        outputs = {node: sources.stop() for node, sources in self.sources.items()}
        self._started.clear()
        if self.timeline is None:
            return flow_records(self.cluster, outputs)
        return flow_records(self.timeline(), outputs)

    def close(self) -> None:
        for sources in self._started:
            sources.close()
        self._started.clear()
