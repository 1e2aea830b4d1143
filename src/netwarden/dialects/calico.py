"""Calico `projectcalico.org/v3` policies and tiers: NetworkPolicy, GlobalNetworkPolicy, their
staged forms (StagedNetworkPolicy, StagedGlobalNetworkPolicy, StagedKubernetesNetworkPolicy)
and Tier.

A Calico policy maps one to one onto a model policy of its tier (default `default`), ordered by
`order` (absent: last). A namespaced policy selects workloads of its namespace; a global one
selects workloads everywhere (narrowed by `namespaceSelector`) and host endpoints. `types`
defaults as Calico does: Egress when there are egress rules, Ingress when there are ingress
rules or no egress rules. A staged policy has the kind and key of the policy it stages, so the
engine can put it in place of (Set) or remove (Delete) that policy when it previews the change.
Rules are read by `calico_rules`.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Literal

from pydantic import Field

from netwarden.dialects.calico_rules import (
    RuleScope,
    RuleSpec,
    cleaned,
    notice,
    plain_selector_at,
    read_rules,
)
from netwarden.dialects.k8s_common import ObjectMeta
from netwarden.dialects.k8s_netpol import network_policy
from netwarden.dialects.source import Document
from netwarden.dialects.validation import Schema, fail, parse
from netwarden.engine.labels import resolve_rule_scope
from netwarden.model import (
    ADMIN_TIER,
    BASELINE_TIER,
    DEFAULT_TIER,
    Action,
    All,
    Direction,
    EndpointSelector,
    Policy,
    Rule,
    Selector,
    StagedAction,
    Tier,
)

CALICO_NETWORK_POLICY = "CalicoNetworkPolicy"
GLOBAL_NETWORK_POLICY = "GlobalNetworkPolicy"
STAGED_PREFIX = "staged:"  # how Calico names a staged policy: "staged:" + the enforced name

_KINDS = {
    "NetworkPolicy": CALICO_NETWORK_POLICY,
    "StagedNetworkPolicy": CALICO_NETWORK_POLICY,
    "GlobalNetworkPolicy": GLOBAL_NETWORK_POLICY,
    "StagedGlobalNetworkPolicy": GLOBAL_NETWORK_POLICY,
}
_TIER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Calico fixes the order of the tiers it creates itself.
_BUILTIN_TIER_ORDERS = {tier.name: tier.order for tier in (ADMIN_TIER, DEFAULT_TIER, BASELINE_TIER)}

PolicyType = Literal["Ingress", "Egress"]
StagedActionName = Literal["Set", "Delete", "Learn", "Ignore"]


class NetworkPolicySpec(Schema):
    tier: str = ""
    order: float | None = None
    selector: str = Field(default="", max_length=1024)
    service_account_selector: str = Field(default="", max_length=1024)
    types: list[PolicyType] | None = Field(default=None, max_length=2)
    ingress: list[RuleSpec] = []
    egress: list[RuleSpec] = []
    staged_action: StagedActionName | None = None  # staged kinds only


class GlobalNetworkPolicySpec(NetworkPolicySpec):
    namespace_selector: str = Field(default="", max_length=1024)
    do_not_track: bool = False
    pre_dnat: bool = Field(default=False, alias="preDNAT")
    apply_on_forward: bool = False


class NetworkPolicy(Schema):
    metadata: ObjectMeta
    spec: NetworkPolicySpec = NetworkPolicySpec()


class GlobalNetworkPolicy(NetworkPolicy):
    spec: GlobalNetworkPolicySpec = GlobalNetworkPolicySpec()


class StagedKubernetesSpec(Schema):
    staged_action: StagedActionName = "Set"


class StagedKubernetesNetworkPolicy(Schema):
    spec: StagedKubernetesSpec = StagedKubernetesSpec()


def read_calico_policy(document: Document) -> list[object]:
    """A (Staged)NetworkPolicy or (Staged)GlobalNetworkPolicy: the policy and its notices."""
    kind = document.data["kind"]
    cluster_wide = _KINDS[kind] == GLOBAL_NETWORK_POLICY
    document = cleaned(document)
    schema: type[NetworkPolicy] = GlobalNetworkPolicy if cluster_wide else NetworkPolicy
    resource = parse(document, schema)
    meta, spec = resource.metadata, resource.spec
    namespace = None if cluster_wide else meta.namespace or "default"
    staged = _staged_action(document, spec.staged_action) if kind.startswith("Staged") else None
    parts: list[object] = []
    policy = Policy(
        name=meta.name,
        kind=_KINDS[kind],
        tier=spec.tier or DEFAULT_TIER.name,
        subject=EndpointSelector(namespace=namespace, host_endpoints=cluster_wide),
        namespace=namespace,
        order=spec.order,
        source=document.location(),
        staged=staged,
        calico_name=(STAGED_PREFIX if staged else "") + meta.name,
    )
    if staged is StagedAction.DELETE:
        # Only kind and key matter: the policy it names is removed. Calico allows a tier.
        _check_empty(document, allowed={"stagedAction", "tier"})
        return [policy]
    if isinstance(spec, GlobalNetworkPolicySpec):
        parts.extend(_check_packet_path(document, spec))
    ingress, egress, notices = _rules(document, spec, RuleScope(namespace))
    policy = replace(
        policy, subject=_subject(document, spec, namespace), ingress=ingress, egress=egress
    )
    return [policy, *parts, *notices]


def _staged_action(document: Document, written: str | None) -> StagedAction:
    """Set (the default) or Delete; Calico Enterprise's Learn and Ignore preview nothing here."""
    if written in ("Learn", "Ignore"):
        fail(document, ("spec", "stagedAction"), f"stagedAction {written} is not supported")
    return StagedAction(written or "Set")


