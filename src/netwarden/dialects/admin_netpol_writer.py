"""AdminNetworkPolicy, BaselineAdminNetworkPolicy (`policy.networking.k8s.io/v1alpha1`) and
ClusterNetworkPolicy (`v1alpha2`) back out as the objects they were read from, the inverse of
`admin_netpol`. Both targets use it: Calico reads these kinds natively.
"""

from __future__ import annotations

from netwarden.dialects.k8s_label_writer import label_selector
from netwarden.dialects.k8s_netpol_writer import check_plain_rule, ported_protocol
from netwarden.dialects.writer_common import (
    Inexpressible,
    Manifest,
    describe,
    part,
    port_span,
    writing,
)
from netwarden.model import (
    ADMIN_TIER,
    BASELINE_TIER,
    Action,
    All,
    Direction,
    EndpointSelector,
    NetworkPeer,
    NodePeer,
    Peer,
    Policy,
    PortMatch,
    Rule,
)

ADMIN_API = "policy.networking.k8s.io/v1alpha1"
CLUSTER_API = "policy.networking.k8s.io/v1alpha2"
ADMIN_KINDS = {
    "AdminNetworkPolicy": ADMIN_API,
    "BaselineAdminNetworkPolicy": ADMIN_API,
    "ClusterNetworkPolicy": CLUSTER_API,
}


def write_admin_policy(policy: Policy) -> Manifest:
    """An admin or baseline policy as the object it was read from (both targets use it)."""
    with writing(policy.source, describe(policy), policy.kind):
        if policy.staged is not None:
            raise Inexpressible("a staged admin policy")
        return admin_policy(policy)


def admin_policy(policy: Policy) -> Manifest:
    kind = policy.kind
    cluster_kind = kind == "ClusterNetworkPolicy"
    expected = {
        "AdminNetworkPolicy": {ADMIN_TIER.name},
        "BaselineAdminNetworkPolicy": {BASELINE_TIER.name},
        "ClusterNetworkPolicy": {ADMIN_TIER.name, BASELINE_TIER.name},
    }[kind]
    if policy.tier not in expected:
        raise Inexpressible(f"tier {policy.tier!r}")
    baseline = policy.tier == BASELINE_TIER.name
    spec: Manifest = {}
    if kind != "BaselineAdminNetworkPolicy":
        order = policy.order
        if order is None or order != int(order) or not 0 <= order <= 1000:
            raise Inexpressible(f"order {order} (priority is a whole number 0-1000)")
        spec["priority"] = int(order)
    if cluster_kind:
        spec["tier"] = "Baseline" if baseline else "Admin"
    with part("subject"):
        spec["subject"] = _admin_selector(policy.subject)
    for direction in Direction:
        rules = policy.rules(direction)
        if rules:
            spec[direction.value] = [
                _admin_rule(rule, i, direction, kind) for i, rule in enumerate(rules)
            ]
    return {
        "apiVersion": ADMIN_KINDS[kind],
        "kind": kind,
        "metadata": {"name": policy.name},
        "spec": spec,
    }


def _admin_selector(selector: EndpointSelector) -> Manifest:
    """`namespaces` when every pod of them is meant, else `pods`."""
    if selector.namespace is not None:
        raise Inexpressible(f"a fixed namespace {selector.namespace!r}")
    if selector.host_endpoints or selector.service_accounts is not None:
        raise Inexpressible("host endpoints or service accounts")
    namespaces = label_selector(selector.namespaces)
    if isinstance(selector.pods, All):
        return {"namespaces": namespaces}
    return {"pods": {"namespaceSelector": namespaces, "podSelector": label_selector(selector.pods)}}


_ADMIN_ACTIONS = {Action.ALLOW: "Allow", Action.DENY: "Deny", Action.PASS: "Pass"}


def _admin_rule(rule: Rule, index: int, direction: Direction, kind: str) -> Manifest:
    cluster_kind = kind == "ClusterNetworkPolicy"
    with part(f"{direction.value} rule {index}"):
        action = _ADMIN_ACTIONS.get(rule.action)
        if action is None or (action == "Pass" and kind == "BaselineAdminNetworkPolicy"):
            raise Inexpressible(f"action {rule.action.value}")
        if cluster_kind and action == "Allow":
            action = "Accept"
        check_plain_rule(rule)
        if not rule.peers:
            raise Inexpressible("a rule without peers (admin rules list at least one)")
        written: Manifest = {}
        if rule.name and rule.name != f"{direction.value}[{index}]":
            written["name"] = rule.name
        written["action"] = action
        peers = [_admin_peer(peer, j, direction) for j, peer in enumerate(rule.peers)]
        written["from" if direction is Direction.INGRESS else "to"] = peers
        if rule.ports:
            if cluster_kind:
                written["protocols"] = [_cluster_protocol(port) for port in rule.ports]
            else:
                written["ports"] = [_admin_port(port) for port in rule.ports]
        return written


def _admin_peer(peer: Peer, index: int, direction: Direction) -> Manifest:
    with part(f"peer {index}"):
        if isinstance(peer, EndpointSelector):
            return _admin_selector(peer)
        if direction is Direction.INGRESS:
            raise Inexpressible(f"a {type(peer).__name__} peer in an ingress rule")
        if isinstance(peer, NodePeer):
            return {"nodes": label_selector(peer.nodes)}
        if isinstance(peer, NetworkPeer):
            if peer.excepted:
                raise Inexpressible(f"networks with exceptions ({peer.cidr})")
            return {"networks": [str(peer.cidr)]}
        raise Inexpressible(f"a {type(peer).__name__} peer")


def _admin_port(port: PortMatch) -> Manifest:
    """v1alpha1: portNumber, portRange or namedPort."""
    if port.name is not None:
        if port.protocol is not None:
            raise Inexpressible(f"named port {port} bound to a protocol")
        return {"namedPort": port.name}
    protocol = ported_protocol(port)
    span = port_span(port)
    if span is None:
        raise Inexpressible(f"port {port}: every port of a protocol")
    if span.start == span.end:
        return {"portNumber": {"protocol": protocol, "port": span.start}}
    return {"portRange": {"protocol": protocol, "start": span.start, "end": span.end}}


def _cluster_protocol(port: PortMatch) -> Manifest:
    """v1alpha2: tcp / udp / sctp with an optional destinationPort, or destinationNamedPort."""
    if port.name is not None:
        if port.protocol is not None:
            raise Inexpressible(f"named port {port} bound to a protocol")
        return {"destinationNamedPort": port.name}
    protocol = ported_protocol(port).lower()
    span = port_span(port)
    if span is None:
        return {protocol: {}}
    if span.start == span.end:
        return {protocol: {"destinationPort": {"number": span.start}}}
    return {protocol: {"destinationPort": {"range": {"start": span.start, "end": span.end}}}}
