"""Does a selector, peer or port match? The single-flow building blocks of the engine."""

from __future__ import annotations

from netwarden.model import (
    ClusterState,
    Endpoint,
    EndpointKind,
    EndpointSelector,
    Flow,
    IPAddress,
    NetworkPeer,
    NodePeer,
    Peer,
    PortMatch,
    Rule,
)


def selects(selector: EndpointSelector, endpoint: Endpoint, cluster: ClusterState) -> bool:
    """Pod and namespace selectors pick pods only: never host or external endpoints."""
    if endpoint.kind is not EndpointKind.POD or endpoint.namespace is None:
        return False
    if selector.namespace is not None and endpoint.namespace != selector.namespace:
        return False
    if not selector.pods.matches(endpoint.labels):
        return False
    namespace_labels = cluster.namespace_labels.get(endpoint.namespace, {})
    return selector.namespaces.matches(namespace_labels)


def peer_matches(
    peer: Peer, endpoint: Endpoint, ip: IPAddress | None, cluster: ClusterState
) -> bool:
    """Whether `endpoint`, seen at address `ip` in this flow, is `peer`."""
    if isinstance(peer, EndpointSelector):
        return selects(peer, endpoint, cluster)
    if isinstance(peer, NetworkPeer):
        return ip is not None and network_contains(peer, ip)
    return node_matches(peer, endpoint, ip, cluster)


def network_contains(peer: NetworkPeer, ip: IPAddress) -> bool:
    if ip.version != peer.cidr.version or ip not in peer.cidr:
        return False
    return not any(ip in block for block in peer.excepted if block.version == ip.version)


def node_matches(peer: NodePeer, endpoint: Endpoint, ip: IPAddress | None, cluster: ClusterState) -> bool:
    """A node peer is the nodes' addresses: host endpoints on those nodes, or the address."""
    for node in cluster.nodes:
        if not peer.nodes.matches(node.labels):
            continue
        if ip is not None and ip in node.ips:
            return True
        if endpoint.kind is EndpointKind.HOST and endpoint.node == node.name and not node.ips:
            return True
    return False


def port_matches(match: PortMatch, flow: Flow) -> bool:
    """Named ports resolve on the destination, for the flow's protocol only."""
    if match.protocol is not None and match.protocol != flow.protocol:
        return False
    if match.name is not None:
        return flow.dst.named_port(match.name, flow.protocol) == flow.port
    return match.ports is None or flow.port in match.ports


def rule_matches(
    rule: Rule, peer: Endpoint, peer_ip: IPAddress | None, flow: Flow, cluster: ClusterState
) -> tuple[bool, str]:
    """(matched, why not) for one rule against the flow's other end `peer`."""
    if rule.peers and not any(peer_matches(p, peer, peer_ip, cluster) for p in rule.peers):
        return False, f"{peer.key} is not a peer of this rule"
    if rule.ports and not any(port_matches(m, flow) for m in rule.ports):
        listed = ", ".join(str(m) for m in rule.ports)
        return False, f"port not in [{listed}]"
    return True, ""