def _check_empty(document: Document, allowed: set[str]) -> None:
    """A staged Delete names a policy and sets nothing else (Calico rejects it otherwise)."""
    spec = document.data.get("spec")
    for key, value in spec.items() if isinstance(spec, dict) else ():
        if key not in allowed and not _zero(value):
            fail(document, ("spec", key), "must be empty when stagedAction is Delete")


def _zero(value: Any) -> bool:
    return value is None or value is False or value == "" or value == [] or value == {}


def _subject(
    document: Document, spec: NetworkPolicySpec, namespace: str | None
) -> EndpointSelector:
    pods = plain_selector_at(document, ("spec", "selector"), spec.selector or "all()")
    accounts = None
    if spec.service_account_selector:
        path = ("spec", "serviceAccountSelector")
        accounts = plain_selector_at(document, path, spec.service_account_selector)
    if not isinstance(spec, GlobalNetworkPolicySpec):
        return EndpointSelector(pods=pods, namespace=namespace, service_accounts=accounts)
    namespaces: Selector = All()
    host_endpoints = True
    if spec.namespace_selector:
        path = ("spec", "namespaceSelector")
        namespaces = plain_selector_at(document, path, spec.namespace_selector)
        # Calico ANDs the rewritten namespace selector (`all()` -> has(projectcalico.org/
        # namespace), other keys prefixed pcns.) into the policy's: a host endpoint, with no
        # namespace labels, stays selected only if that holds for no labels at all.
        host_endpoints = resolve_rule_scope(namespaces, True).matches({})
    return EndpointSelector(
        pods=pods, namespaces=namespaces, host_endpoints=host_endpoints, service_accounts=accounts
    )


def _rules(
    document: Document, spec: NetworkPolicySpec, scope: RuleScope
) -> tuple[tuple[Rule, ...] | None, tuple[Rule, ...] | None, list[object]]:
    """Ingress and egress rules, each None when `types` leaves its direction out. Rules of a
    direction left out are still validated (Calico does) and reported as ignored."""
    types = _types(document, spec)
    notices: list[object] = []
    read: dict[Direction, tuple[Rule, ...] | None] = {}
    for direction in Direction:
        written = spec.ingress if direction is Direction.INGRESS else spec.egress
        path = ("spec", direction.value)
        rules, found = read_rules(document, path, written, direction, scope)
        name = direction.value.capitalize()
        if name in types:
            read[direction] = rules
            notices.extend(found)
        else:
            read[direction] = None
            if rules:
                message = f"{direction.value} rules are ignored: types does not include {name}"
                notices.append(notice(document.location(path), message))
    return read[Direction.INGRESS], read[Direction.EGRESS], notices


