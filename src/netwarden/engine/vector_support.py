"""What the vectorized engine compiles, and the exact fallback for everything else.

The vectorized path knows the constructs listed here: Kubernetes and Calico policies and
profiles (selector, CIDR, node and entity peers with nets, selectors, namespace scopes, service
accounts and Services; `local` entities; ports, notPorts, protocol, ICMP and IP version), on
pods, host endpoints, hosts and externals. A policy, profile, rule, selector or endpoint that
uses anything more is not guessed at: the probes it could touch are decided one by one by
`PolicyEngine.decide_direction`, the reference, so answers stay exact while the model grows
ahead of the vectorized path (at single-flow speed for those probes). Checks compare each field
with its default, so a field added to the model later is "unsupported" until it is taught here.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

from netwarden.model import (
    All,
    And,
    Contains,
    Direction,
    EndpointKind,
    EndpointSelector,
    EndsWith,
    EntityMatch,
    Global,
    Has,
    HttpMatch,
    IcmpMatch,
    In,
    NetworkPeer,
    NodePeer,
    Not,
    Nothing,
    NotIn,
    Or,
    Policy,
    PortMatch,
    Profile,
    Rule,
    Selector,
    ServiceAccountMatch,
    StartsWith,
)

#: Endpoint kinds whose meaning the vectorized path reproduces (as subject and as peer).
KINDS = frozenset(
    {EndpointKind.POD, EndpointKind.HOST, EndpointKind.HOST_ENDPOINT, EndpointKind.EXTERNAL}
)

#: Selector nodes `selector_index.LabelTable` evaluates (exactly these types).
SELECTOR_NODES = frozenset(
    {All, Nothing, Global, Has, In, NotIn, Contains, StartsWith, EndsWith, Not, And, Or}
)

# Fields the vectorized path reads, or that never change a verdict (`source`, `name`, and a
# rule's `http`, which decide.py does not evaluate: L7 is kept, not enforced); any other field
# must hold its default value.
_KNOWN = {
    Policy: {
        "name",
        "kind",
        "tier",
        "subject",
        "namespace",
        "order",
        "ingress",
        "egress",
        "source",
        "calico_name",
    },
    Profile: {"name", "labels", "ingress", "egress", "source"},
    Rule: {
        "action",
        "peers",
        "ports",
        "name",
        "source",
        "local",
        "not_ports",
        "protocol",
        "not_protocol",
        "icmp",
        "not_icmp",
        "ip_version",
        "http",
    },
    EndpointSelector: {"pods", "namespaces", "namespace", "host_endpoints", "service_accounts"},
    NetworkPeer: {"cidr", "excepted"},
    NodePeer: {"nodes"},
    EntityMatch: {
        "nets",
        "not_nets",
        "selector",
        "not_selector",
        "namespace",
        "namespaces",
        "service_accounts",
        "service",
    },
    ServiceAccountMatch: {"names", "selector"},
    PortMatch: {"protocol", "ports", "name"},
    IcmpMatch: {"type", "code"},
    HttpMatch: {"methods", "paths"},
}


def _plain(item: Any) -> bool:
    """`item` is of a known type (exactly) and every field it has beyond the known is unset."""
    defaults = _defaults(type(item))
    if defaults is None:
        return False
    return all(getattr(item, name) == default for name, default in defaults)


_DEFAULTS: dict[type, tuple[tuple[str, Any], ...] | None] = {}
_NO_DEFAULT = object()  # never equal to a field's value: a field without default is unknown


def _defaults(kind: type) -> tuple[tuple[str, Any], ...] | None:
    """The fields of `kind` the vectors do not read, with their defaults (None: `kind` is not
    known at all); computed once per type."""
    if kind not in _DEFAULTS:
        known = _KNOWN.get(kind)
        if known is None:
            _DEFAULTS[kind] = None
            return None
        found: list[tuple[str, Any]] = []
        for field in fields(kind):
            if field.name in known:
                continue
            if field.default is not MISSING:
                found.append((field.name, field.default))
            elif field.default_factory is not MISSING:
                found.append((field.name, field.default_factory()))
            else:
                found.append((field.name, _NO_DEFAULT))
        _DEFAULTS[kind] = tuple(found)
    return _DEFAULTS[kind]


def selector_supported(selector: Selector | None) -> bool:
    """None, or a tree of the nodes the label tables evaluate."""
    if selector is None:
        return True
    if type(selector) not in SELECTOR_NODES:
        return False
    if isinstance(selector, Not):
        return selector_supported(selector.term)
    if isinstance(selector, And | Or):
        return all(selector_supported(term) for term in selector.terms)
    return True


def endpoint_selector_supported(selector: EndpointSelector) -> bool:
    return _plain(selector) and all(
        selector_supported(s)
        for s in (selector.pods, selector.namespaces, selector.service_accounts)
    )


def entity_supported(match: EntityMatch) -> bool:
    accounts = match.service_accounts
    return (
        _plain(match)
        and all(selector_supported(s) for s in (match.selector, match.not_selector))
        and selector_supported(match.namespaces)
        and (accounts is None or (_plain(accounts) and selector_supported(accounts.selector)))
    )


def _peer_supported(peer: object) -> bool:
    if isinstance(peer, EndpointSelector):
        return endpoint_selector_supported(peer)
    if isinstance(peer, EntityMatch):
        return entity_supported(peer)
    if isinstance(peer, NodePeer):
        return _plain(peer) and selector_supported(peer.nodes)
    return _plain(peer)


def rule_supported(rule: Rule) -> bool:
    return (
        _plain(rule)
        and all(_peer_supported(peer) for peer in rule.peers)
        and all(_plain(match) for match in (*rule.ports, *rule.not_ports))
        and (rule.local is None or entity_supported(rule.local))
        and all(m is None or _plain(m) for m in (rule.icmp, rule.not_icmp, rule.http))
    )


def policy_supported(policy: Policy, direction: Direction) -> bool:
    """Whether the vectorized path can run `policy`'s rules for `direction`."""
    if not (_plain(policy) and endpoint_selector_supported(policy.subject)):
        return False
    return all(rule_supported(rule) for rule in policy.rules(direction) or ())


def profile_supported(profile: Profile, direction: Direction) -> bool:
    """Whether the vectorized path can run a host endpoint's `profile` for `direction`."""
    return _plain(profile) and all(rule_supported(rule) for rule in profile.rules(direction))
