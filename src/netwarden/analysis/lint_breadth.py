"""Lint checks for overly broad Allow rules (NW401-403), read from the rules themselves.

- NW401: ingress from any address: no source at all, or a 0.0.0.0/0 or ::/0 block (with or
  without `except`: the rest of the internet is still in);
- NW402: every port from every pod of every namespace (`namespaceSelector: {}`, Calico
  `namespaceSelector: all()`), with no port or protocol limit;
- NW403: egress to any address on every port.
"""

from __future__ import annotations

from collections.abc import Iterator

from netwarden.analysis.lint_catalogue import Finding, finding
from netwarden.analysis.lint_classes import RuleKey
from netwarden.analysis.lint_context import LintContext
from netwarden.model import (
    Action,
    All,
    Direction,
    EndpointSelector,
    EntityMatch,
    NetworkPeer,
    Peer,
    Rule,
)


def _all_ports(rule: Rule) -> bool:
    """No port, protocol or ICMP condition: the rule matches every port of every protocol."""
    return (
        not rule.ports
        and not rule.not_ports
        and rule.protocol is None
        and (rule.not_protocol is None and rule.icmp is None and rule.not_icmp is None)
    )


def _anywhere(peer: Peer) -> str:
    """The whole address block a peer covers (`0.0.0.0/0`), or '' when it is narrower."""
    if isinstance(peer, NetworkPeer) and peer.cidr.prefixlen == 0:
        return str(peer.cidr) + (" (with except)" if peer.excepted else "")
    if isinstance(peer, EntityMatch) and peer.selector is None and peer.namespaces is None:
        whole = [n for n in peer.nets if n.prefixlen == 0]
        if whole and peer.service is None and peer.service_accounts is None:
            return str(whole[0]) + (" (with notNets)" if peer.not_nets else "")
    return ""


def _every_namespace(peer: Peer) -> bool:
    """Every pod of every namespace."""
    if isinstance(peer, EndpointSelector):
        return (
            isinstance(peer.pods, All)
            and isinstance(peer.namespaces, All)
            and peer.namespace is None
            and peer.service_accounts is None
        )
    if isinstance(peer, EntityMatch):
        return (
            isinstance(peer.namespaces, All)
            and peer.selector in (None, All())
            and not peer.nets
            and not peer.not_nets
            and peer.not_selector is None
            and peer.service is None
            and peer.service_accounts is None
        )
    return False


def breadth_findings(context: LintContext) -> Iterator[Finding]:
    for position, policy in enumerate(context.policies):
        for direction in Direction:
            for index, rule in enumerate(policy.rules(direction) or ()):
                if rule.action is not Action.ALLOW:
                    continue
                yield from _check(context, RuleKey(position, direction, index), rule)


def _check(context: LintContext, key: RuleKey, rule: Rule) -> Iterator[Finding]:
    name, where = context.rule_name(key), context.rule_location(key)
    everything = _all_ports(rule)
    ports = "on every port" if everything else f"on {_ports_text(rule)}"
    if rule.peers:
        anywhere = next((text for p in rule.peers if (text := _anywhere(p))), "")
    else:
        anywhere = "any address (no peer given)"
    if key.direction is Direction.INGRESS:
        if anywhere:
            yield finding("NW401", f"{name} allows ingress from {anywhere} {ports}", where, name)
        elif everything and any(_every_namespace(p) for p in rule.peers):
            yield finding(
                "NW402",
                f"{name} allows every port from every pod of every namespace",
                where,
                name,
            )
    elif anywhere and everything:
        yield finding("NW403", f"{name} allows egress to {anywhere} on every port", where, name)


def _ports_text(rule: Rule) -> str:
    if rule.ports:
        return ", ".join(str(m) for m in rule.ports)
    return "some ports"
