"""A Kubernetes NetworkPolicy converted exactly as Calico converts it (libcalico-go
`K8sNetworkPolicyToCalico`): a namespaced `NetworkPolicy` named `knp.default.<name>`, tier
`default`, order 1000, selector `projectcalico.org/orchestrator == "k8s" && <podSelector>`, one
Allow rule per (protocol, peer) with protocols in name order and each protocol's ports merged
into ranges; a staged one becomes the `StagedNetworkPolicy` of that name.
"""

from __future__ import annotations

from typing import NamedTuple

from netwarden.dialects.calico_syntax import (
    ORCHESTRATOR,
    calico_resource,
    calico_selector,
    port_value,
)
from netwarden.dialects.k8s_netpol_writer import write_network_policy
from netwarden.dialects.writer_common import Manifest
from netwarden.model import DEFAULT_TIER, And, Has, In, Not, NotIn, Policy, Selector, StagedAction

K8S_POLICY_PREFIX = "knp.default."  # Calico's name for a converted Kubernetes NetworkPolicy


def convert_network_policy(policy: Policy) -> Manifest:
    """A Kubernetes NetworkPolicy (staged or not) as the Calico policy Calico makes of it."""
    name = K8S_POLICY_PREFIX + policy.name
    if policy.staged is StagedAction.DELETE:
        # Only the name matters: the staged set removes the policy of that name.
        staged = calico_resource("StagedNetworkPolicy", name, policy.namespace)
        return {**staged, "spec": {"stagedAction": StagedAction.DELETE.value}}
    # First the Kubernetes object itself (which checks the policy is one), then Calico's
    # conversion of that object.
    converted = k8s_to_calico(write_network_policy(policy))
    if policy.staged is None:
        return converted
    return {
        **converted,
        "kind": "StagedNetworkPolicy",
        "spec": {"stagedAction": policy.staged.value, **converted["spec"]},
    }


def k8s_to_calico(network_policy: Manifest) -> Manifest:
    """Calico's `K8sNetworkPolicyToCalico` on a NetworkPolicy manifest (as `k8s_writer`
    writes it: protocols and policyTypes explicit)."""
    meta, spec = network_policy["metadata"], network_policy["spec"]
    rules: dict[str, list[Manifest]] = {}
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        rules[direction] = [
            converted
            for rule in spec.get(direction, [])
            for converted in _convert_rule(
                rule.get(peers_key, []), rule.get("ports", []), direction == "ingress"
            )
        ]
    types = [t for t in ("Ingress", "Egress") if t in spec.get("policyTypes", [])] or ["Ingress"]
    calico_spec: Manifest = {
        "tier": DEFAULT_TIER.name,
        "order": 1000,
        "selector": _k8s_selector(spec.get("podSelector"), pods=True),
        "types": types,
    }
    calico_spec.update({direction: found for direction, found in rules.items() if found})
    converted = calico_resource(
        "NetworkPolicy", K8S_POLICY_PREFIX + meta["name"], meta["namespace"]
    )
    return {**converted, "spec": calico_spec}


def _k8s_selector(selector: Manifest | None, pods: bool) -> str:
    """Calico's `k8sSelectorToCalico`: pod selectors gain the orchestrator clause; an absent
    namespace selector is "" (the policy's namespace), an empty one `all()`."""
    if selector is None:
        return calico_selector(ORCHESTRATOR) if pods else ""
    terms: list[Selector] = [
        In(key, frozenset({value}))
        for key, value in sorted(selector.get("matchLabels", {}).items())
    ]
    for expression in selector.get("matchExpressions", []):
        key, values = expression["key"], frozenset(expression.get("values", []))
        terms.append(
            {
                "In": In(key, values),
                "NotIn": NotIn(key, values),
                "Exists": Has(key),
                "DoesNotExist": Not(Has(key)),
            }[expression["operator"]]
        )
    if pods:
        terms.insert(0, ORCHESTRATOR)
    if not terms:
        return "all()"
    return calico_selector(terms[0] if len(terms) == 1 else And(tuple(terms)))


class CalicoPort(NamedTuple):
    """A numorstring.Port: a range of numbers, or a name."""

    start: int = 0
    end: int = 0
    name: str = ""

    def value(self) -> int | str:
        if self.name:
            return self.name
        return port_value(self.start, self.end)


def _convert_rule(peers: list[Manifest], ports: list[Manifest], ingress: bool) -> list[Manifest]:
    """Calico's `k8sRuleToCalico`: ports grouped by protocol (no ports: one group without a
    protocol; a port without a number: every port of its protocol), one rule per protocol and
    peer, protocols in name order."""
    groups: dict[str, list[CalicoPort] | None] = {}
    for port in ports:
        protocol = port.get("protocol", "TCP")
        if "port" not in port:
            groups[protocol] = None
            continue
        value = port["port"]
        if isinstance(value, str):
            found = CalicoPort(name=value)
        else:
            found = CalicoPort(value, int(port.get("endPort") or value))
        if protocol not in groups:
            groups[protocol] = [found]
        elif groups[protocol]:  # a protocol already open to every port stays so
            groups[protocol] = [*(groups[protocol] or []), found]
    if not ports:
        groups = {"": None}
    rules = []
    every_peer: list[Manifest | None] = [None]
    for protocol in sorted(groups):
        merged = simplify_ports(groups[protocol] or [])
        for peer in peers or every_peer:
            entity = _k8s_peer(peer)
            rule: Manifest = {"action": "Allow"}
            if protocol:
                rule["protocol"] = protocol
            destination = {} if ingress else entity
            if merged:
                destination = {**destination, "ports": [p.value() for p in merged]}
            if ingress and entity:
                rule["source"] = entity
            if destination:
                rule["destination"] = destination
            rules.append(rule)
    return rules


def _k8s_peer(peer: Manifest | None) -> Manifest:
    """Calico's `k8sPeerToCalicoFields`: ipBlock -> nets/notNets, else selectors."""
    if peer is None:
        return {}
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        entity: Manifest = {"nets": [block["cidr"]]}
        if block.get("except"):
            entity["notNets"] = list(block["except"])
        return entity
    entity = {"selector": _k8s_selector(peer.get("podSelector"), pods=True)}
    namespaces = _k8s_selector(peer.get("namespaceSelector"), pods=False)
    if namespaces:
        entity["namespaceSelector"] = namespaces
    return entity


def simplify_ports(ports: list[CalicoPort]) -> list[CalicoPort]:
    """Calico's `SimplifyPorts`: named ports first as given, then the numbers merged into the
    fewest ranges; unchanged when there is at most one number to merge."""
    numbers = [(port.start, port.end) for port in ports if not port.name]
    if len(ports) <= 1 or sum(end - start + 1 for start, end in numbers) <= 1:
        return ports
    merged: list[tuple[int, int]] = []
    for start, end in sorted(numbers):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return [port for port in ports if port.name] + [CalicoPort(s, e) for s, e in merged]
