"""Model rules back out as Calico rules, the inverse of `calico_rules`: a rule with several
peers, or ports of several protocols, becomes one Calico rule per (protocol, peer); each end
of a rule is written as a Calico entity (nets, selectors, service accounts, services).
"""

from __future__ import annotations

from netwarden.dialects.calico_rules import PORT_PROTOCOLS, has_global
from netwarden.dialects.calico_syntax import (
    ORCHESTRATOR,
    calico_selector,
    plain_selector,
    port_value,
    protocol_value,
)
from netwarden.dialects.writer_common import Inexpressible, Manifest, part, port_span
from netwarden.model import (
    All,
    And,
    Direction,
    EndpointSelector,
    EntityMatch,
    Global,
    IcmpMatch,
    NetworkPeer,
    Peer,
    PortMatch,
    Rule,
)


def write_rules(rules: tuple[Rule, ...], direction: Direction, scope: str | None) -> list[Manifest]:
    """Model rules as Calico rules; `scope` is a namespaced policy's namespace (None: global).
    A rule with several peers, or ports of several protocols, becomes one Calico rule per
    (protocol, peer), protocol-major as Calico converts: the first that matches decides, as
    the one rule did."""
    written = []
    for i, rule in enumerate(rules):
        with part(f"{direction.value} rule {i}"):
            for protocol, ports, not_ports in _port_groups(rule):
                for peer in rule.peers or (None,):
                    written.append(_rule(rule, direction, scope, peer, protocol, ports, not_ports))
    return written


PortGroup = tuple[int | None, tuple[PortMatch, ...], tuple[PortMatch, ...]]


def _port_groups(rule: Rule) -> list[PortGroup]:
    """(protocol, ports, notPorts) for each Calico rule the model rule needs."""
    if rule.protocol is not None:
        for port in (*rule.ports, *rule.not_ports):
            if port.protocol != rule.protocol:
                raise Inexpressible(f"port {port} in a {protocol_value(rule.protocol)} rule")
        return [(rule.protocol, rule.ports, rule.not_ports)]
    if rule.not_ports:
        raise Inexpressible("notPorts in a rule without a protocol")
    groups: dict[int, list[PortMatch]] = {}
    for port in rule.ports:
        if port.protocol is None:
            raise Inexpressible(f"port {port} without a protocol")
        groups.setdefault(port.protocol, []).append(port)
    if not groups:
        return [(None, (), ())]
    ordered = sorted(groups, key=lambda p: str(protocol_value(p)))
    return [(protocol, tuple(groups[protocol]), ()) for protocol in ordered]


def _port_values(ports: tuple[PortMatch, ...], negated: bool) -> list[int | str]:
    """Calico port values; [] when one of them is every port of the protocol."""
    values: list[int | str] = []
    for port in ports:
        if port.name is not None:
            values.append(port.name)
            continue
        span = port_span(port)
        if span is None:
            if negated:
                raise Inexpressible("notPorts holding every port")
            return []
        values.append(port_value(span.start, span.end))
    return values


def _rule(
    rule: Rule,
    direction: Direction,
    scope: str | None,
    peer: Peer | None,
    protocol: int | None,
    ports: tuple[PortMatch, ...],
    not_ports: tuple[PortMatch, ...],
) -> Manifest:
    written: Manifest = {"action": rule.action.value}
    if protocol is not None:
        written["protocol"] = protocol_value(protocol)
    if rule.not_protocol is not None:
        written["notProtocol"] = protocol_value(rule.not_protocol)
    if (ports or not_ports) and protocol not in PORT_PROTOCOLS:
        raise Inexpressible("ports need protocol TCP, UDP or SCTP")
    for field, match in (("icmp", rule.icmp), ("notICMP", rule.not_icmp)):
        if match is not None:
            written[field] = _icmp(match)
    if rule.ip_version is not None:
        written["ipVersion"] = rule.ip_version
    other = {} if peer is None else _entity(peer, scope)
    own = {} if rule.local is None else _entity(rule.local, scope)
    source, destination = (other, own) if direction is Direction.INGRESS else (own, other)
    if ports:
        destination = {**destination, "ports": _port_values(ports, negated=False)}
        if not destination["ports"]:
            del destination["ports"]
    if not_ports:
        destination = {**destination, "notPorts": _port_values(not_ports, negated=True)}
    if source:
        written["source"] = source
    if destination:
        written["destination"] = destination
    if rule.http is not None:
        written["http"] = _http(rule.http.methods, rule.http.paths)
    return written


