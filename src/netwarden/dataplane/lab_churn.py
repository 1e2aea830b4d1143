"""Pods that come, go and change labels in a running lab, enforced incrementally.

`lab pod add/del/label` change the lab's inventory (a `PodChange` recorded in the lab state
and replayed on top of its inputs whenever they are read), make or remove the pod's namespace,
veth link, routes and server, and update every node's ruleset with `nft_update`: one `nft -f`
transaction of element changes per node, no rule rewritten (a full replacement only when the
change needs a new chain, e.g. a pod of a new endpoint class).

Order, so that a pod is never reachable without its policy (fail closed): a new pod's set
elements and dispatch entries are loaded before its namespace and link exist; a deleted pod
loses its dispatch entries (its interface then hits the unknown-interface drop) before its
namespace goes. After a deletion or a label change every node's connection tracking is
cleared, so that the lab's probes are decided by the new ruleset (as after `lab apply`).

While a collection runs (`LabState.flow_logs`), the rulesets are compiled with flow logs, so
the change is still element changes and new connections are still logged. Each change records
when it was made (`PodChange.at`, taken before the dataplane changes): the collector names a
connection's endpoints from the inventory as it was when the connection started.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network, ip_address
from pathlib import Path

from netwarden.dataplane.apply import flush_conntrack
from netwarden.dataplane.lab import ip_batches, ip_command, kill_processes, start_servers
from netwarden.dataplane.lab_addressing import free_hosts, leaf_parts
from netwarden.dataplane.lab_enforce import compile_lab, source_documents
from netwarden.dataplane.lab_naming import interface_name, leaf_mac, netns_name
from netwarden.dataplane.lab_state import (
    AppliedRuleset,
    LabState,
    PodChange,
    SourceText,
    save_state,
)
from netwarden.dataplane.lab_topology import (
    GATEWAY,
    LabEndpoint,
    LabNamespace,
    LabPlan,
    LabRoute,
    LabServer,
    Role,
    ServedPort,
)
from netwarden.dataplane.netns import write_sysctl
from netwarden.dataplane.nft_update import AppliedUpdate, apply_update
from netwarden.dialects import load_documents
from netwarden.errors import LabError
from netwarden.model import ClusterState, Endpoint, EndpointKind

__all__ = [
    "NodeUpdate",
    "add_pod",
    "delete_pod",
    "lab_cluster",
    "label_pod",
    "parse_label_edits",
    "parse_labels",
    "replay",
]

_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_LABEL_KEY = re.compile(r"([a-z0-9A-Z.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


@dataclass(frozen=True)
class NodeUpdate:
    """One node's ruleset update after a change."""

    node: str
    applied: AppliedUpdate


# --- inputs ----------------------------------------------------------------------------------


def check_pod_key(key: str) -> tuple[str, str]:
    namespace, _, name = key.partition("/")
    if not _NAME.fullmatch(namespace) or not _NAME.fullmatch(name):
        raise LabError(f"invalid pod {key!r}: expected NAMESPACE/POD (lower-case DNS names)")
    return namespace, name


def parse_labels(text: str) -> tuple[tuple[str, str], ...]:
    """`app=web,tier=front` -> (("app", "web"), ("tier", "front"))."""
    if not text.strip():
        return ()
    pairs = []
    for item in text.split(","):
        key, equals, value = item.strip().partition("=")
        if not equals:
            raise LabError(f"invalid label {item.strip()!r}: expected KEY=VALUE")
        pairs.append(_label(key, value))
    return tuple(pairs)


def parse_label_edits(items: Sequence[str]) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """`k=v` sets a label, `k-` removes it (as `kubectl label` does)."""
    set_labels: list[tuple[str, str]] = []
    unset: list[str] = []
    for item in items:
        if "=" in item:
            key, _, value = item.partition("=")
            set_labels.append(_label(key, value))
        elif item.endswith("-") and _LABEL_KEY.fullmatch(item[:-1]):
            unset.append(item[:-1])
        else:
            raise LabError(f"invalid label change {item!r}: expected KEY=VALUE or KEY-")
    if not set_labels and not unset:
        raise LabError("no label change: give KEY=VALUE or KEY- arguments")
    return tuple(set_labels), tuple(unset)