def _types(document: Document, spec: NetworkPolicySpec) -> set[str]:
    """As written, or Calico's default: Egress with egress rules, Ingress with ingress rules
    or without egress rules."""
    if spec.types:
        if len(set(spec.types)) != len(spec.types):
            fail(document, ("spec", "types"), "a type is listed more than once")
        return set(spec.types)
    types = {"Egress"} if spec.egress else set()
    if spec.ingress or not spec.egress:
        types.add("Ingress")
    return types


def _check_packet_path(document: Document, spec: GlobalNetworkPolicySpec) -> list[object]:
    """Calico's rules for preDNAT / doNotTrack / applyOnForward, and a notice that netwarden
    evaluates such a policy where it evaluates every other one."""
    if spec.pre_dnat and spec.do_not_track:
        fail(document, ("spec", "preDNAT"), "preDNAT and doNotTrack cannot both be true")
    if spec.pre_dnat and spec.egress:
        fail(document, ("spec", "egress"), "a preDNAT policy cannot have egress rules")
    if spec.pre_dnat and "Egress" in (spec.types or []):
        fail(document, ("spec", "types"), "a preDNAT policy cannot have the Egress type")
    if (spec.pre_dnat or spec.do_not_track) and not spec.apply_on_forward:
        message = "applyOnForward must be true when preDNAT or doNotTrack is"
        fail(document, ("spec", "applyOnForward"), message)
    notices: list[object] = []
    for field, on, where in (
        ("preDNAT", spec.pre_dnat, "before DNAT"),
        ("doNotTrack", spec.do_not_track, "before connection tracking, untracked"),
    ):
        if on:
            message = (
                f"{field}: netwarden evaluates this policy as a normal policy "
                f"(Calico applies it {where}, on host endpoints)"
            )
            notices.append(notice(document.location(("spec", field)), message))
    return notices


def read_staged_kubernetes_policy(document: Document) -> list[Policy]:
    """A Kubernetes NetworkPolicy spec plus `stagedAction`: the policy the Kubernetes reader
    makes, staged."""
    resource = parse(cleaned(document), StagedKubernetesNetworkPolicy)
    staged = _staged_action(document, resource.spec.staged_action)
    if staged is StagedAction.DELETE:
        _check_empty(document, allowed={"stagedAction"})
    policy = network_policy(document)
    if staged is StagedAction.DELETE:
        policy = replace(policy, ingress=None, egress=None)
    return [replace(policy, staged=staged, calico_name=STAGED_PREFIX + policy.calico_name)]


class TierSpec(Schema):
    order: float | None = None
    default_action: Literal["Deny", "Pass"] = "Deny"


class TierResource(Schema):
    metadata: ObjectMeta
    spec: TierSpec = TierSpec()


def read_tier(document: Document) -> list[Tier]:
    """A tier; without an order it comes last. Tiers Calico creates keep their order."""
    tier = parse(cleaned(document), TierResource)
    name, order = tier.metadata.name, tier.spec.order
    if len(name) > 63 or not _TIER_NAME.match(name):
        message = f"invalid tier name {name!r} (at most 63 characters a-z, 0-9, '-')"
        fail(document, ("metadata", "name"), message)
    expected = _BUILTIN_TIER_ORDERS.get(name)
    if expected is not None and order != expected:
        fail(document, ("spec", "order"), f"the {name} tier's order must be {expected:.0f}")
    action = Action.PASS if tier.spec.default_action == "Pass" else Action.DENY
    return [Tier(name, float("inf") if order is None else order, action, document.location())]


READERS = {
    ("projectcalico.org", "NetworkPolicy"): read_calico_policy,
    ("projectcalico.org", "GlobalNetworkPolicy"): read_calico_policy,
    ("projectcalico.org", "StagedNetworkPolicy"): read_calico_policy,
    ("projectcalico.org", "StagedGlobalNetworkPolicy"): read_calico_policy,
    ("projectcalico.org", "StagedKubernetesNetworkPolicy"): read_staged_kubernetes_policy,
    ("projectcalico.org", "Tier"): read_tier,
}
