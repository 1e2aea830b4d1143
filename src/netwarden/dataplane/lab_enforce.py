"""Policy in the lab: each lab node gets the nftables ruleset of the same inputs, and probes are
compared with the engine's verdicts.

The lab's view of a cluster is the cluster with the addresses and nodes the lab gave to pods
that had none (`lab_view`), so that the compiler and the engine decide on the very addresses
the packets carry. `compile_lab` renders one ruleset per lab node with the lab's veth names;
`enforce_lab` checks them all, then loads each with one `nft -f` transaction and clears the
nodes' connection tracking (so every later probe is decided by the new ruleset).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

from netwarden.dataplane.apply import apply_ruleset as load_ruleset
from netwarden.dataplane.apply import check_ruleset, flush_conntrack
from netwarden.dataplane.lab_probe import ProbeOutcome, ProbeResult
from netwarden.dataplane.lab_state import AppliedRuleset, SourceText
from netwarden.dataplane.lab_topology import LabNode, LabPlan
from netwarden.dataplane.nftables import Ruleset, compile_ruleset
from netwarden.dialects.source import Document, expand_paths, read_text
from netwarden.engine import evaluate
from netwarden.engine.batch import Probe, resolve_probes
from netwarden.errors import InputError, LabError
from netwarden.model import ClusterState, EndpointKind, Location


def read_sources(paths: Sequence[str | Path]) -> tuple[SourceText, ...]:
    """The text of every input file (`-` is standard input), read once."""
    sources = []
    for path in expand_paths(paths):
        if str(path) == "-":
            sources.append(SourceText("<stdin>", sys.stdin.read()))
            continue
        try:
            sources.append(SourceText(str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(Location(str(path)), f"cannot read: {error}") from None
    return tuple(sources)


def source_documents(sources: Iterable[SourceText]) -> list[Document]:
    return [document for source in sources for document in read_text(source.text, source.path)]


def interface_prefix(plan: LabPlan) -> str:
    """What every pod veth of the lab starts with (the name prefix, e.g. `nw`)."""
    return plan.prefix.removesuffix(f"-{plan.name}-")


def node_interfaces(plan: LabPlan) -> dict[str, dict[str, str]]:
    """Per lab node: pod key -> the node-side veth of that pod."""
    router_ifname = {link.leaf_netns: link.router_ifname for link in plan.links}
    found: dict[str, dict[str, str]] = {node.name: {} for node in plan.nodes}
    for endpoint in plan.endpoints:
        if endpoint.kind is EndpointKind.POD and endpoint.node is not None:
            found[endpoint.node][endpoint.key] = router_ifname[endpoint.netns]
    return found


def lab_view(cluster: ClusterState, plan: LabPlan) -> ClusterState:
    """The cluster with the IPv4 addresses and nodes the lab gave to pods and nodes that had
    none. A pod whose written address differs from the lab's means the inventory changed
    since `lab up`: that raises."""
    placed = {endpoint.key: endpoint for endpoint in plan.endpoints}
    lab_nodes = {node.name: node for node in plan.nodes}
    endpoints = []
    for endpoint in cluster.endpoints:
        there = placed.get(endpoint.key)
        if there is None or endpoint.kind is EndpointKind.EXTERNAL:
            endpoints.append(endpoint)
            continue
        written = tuple(ip for ip in endpoint.ips if isinstance(ip, IPv4Address))
        if written and set(written) != set(there.ips):
            raise LabError(
                f"{endpoint.key} has address {', '.join(map(str, written))} in the inputs but "
                f"{', '.join(map(str, there.ips))} in lab {plan.name}: the inventory changed, "
                "re-create the lab"
            )
        ips = endpoint.ips if written else (*there.ips, *endpoint.ips)
        endpoints.append(replace(endpoint, ips=ips, node=endpoint.node or there.node))
    nodes = [
        replace(node, ips=node.ips or (lab_nodes[node.name].ips if node.name in lab_nodes else ()))
        for node in cluster.nodes
    ]
    return replace(cluster, endpoints=tuple(endpoints), nodes=tuple(nodes))


def compile_lab(
    cluster: ClusterState, plan: LabPlan, flow_logs: bool = False
) -> list[tuple[LabNode, Ruleset]]:
    """One ruleset per lab node, for the pods of the inputs the lab runs there. A lab pod the
    inputs do not have is left out, so its node drops its traffic (fail closed). `flow_logs`:
    while a collection runs (`LabState.flow_logs`)."""
    view = lab_view(cluster, plan)
    prefix = interface_prefix(plan)
    interfaces = node_interfaces(plan)
    return [
        (
            node,
            compile_ruleset(
                view,
                node.name,
                {k: v for k, v in interfaces[node.name].items() if k in view.endpoints_by_key},
                prefix,
                flow_logs=flow_logs,
            ),
        )
        for node in plan.nodes
    ]


def enforce_lab(
    rulesets: Sequence[tuple[LabNode, Ruleset]], flush: bool = True
) -> tuple[AppliedRuleset, ...]:
    """Check every node's ruleset, then load each (one transaction per node) and clear the
    nodes' connection tracking. A ruleset nft rejects stops everything before any change."""
    for node, ruleset in rulesets:
        check_ruleset(node.netns, ruleset.script)
    applied = []
    for node, ruleset in rulesets:
        load_ruleset(node.netns, ruleset.script)
        if flush:
            flush_conntrack(node.netns)
        applied.append(AppliedRuleset.of(node.name, node.netns, ruleset))
    return tuple(applied)


def engine_verdicts(cluster: ClusterState, probes: Sequence[Probe]) -> list[bool]:
    """The engine's verdict for each probe (the vectorized engine, as `evaluate` uses)."""
    if not probes:
        return []
    return [bool(v) for v in evaluate(cluster, resolve_probes(cluster, probes)).allowed]


def agrees(outcome: ProbeOutcome, allowed: bool) -> bool | None:
    """Whether a probe shows the engine's verdict: allowed ⇔ connected, denied ⇔ no answer
    (a drop on the way) or dropped by the sender's own node; None when not probed. A refusal
    means the packet got through to a closed port: a mismatch either way."""
    if outcome.result is ProbeResult.SKIPPED:
        return None
    if allowed:
        return outcome.result is ProbeResult.CONNECTED
    return outcome.result in (ProbeResult.TIMEOUT, ProbeResult.DROPPED)
