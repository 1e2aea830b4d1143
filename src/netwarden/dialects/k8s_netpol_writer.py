"""Policies of kind NetworkPolicy back out as `networking.k8s.io/v1` objects, the inverse of
`k8s_netpol`: pod selector, policyTypes, and rules of peers and ports only. The Kubernetes
rule checks here (`check_plain_rule`, `ported_protocol`) serve the admin writer too.
"""

from __future__ import annotations

from netwarden.dialects.k8s_label_writer import label_selector
from netwarden.dialects.writer_common import (
    Inexpressible,
    Manifest,
    describe,
    part,
    port_span,
    writing,
)
from netwarden.model import (
    DEFAULT_TIER,
    K8S_NETWORK_POLICY_ORDER,
    PORTED_PROTOCOLS,
    Action,
    All,
    Direction,
    EndpointSelector,
    NetworkPeer,
    Peer,
    Policy,
    PortMatch,
    Rule,
    protocol_name,
)

NETWORK_POLICY_API = "networking.k8s.io/v1"


def write_network_policy(policy: Policy) -> Manifest:
    """A policy of kind NetworkPolicy as the Kubernetes object (staged or not)."""
    with writing(policy.source, describe(policy), "a Kubernetes NetworkPolicy"):
        return network_policy(policy)


def network_policy(policy: Policy) -> Manifest:
    namespace = policy.namespace
    if namespace is None:
        raise Inexpressible("a NetworkPolicy needs a namespace")
    if policy.tier != DEFAULT_TIER.name or policy.order != K8S_NETWORK_POLICY_ORDER:
        order = f"order {policy.order}"
        raise Inexpressible(f"tier {policy.tier!r} {order} (NetworkPolicies are default/1000)")
    subject = policy.subject
    if subject != EndpointSelector(pods=subject.pods, namespace=namespace):
        raise Inexpressible("a subject beyond a pod selector in the policy's namespace")
    spec: Manifest = {"podSelector": label_selector(subject.pods)}
    types = []
    rules: Manifest = {}
    for direction, name, peers_key in (
        (Direction.INGRESS, "Ingress", "from"),
        (Direction.EGRESS, "Egress", "to"),
    ):
        written = policy.rules(direction)
        if written is None:
            continue
        types.append(name)
        if written:
            rules[direction.value] = [
                _network_rule(rule, i, direction, peers_key, namespace)
                for i, rule in enumerate(written)
            ]
    if not types:
        # The API server would default empty policyTypes to Ingress: a different policy.
        raise Inexpressible("a policy that applies in neither direction")
    spec["policyTypes"] = types
    spec.update(rules)
    return {
        "apiVersion": NETWORK_POLICY_API,
        "kind": "NetworkPolicy",
        "metadata": {"name": policy.name, "namespace": namespace},
        "spec": spec,
    }


def _network_rule(
    rule: Rule, index: int, direction: Direction, peers_key: str, namespace: str
) -> Manifest:
    with part(f"{direction.value} rule {index}"):
        if rule.action is not Action.ALLOW:
            raise Inexpressible(f"a {rule.action.value} rule (NetworkPolicy rules only allow)")
        check_plain_rule(rule)
        written: Manifest = {}
        if rule.peers:
            written[peers_key] = [
                _network_peer(peer, j, namespace) for j, peer in enumerate(rule.peers)
            ]
        if rule.ports:
            written["ports"] = [_network_port(port) for port in rule.ports]
        return written


def check_plain_rule(rule: Rule) -> None:
    """Kubernetes rules have peers and ports only: no Calico rule-wide conditions."""
    extras = {
        "local": rule.local,
        "notPorts": rule.not_ports or None,
        "protocol": rule.protocol,
        "notProtocol": rule.not_protocol,
        "icmp": rule.icmp,
        "notICMP": rule.not_icmp,
        "ipVersion": rule.ip_version,
        "http": rule.http,
    }
    given = [name for name, value in extras.items() if value is not None]
    if given:
        raise Inexpressible(f"Calico rule fields {', '.join(given)}")


def _network_peer(peer: Peer, index: int, namespace: str) -> Manifest:
    with part(f"peer {index}"):
        if isinstance(peer, NetworkPeer):
            return {"ipBlock": ip_block(peer)}
        if not isinstance(peer, EndpointSelector):
            raise Inexpressible(f"a {type(peer).__name__} peer")
        if peer.host_endpoints or peer.service_accounts is not None:
            raise Inexpressible("a peer selecting host endpoints or service accounts")
        if peer.namespace == namespace:
            if not isinstance(peer.namespaces, All):
                raise Inexpressible("a namespace selector within the policy's namespace")
            return {"podSelector": label_selector(peer.pods)}
        if peer.namespace is not None:
            raise Inexpressible(f"pods of another namespace, {peer.namespace!r}, by name")
        written = {"namespaceSelector": label_selector(peer.namespaces)}
        if not isinstance(peer.pods, All):
            written["podSelector"] = label_selector(peer.pods)
        return written


def ip_block(peer: NetworkPeer) -> Manifest:
    """cidr and except; each exception must be a strict subset, as the API server demands."""
    cidr = peer.cidr
    for block in peer.excepted:
        inside = block.version == cidr.version and block.subnet_of(cidr)  # type: ignore[arg-type]
        if not inside or block == cidr:
            raise Inexpressible(f"except {block} is not a strict subset of {peer.cidr}")
    written: Manifest = {"cidr": str(peer.cidr)}
    if peer.excepted:
        written["except"] = [str(block) for block in peer.excepted]
    return written


def _network_port(port: PortMatch) -> Manifest:
    protocol = ported_protocol(port)
    if port.name is not None:
        return {"protocol": protocol, "port": port.name}
    span = port_span(port)
    if span is None:
        return {"protocol": protocol}
    if span.start == span.end:
        return {"protocol": protocol, "port": span.start}
    return {"protocol": protocol, "port": span.start, "endPort": span.end}


def ported_protocol(port: PortMatch) -> str:
    """TCP, UDP or SCTP: the only protocols Kubernetes ports name."""
    if port.protocol not in PORTED_PROTOCOLS:
        raise Inexpressible(f"port {port} (protocol must be TCP, UDP or SCTP)")
    return protocol_name(port.protocol)
