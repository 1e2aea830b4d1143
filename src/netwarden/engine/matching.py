"""Does a selector, peer, port or rule match? The single-flow building blocks of the engine."""

from __future__ import annotations

from netwarden.engine.entity import entity_matches
from netwarden.engine.labels import endpoint_labels, resolve_global
from netwarden.model import (
    All,
    ClusterState,
    Endpoint,
    EndpointKind,
    EndpointSelector,
    EntityMatch,
    Flow,
    IcmpMatch,
    IPAddress,
    NetworkPeer,
    NodePeer,
    Peer,
    PortMatch,
    Rule,
)


def selects(selector: EndpointSelector, endpoint: Endpoint, cluster: ClusterState) -> bool:
    """Pods by labels and namespace; host endpoints only for a selector that allows them
    (a Calico global policy) and has no namespace restriction. Never hosts or externals."""
    if endpoint.kind is EndpointKind.HOST_ENDPOINT:
        return (
            selector.host_endpoints
            and selector.namespace is None
            and selector.service_accounts is None
            and resolve_global(selector.namespaces, True).matches({})
            and selector.pods.matches(endpoint_labels(endpoint, cluster))
        )
    if endpoint.kind is not EndpointKind.POD or endpoint.namespace is None:
        return False
    if selector.namespace is not None and endpoint.namespace != selector.namespace:
        return False
    if not selector.pods.matches(endpoint_labels(endpoint, cluster)):
        return False
    if not isinstance(selector.namespaces, All):
        namespace_labels = cluster.namespace_labels.get(endpoint.namespace, {})
        if not resolve_global(selector.namespaces, False).matches(namespace_labels):
            return False
    if selector.service_accounts is not None:
        account = (endpoint.namespace, endpoint.service_account or "default")
        return selector.service_accounts.matches(cluster.service_account_labels.get(account, {}))
    return True


def peer_matches(
    peer: Peer,
    endpoint: Endpoint,
    ip: IPAddress | None,
    cluster: ClusterState,
    dst_port: tuple[int, int] | None = None,
) -> bool:
    """Whether `endpoint`, seen at address `ip` in this flow, is `peer`."""
    if isinstance(peer, EndpointSelector):
        return selects(peer, endpoint, cluster)
    if isinstance(peer, NetworkPeer):
        return ip is not None and network_contains(peer, ip)
    if isinstance(peer, EntityMatch):
        return entity_matches(peer, endpoint, ip, cluster, dst_port)[0]
    return node_matches(peer, endpoint, ip, cluster)


def network_contains(peer: NetworkPeer, ip: IPAddress) -> bool:
    if ip.version != peer.cidr.version or ip not in peer.cidr:
        return False
    return not any(ip in block for block in peer.excepted if block.version == ip.version)


def node_matches(
    peer: NodePeer, endpoint: Endpoint, ip: IPAddress | None, cluster: ClusterState
) -> bool:
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


def icmp_matches(match: IcmpMatch, flow: Flow) -> bool:
    return flow.icmp_type == match.type and (match.code is None or flow.icmp_code == match.code)


def _conditions(rule: Rule, flow: Flow) -> str:
    """Why the rule-wide conditions (protocol, ICMP, IP version) fail, or ''."""
    if rule.protocol is not None and flow.protocol != rule.protocol:
        return "protocol does not match"
    if rule.not_protocol is not None and flow.protocol == rule.not_protocol:
        return "protocol matches notProtocol"
    if rule.icmp is not None and not icmp_matches(rule.icmp, flow):
        return "ICMP type/code does not match"
    if rule.not_icmp is not None and icmp_matches(rule.not_icmp, flow):
        return "ICMP type/code matches notICMP"
    if rule.ip_version is not None:
        ip = flow.src_ip or flow.dst_ip
        if ip is None or ip.version != rule.ip_version:
            return f"not IPv{rule.ip_version}"
    return ""


def _ports(rule: Rule, flow: Flow) -> str:
    """Why the destination port fails the rule's ports / notPorts, or ''."""
    if rule.ports and not any(port_matches(m, flow) for m in rule.ports):
        return f"port not in [{', '.join(str(m) for m in rule.ports)}]"
    if rule.not_ports and any(port_matches(m, flow) for m in rule.not_ports):
        return "port in notPorts"
    return ""


def rule_matches(rule: Rule, flow: Flow, ingress: bool, cluster: ClusterState) -> tuple[bool, str]:
    """(matched, why not) for one rule of a policy selecting the flow's destination (ingress)
    or source (egress): `peers` look at the other end, `local` at the subject's own."""
    peer, peer_ip = (flow.src, flow.src_ip) if ingress else (flow.dst, flow.dst_ip)
    local, local_ip = (flow.dst, flow.dst_ip) if ingress else (flow.src, flow.src_ip)
    why_not = _conditions(rule, flow)
    if why_not:
        return False, why_not
    dst_port = (flow.port, flow.protocol)
    peer_port = None if ingress else dst_port
    if rule.peers and not any(
        peer_matches(p, peer, peer_ip, cluster, peer_port) for p in rule.peers
    ):
        return False, f"{peer.key} is not a peer of this rule"
    if rule.local is not None:
        matched, why = entity_matches(
            rule.local, local, local_ip, cluster, dst_port if ingress else None
        )
        if not matched:
            return False, f"{local.key}: {why}"
    why_not = _ports(rule, flow)
    return (False, why_not) if why_not else (True, "")
