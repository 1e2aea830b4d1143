"""What the vectorized engine compiles, and the exact fallback for everything else.

The vectorized path knows the constructs listed here (Kubernetes-shaped policies: selector,
CIDR and node peers, ports; pod, host and external endpoints). A policy, rule or endpoint that
uses anything more (a Calico entity match, rule-wide protocol or ICMP conditions, a service
account selector, a host endpoint, ...) is not guessed at: the probes it could touch are
decided one by one by `PolicyEngine.decide`, the reference, so answers stay exact while the
model grows ahead of the vectorized path (at single-flow speed for those probes). Checks
compare each field with its default, so a field added to the model later is "unsupported"
until it is taught here.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

from netwarden.model import (
    Direction,
    EndpointKind,
    EndpointSelector,
    NetworkPeer,
    NodePeer,
    Policy,
    PortMatch,
    Rule,
)

#: Endpoint kinds whose meaning the vectorized path reproduces (as subject and as peer).
KINDS = frozenset({EndpointKind.POD, EndpointKind.HOST, EndpointKind.EXTERNAL})

# Fields the vectorized path reads, or that never change a verdict; any other field must hold
# its default value.
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
    Rule: {"action", "peers", "ports", "name", "source"},
    # `host_endpoints` widens a selector to host endpoints only, and every probe with a host
    # endpoint at either end is the reference's.
    EndpointSelector: {"pods", "namespaces", "namespace", "host_endpoints"},
    NetworkPeer: {"cidr", "excepted"},
    NodePeer: {"nodes"},
    PortMatch: {"protocol", "ports", "name"},
}


def _plain(item: Any) -> bool:
    """`item` is of a known type (exactly) and every field it has beyond the known is unset."""
    known = _KNOWN.get(type(item))
    if known is None:
        return False
    for field in fields(item):
        if field.name in known:
            continue
        if field.default is not MISSING:
            default = field.default
        elif field.default_factory is not MISSING:
            default = field.default_factory()
        else:
            return False
        if getattr(item, field.name) != default:
            return False
    return True


def rule_supported(rule: Rule) -> bool:
    return (
        _plain(rule)
        and all(_plain(peer) for peer in rule.peers)
        and all(_plain(match) for match in rule.ports)
    )


def policy_supported(policy: Policy, direction: Direction) -> bool:
    """Whether the vectorized path can run `policy`'s rules for `direction`."""
    if not (_plain(policy) and _plain(policy.subject)):
        return False
    return all(rule_supported(rule) for rule in policy.rules(direction) or ())