def _icmp(match: IcmpMatch) -> Manifest:
    written: Manifest = {"type": match.type}
    if match.code is not None:
        written["code"] = match.code
    return written


def _http(methods: tuple[str, ...], paths: tuple[str, ...]) -> Manifest:
    written: Manifest = {}
    if methods:
        written["methods"] = list(methods)
    if paths:
        written["paths"] = [
            {"prefix": path.removeprefix("prefix:")}
            if path.startswith("prefix:")
            else {"exact": path}
            for path in paths
        ]
    return written


def _entity(peer: Peer, scope: str | None) -> Manifest:
    """One end of a Calico rule."""
    if isinstance(peer, EntityMatch):
        return _entity_match(peer, scope)
    if isinstance(peer, NetworkPeer):
        written: Manifest = {"nets": [str(peer.cidr)]}
        if peer.excepted:
            written["notNets"] = [str(block) for block in peer.excepted]
        return written
    if isinstance(peer, EndpointSelector):
        return _pod_entity(peer, scope)
    raise Inexpressible(f"a {type(peer).__name__} peer (Calico rules have no node selector)")


def _pod_entity(peer: EndpointSelector, scope: str | None) -> Manifest:
    """A Kubernetes-style pod peer: the orchestrator clause keeps the selector to pods."""
    if peer.host_endpoints or peer.service_accounts is not None:
        raise Inexpressible("a pod peer selecting host endpoints or service accounts")
    terms = peer.pods.terms if isinstance(peer.pods, And) else (peer.pods,)
    pods = [term for term in terms if not isinstance(term, All)]
    written: Manifest = {
        "selector": plain_selector(And((ORCHESTRATOR, *pods)) if pods else ORCHESTRATOR)
    }
    if peer.namespace is None:
        written["namespaceSelector"] = plain_selector(peer.namespaces)
    elif peer.namespace != scope or not isinstance(peer.namespaces, All):
        raise Inexpressible(f"pods of namespace {peer.namespace!r} from scope {scope!r}")
    return written


def _entity_match(match: EntityMatch, scope: str | None) -> Manifest:
    written: Manifest = {}
    if match.nets:
        written["nets"] = [str(net) for net in match.nets]
    if match.not_nets:
        written["notNets"] = [str(net) for net in match.not_nets]
    if match.selector is not None:
        written["selector"] = plain_selector(match.selector)
    if match.not_selector is not None:
        written["notSelector"] = plain_selector(match.not_selector)
    accounts = match.service_accounts
    scoped = match.selector is not None or (
        accounts is not None and bool(accounts.names or accounts.selector is not None)
    )
    if match.namespaces is not None:
        if has_global(match.namespaces) and not isinstance(match.namespaces, Global):
            raise Inexpressible("global() combined with other namespace selectors")
        written["namespaceSelector"] = calico_selector(match.namespaces)
    elif match.namespace != scope and (scoped or match.not_selector is not None):
        if match.namespace is not None:
            raise Inexpressible(f"selectors scoped to namespace {match.namespace!r}")
        # Unscoped, in a namespaced policy. Calico scopes every selector there: all() is
        # has(projectcalico.org/namespace), which leaves out host endpoints and global network
        # sets, and any scope demands a labelled endpoint or network set for a notSelector.
        if not scoped:
            raise Inexpressible("a notSelector over every namespace in a namespaced policy")
        raise Inexpressible(
            "selectors over every namespace and the non-namespaced things in a namespaced "
            "policy (namespaceSelector all() leaves out host endpoints and global network sets)"
        )
    if accounts is not None:
        written["serviceAccounts"] = {}
        if accounts.names:
            written["serviceAccounts"]["names"] = sorted(accounts.names)
        if accounts.selector is not None:
            written["serviceAccounts"]["selector"] = plain_selector(accounts.selector)
    if match.service is not None:
        service_namespace, name = match.service
        written["services"] = {"name": name, "namespace": service_namespace}
    return written