def _label(key: str, value: str) -> tuple[str, str]:
    if not _LABEL_KEY.fullmatch(key) or len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise LabError(f"invalid label {key}={value}: not a Kubernetes label")
    return key, value


def replay(cluster: ClusterState, changes: Sequence[PodChange]) -> ClusterState:
    """The cluster with the lab's pod changes made, in order."""
    endpoints = list(cluster.endpoints)
    for change in changes:
        at = next((i for i, e in enumerate(endpoints) if e.key == change.key), None)
        if change.action == "add":
            if at is not None:
                raise LabError(f"{change.key} was added to the lab but the inputs have it too")
            namespace, name = check_pod_key(change.key)
            assert change.ip is not None
            endpoints.append(
                Endpoint(
                    EndpointKind.POD,
                    name,
                    namespace,
                    dict(change.labels),
                    (change.ip,),
                    node=change.node,
                )
            )
        elif at is None:
            continue  # the inputs no longer have it: nothing left to change
        elif change.action == "delete":
            del endpoints[at]
        else:
            labels = {k: v for k, v in endpoints[at].labels.items() if k not in change.unset}
            labels.update(change.labels)
            endpoints[at] = replace(endpoints[at], labels=labels)
    return replace(cluster, endpoints=tuple(endpoints))


def lab_cluster(sources: Sequence[SourceText], changes: Sequence[PodChange]) -> ClusterState:
    """The lab's inventory now: its inputs with its pod changes replayed."""
    return replay(load_documents(source_documents(sources)).cluster, changes)


# --- the plan ---------------------------------------------------------------------------------


def plan_pod(
    plan: LabPlan, key: str, node: str | None, ip: IPv4Address | None, ports: Sequence[ServedPort]
) -> LabPlan:
    """The plan with one more pod: its namespace, link, routes (the fabric reaches it through
    its node) and server. Without `node`, the node with the fewest pods; without `ip`, the
    next free address of the node's pod CIDR."""
    namespace, name = check_pod_key(key)
    if plan.endpoint(key) is not None:
        raise LabError(f"{key} is already in lab {plan.name}")
    if node is None:
        load = {n.name: 0 for n in plan.nodes}
        for endpoint in plan.endpoints:
            if endpoint.kind is EndpointKind.POD and endpoint.node in load:
                load[endpoint.node] += 1
        node = min(load, key=lambda n: (load[n], n))
    lab_node = next((n for n in plan.nodes if n.name == node), None)
    if lab_node is None:
        raise LabError(f"no node {node!r} in lab {plan.name}")
    used = {a.ip for a in plan.addresses} | {ip for n in plan.nodes for ip in n.ips} | {GATEWAY}
    if ip is None:
        ip = next(free_hosts(lab_node.pod_cidr, used))
    elif ip in used:
        raise LabError(f"address {ip} is already used in lab {plan.name}")
    base = plan.prefix.removesuffix(f"-{plan.name}-")
    what = ("pod", key)
    ifname = interface_name(plan.prefix, base, what)
    if any(link.router_ifname == ifname for link in plan.links):
        raise LabError(f"interface name clash for {key}: choose another pod name")
    netns = netns_name(plan.prefix, "pod", f"{namespace}.{name}")
    parts = leaf_parts(
        lab_node.netns, ifname, netns, leaf_mac(plan.prefix, what), [ip], lab_node.ips[0]
    )
    node_link = next(link for link in plan.links if link.leaf_netns == lab_node.netns)
    fabric_route = LabRoute(
        node_link.router_netns,
        IPv4Network(f"{ip}/32"),
        node_link.router_ifname,
        lab_node.ips[0],
    )
    served = tuple(sorted(set(ports)))
    return replace(
        plan,
        namespaces=(*plan.namespaces, LabNamespace(netns, Role.POD, forwarding=False)),
        links=(*plan.links, parts.link),
        addresses=(*plan.addresses, *parts.addresses),
        neighbors=(*plan.neighbors, *parts.neighbors),
        routes=(*plan.routes, *parts.routes, fabric_route),
        endpoints=(
            *plan.endpoints,
            LabEndpoint(key, EndpointKind.POD, netns, (ip,), lab_node.name, served),
        ),
        servers=(*plan.servers, *((LabServer(netns, (ip,), served),) if served else ())),
    )


