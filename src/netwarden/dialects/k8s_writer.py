"""The model back out as Kubernetes manifests: NetworkPolicy (`networking.k8s.io/v1`),
AdminNetworkPolicy / BaselineAdminNetworkPolicy (`policy.networking.k8s.io/v1alpha1`) and
ClusterNetworkPolicy (`v1alpha2`), and, on request, the inventory (Namespaces, Nodes, Pods).

Reading what is written gives the model back (up to rule names and source locations), so a
round trip decides every flow alike. Selectors become `matchLabels` / `matchExpressions`; what
no label selector can say (`||`, `contains`, `global()`, ...) and every Calico construct
raise `WriteError` naming the policy and the construct: nothing is dropped (fail closed).
The admin writer is shared with the Calico target, which reads these kinds natively.

    >>> from netwarden.dialects import load_text
    >>> cluster = load_text('''
    ... apiVersion: networking.k8s.io/v1
    ... kind: NetworkPolicy
    ... metadata: {name: deny, namespace: shop}
    ... ''').cluster
    >>> write_k8s(cluster)[0]["spec"]
    {'podSelector': {}, 'policyTypes': ['Ingress']}
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from netwarden.dialects.calico_selector import format_selector
from netwarden.errors import WriteError
from netwarden.model import (
    ADMIN_TIER,
    ALL_PORTS,
    BASELINE_TIER,
    DEFAULT_TIER,
    K8S_NETWORK_POLICY_ORDER,
    PORTED_PROTOCOLS,
    Action,
    All,
    And,
    ClusterState,
    Direction,
    Endpoint,
    EndpointKind,
    EndpointSelector,
    Has,
    In,
    Location,
    NetworkPeer,
    NodePeer,
    Not,
    Nothing,
    NotIn,
    Peer,
    Policy,
    PortMatch,
    PortRange,
    Rule,
    Selector,
    protocol_name,
)

Manifest = dict[str, Any]

NETWORK_POLICY_API = "networking.k8s.io/v1"
ADMIN_API = "policy.networking.k8s.io/v1alpha1"
CLUSTER_API = "policy.networking.k8s.io/v1alpha2"
ADMIN_KINDS = {
    "AdminNetworkPolicy": ADMIN_API,
    "BaselineAdminNetworkPolicy": ADMIN_API,
    "ClusterNetworkPolicy": CLUSTER_API,
}
#: No label selector matches nothing by itself: a key that must both exist and not exist does.
NOTHING_KEY = "netwarden.io/match-nothing"
# Labels the Namespace reader adds itself (the API server, and Calico, set them from the name).
_IMPLIED_NAMESPACE_LABELS = ("kubernetes.io/metadata.name", "projectcalico.org/name")


class Inexpressible(Exception):
    """A construct the target cannot hold; `writing` turns it into a WriteError."""


@contextmanager
def writing(location: Location | None, resource: str, target: str) -> Iterator[None]:
    """Report any Inexpressible raised inside as a WriteError about `resource`."""
    try:
        yield
    except Inexpressible as error:
        raise WriteError(location, resource, f"cannot be written for {target}: {error}") from None


@contextmanager
def part(where: str) -> Iterator[None]:
    """Prefix the message of an Inexpressible raised inside with the part at fault."""
    try:
        yield
    except Inexpressible as error:
        raise Inexpressible(f"{where}: {error}") from None


def describe(policy: Policy) -> str:
    """`NetworkPolicy shop/web`, `staged GlobalNetworkPolicy lockdown`."""
    return f"{'staged ' if policy.staged else ''}{policy.kind} {policy.key}"


def number(value: float) -> int | float:
    """Orders and priorities print as integers when they are whole."""
    return int(value) if value == int(value) else value


def write_k8s(cluster: ClusterState, include_inventory: bool = False) -> list[Manifest]:
    """Every policy as a Kubernetes manifest; with `include_inventory`, the Namespaces, Nodes
    and Pods first, so the file set stands alone. Raises WriteError for what Kubernetes
    cannot express (Calico policies, staged policies, non-label selectors, ...)."""
    documents = write_inventory(cluster) if include_inventory else []
    for policy in cluster.policies:
        documents.append(write_k8s_policy(policy))
    return documents


def write_k8s_policy(policy: Policy) -> Manifest:
    with writing(policy.source, describe(policy), "Kubernetes"):
        if policy.staged is not None:
            raise Inexpressible("staged policies are Calico resources (use the calico target)")
        if policy.kind == "NetworkPolicy":
            return network_policy(policy)
        if policy.kind in ADMIN_KINDS:
            return admin_policy(policy)
        raise Inexpressible(f"{policy.kind} is not a Kubernetes kind (use the calico target)")


# NetworkPolicy


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


def port_span(port: PortMatch) -> PortRange | None:
    """The port range, None for every port; ranges must lie within 1-65535."""
    span = port.ports
    if span is None or span == ALL_PORTS:
        return None
    if span.start < 1 or span.end > 65535 or span.start > span.end:
        raise Inexpressible(f"port range {span} (ports are 1-65535)")
    return span


# Label selectors


def label_selector(selector: Selector) -> Manifest:
    """A model selector as matchLabels / matchExpressions. An `In` with one value goes to
    matchLabels (unless the key is already there); `Nothing` becomes a key that must both
    exist and not exist. Raises Inexpressible for `Or`, `contains`, `global()` and the like.

    >>> label_selector(And((In("app", frozenset({"web"})), Not(Has("canary")))))["matchLabels"]
    {'app': 'web'}
    """
    labels: dict[str, str] = {}
    expressions: list[Manifest] = []
    for key, operator, values in _requirements(selector):
        if operator == "In" and len(values) == 1 and key not in labels:
            labels[key] = values[0]
            continue
        expression: Manifest = {"key": key, "operator": operator}
        if operator in ("In", "NotIn"):
            expression["values"] = values
        expressions.append(expression)
    written: Manifest = {}
    if labels:
        written["matchLabels"] = labels
    if expressions:
        written["matchExpressions"] = expressions
    return written


def _requirements(
    selector: Selector, negated: bool = False
) -> Iterator[tuple[str, str, list[str]]]:
    """(key, operator, sorted values) triples whose conjunction is `selector` (negated)."""
    match selector:
        case All() | Nothing():
            if isinstance(selector, Nothing) != negated:
                yield NOTHING_KEY, "Exists", []
                yield NOTHING_KEY, "DoesNotExist", []
        case Not(term=term):
            yield from _requirements(term, not negated)
        case And(terms=terms) if not negated:
            for term in terms:
                yield from _requirements(term)
        case Has(key=key):
            yield key, "DoesNotExist" if negated else "Exists", []
        case In(key=key, values=values) | NotIn(key=key, values=values):
            inside = isinstance(selector, In) != negated
            if not values:  # `in {}` holds for nothing, `not in {}` for everything
                yield from _requirements(Nothing() if inside else All())
            else:
                yield key, "In" if inside else "NotIn", sorted(values)
        case _:
            raise Inexpressible(
                f"selector {describe_selector(selector)} has no label-selector form"
            )


def describe_selector(selector: Selector) -> str:
    """The selector in Calico syntax when it has one, for messages."""
    try:
        return repr(format_selector(selector))
    except (TypeError, ValueError):
        return repr(selector)


# AdminNetworkPolicy, BaselineAdminNetworkPolicy, ClusterNetworkPolicy


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


# Inventory


def write_inventory(cluster: ClusterState) -> list[Manifest]:
    """Namespaces, Nodes and Pods (labels, addresses, named ports, hostNetwork, node, service
    account): records for netwarden to read back, not deployable pods (the model keeps no
    images). Calico host endpoints raise WriteError; the Calico target writes them."""
    documents = [_namespace(namespace.name, namespace.labels) for namespace in cluster.namespaces]
    for node in cluster.nodes:
        addresses = [{"type": "InternalIP", "address": str(ip)} for ip in node.ips]
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": node.name, "labels": dict(node.labels)},
                "status": {"addresses": addresses},
            }
        )
    for endpoint in cluster.endpoints:
        resource = f"{endpoint.kind.value} {endpoint.key}"
        with writing(endpoint.source, resource, "Kubernetes"):
            if endpoint.kind not in (EndpointKind.POD, EndpointKind.HOST):
                raise Inexpressible("not a pod (host endpoints are Calico resources)")
            documents.append(_pod(endpoint.name, endpoint.namespace or "default", endpoint))
    return documents


# The owner a pod names (its workload) as an ownerReference: the reader takes kind and name.
_WORKLOAD_APIS = {"Job": "batch/v1", "CronJob": "batch/v1", "ReplicationController": "v1"}


def _namespace(name: str, labels: dict[str, str]) -> Manifest:
    kept = {
        key: value
        for key, value in labels.items()
        if not (key in _IMPLIED_NAMESPACE_LABELS and value == name)
    }
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": kept}}


def _pod(name: str, namespace: str, endpoint: Endpoint) -> Manifest:
    ports = []
    for declared in endpoint.ports:
        if declared.protocol not in PORTED_PROTOCOLS:
            raise Inexpressible(f"named port {declared.name} of protocol {declared.protocol}")
        ports.append(
            {
                "name": declared.name,
                "containerPort": declared.port,
                "protocol": protocol_name(declared.protocol),
            }
        )
    container: Manifest = {"name": "main"}
    if ports:
        container["ports"] = ports
    spec: Manifest = {"containers": [container]}
    if endpoint.kind is EndpointKind.HOST:
        spec["hostNetwork"] = True
    if endpoint.node:
        spec["nodeName"] = endpoint.node
    if endpoint.service_account and endpoint.service_account != "default":
        spec["serviceAccountName"] = endpoint.service_account
    metadata: Manifest = {"name": name, "namespace": namespace, "labels": dict(endpoint.labels)}
    if endpoint.workload:
        kind, _, owner = endpoint.workload.partition("/")
        api_version = _WORKLOAD_APIS.get(kind, "apps/v1")
        reference = {"apiVersion": api_version, "kind": kind, "name": owner, "controller": True}
        metadata["ownerReferences"] = [reference]
    pod: Manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
    if endpoint.ips:
        ips = [str(ip) for ip in endpoint.ips]
        pod["status"] = {"podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips]}
    return pod