def pod_parts(plan: LabPlan, key: str) -> tuple[LabPlan, LabPlan]:
    """(the parts of the plan that belong to pod `key`, the rest). The first, with the
    namespaces its commands run in, renders the pod's `ip -batch` lines (`ip_batches`)."""
    endpoint = plan.endpoint(key)
    if endpoint is None or endpoint.kind is not EndpointKind.POD or endpoint.key != key:
        raise LabError(f"no pod {key} in lab {plan.name}")
    netns = endpoint.netns
    hosts = {IPv4Network(f"{ip}/32") for ip in endpoint.ips}
    links = [link for link in plan.links if link.leaf_netns == netns]
    involved = {netns} | {link.router_netns for link in links}
    routes = [r for r in plan.routes if r.netns == netns or r.destination in hosts]
    involved |= {r.netns for r in routes}
    neighbors = [n for n in plan.neighbors if n.netns == netns or n.ip in endpoint.ips]
    addresses = [a for a in plan.addresses if a.netns == netns]
    servers = [s for s in plan.servers if s.netns == netns]
    mine = replace(
        plan,
        namespaces=tuple(n for n in plan.namespaces if n.name in involved),
        links=tuple(links),
        addresses=tuple(addresses),
        neighbors=tuple(neighbors),
        routes=tuple(routes),
        nodes=(),
        endpoints=(endpoint,),
        servers=tuple(servers),
        warnings=(),
    )
    rest = replace(
        plan,
        namespaces=tuple(n for n in plan.namespaces if n.name != netns),
        links=tuple(x for x in plan.links if x not in links),
        addresses=tuple(x for x in plan.addresses if x not in addresses),
        neighbors=tuple(x for x in plan.neighbors if x not in neighbors),
        routes=tuple(x for x in plan.routes if x not in routes),
        endpoints=tuple(e for e in plan.endpoints if e.key != key),
        servers=tuple(x for x in plan.servers if x not in servers),
    )
    return mine, rest


# --- changes --------------------------------------------------------------------------------


def add_pod(
    state: LabState,
    key: str,
    labels: Sequence[tuple[str, str]] = (),
    node: str | None = None,
    ip: IPv4Address | None = None,
    ports: Sequence[ServedPort] = (),
    directory: Path | None = None,
) -> tuple[LabState, list[NodeUpdate]]:
    """Add a pod: its policy first (when the lab enforces), then its namespace, link and
    server. On any failure the pod's parts are removed and the rulesets put back."""
    at = time.time()
    cluster = lab_cluster(state.sources, state.changes)
    if key in cluster.endpoints_by_key:
        raise LabError(f"{key} is already in the inputs of lab {state.plan.name}")
    plan = plan_pod(state.plan, key, node, ip, ports)
    added = plan.endpoint(key)
    assert added is not None and added.node is not None
    change = PodChange(
        "add", key, tuple(labels), node=added.node, ip=added.ips[0], ports=added.served, at=at
    )
    rulesets, updates = _enforce(state, replay(cluster, [change]), plan, flush=False)
    mine, _ = pod_parts(plan, key)
    made: list[int] = []
    try:
        ip_command(["netns", "add", added.netns])
        write_sysctl(added.netns, "net.ipv4.icmp_ratemask", "0")
        for netns, lines in ip_batches(mine):
            ip_command(["-n", netns, "-batch", "-"], "\n".join(lines) + "\n")
        servers = start_servers(mine.servers)
        made = [s.pid for s in servers]
    except BaseException:
        kill_processes(made)
        _remove_system(mine, added)
        _enforce(replace(state, rulesets=rulesets), cluster, state.plan, flush=False)
        raise
    state = replace(
        state,
        plan=plan,
        servers=(*state.servers, *servers),
        rulesets=rulesets or state.rulesets,
        changes=(*state.changes, change),
    )
    save_state(state, directory)
    return state, updates


def delete_pod(
    state: LabState, key: str, directory: Path | None = None
) -> tuple[LabState, list[NodeUpdate]]:
    """Delete a pod: its dispatch entries and set elements first, then its namespace."""
    at = time.time()
    cluster = lab_cluster(state.sources, state.changes)
    mine, plan = pod_parts(state.plan, key)
    change = PodChange("delete", key, at=at)
    rulesets, updates = _enforce(state, replay(cluster, [change]), plan, flush=True)
    pids = [s.pid for s in state.servers if s.netns == mine.endpoints[0].netns]
    kill_processes(pids)
    _remove_system(mine, mine.endpoints[0])
    state = replace(
        state,
        plan=plan,
        servers=tuple(s for s in state.servers if s.pid not in pids),
        rulesets=rulesets or state.rulesets,
        changes=(*state.changes, change),
    )
    save_state(state, directory)
    return state, updates


def label_pod(
    state: LabState,
    key: str,
    set_labels: Sequence[tuple[str, str]],
    unset: Sequence[str] = (),
    directory: Path | None = None,
) -> tuple[LabState, list[NodeUpdate]]:
    """Change a pod's labels and update the rulesets."""
    at = time.time()
    cluster = lab_cluster(state.sources, state.changes)
    endpoint = cluster.endpoints_by_key.get(key)
    if endpoint is None or endpoint.kind is not EndpointKind.POD:
        raise LabError(f"no pod {key} in the inventory of lab {state.plan.name}")
    change = PodChange("label", key, tuple(set_labels), tuple(unset), at=at)
    rulesets, updates = _enforce(state, replay(cluster, [change]), state.plan, flush=True)
    state = replace(state, rulesets=rulesets or state.rulesets, changes=(*state.changes, change))
    save_state(state, directory)
    return state, updates


def _enforce(
    state: LabState, cluster: ClusterState, plan: LabPlan, flush: bool
) -> tuple[tuple[AppliedRuleset, ...], list[NodeUpdate]]:
    """Every node's ruleset for `cluster` loaded over the one in place (nothing when the lab
    enforces no policy). All are compiled before the first is loaded; with flow logs while a
    collection runs, or it would stop seeing new connections."""
    if not state.enforced:
        return (), []
    compiled = compile_lab(cluster, plan, flow_logs=state.flow_logs)
    previous = {r.node: r.loaded for r in state.rulesets}
    applied = []
    updates = []
    for node, ruleset in compiled:
        done = apply_update(node.netns, previous.get(node.name), ruleset)
        if flush:
            flush_conntrack(node.netns)
        updates.append(NodeUpdate(node.name, done))
        applied.append(AppliedRuleset.of(node.name, node.netns, ruleset))
    return tuple(applied), updates


def _remove_system(mine: LabPlan, endpoint: LabEndpoint) -> None:
    """Remove a pod's namespace (its veth pair goes with it) and the fabric's route to it;
    what does not exist is skipped."""
    for route in mine.routes:
        if route.netns != endpoint.netns and route.via is not None:
            with contextlib.suppress(LabError):  # never made
                ip_command(["-n", route.netns, "route", "del", str(route.destination)])
    with contextlib.suppress(LabError):
        ip_command(["netns", "delete", endpoint.netns])


def parse_ip(text: str | None) -> IPv4Address | None:
    if text is None:
        return None
    try:
        ip = ip_address(text)
    except ValueError:
        raise LabError(f"invalid address {text!r}") from None
    if not isinstance(ip, IPv4Address):
        raise LabError(f"{ip}: the lab is IPv4 only")
    return ip
