"""Lint checks on who policies select and what their rules can reach in the inventory.

NW101/102 workloads no policy selects, NW201 policies that select nothing, NW202 peers that
match nothing, NW501 named ports nobody declares, NW601 Pass rules with nothing below, NW701
empty tiers. Selections and peers are the engine's vectors over every endpoint and one
endpoint per IP atom, so a CIDR peer always matches its addresses and a selector matches
exactly what the engine would.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from netwarden.analysis.groups import owner
from netwarden.analysis.lint_catalogue import Finding, Related, finding
from netwarden.analysis.lint_classes import RuleKey
from netwarden.analysis.lint_context import LintContext, policy_name
from netwarden.dialects.calico_selector import format_selector
from netwarden.engine.endpoint_vectors import NO_PORT, Mask
from netwarden.engine.matching import peer_matches
from netwarden.engine.vector_support import rule_supported
from netwarden.model import (
    Action,
    Direction,
    EndpointSelector,
    EntityMatch,
    NetworkPeer,
    NodePeer,
    Peer,
    PortMatch,
    Rule,
    Selector,
)

#: How many example names a message lists before "and N more".
_EXAMPLES = 3


def count(number: int, noun: str) -> str:
    """`1 pod`, `3 pods`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def examples(names: list[str]) -> str:
    shown = ", ".join(names[:_EXAMPLES])
    more = len(names) - _EXAMPLES
    return f"{shown} and {more} more" if more > 0 else shown


class InventoryChecks:
    """The selection and inventory checks; `inert_policies` (select nothing) and `inert_rules`
    (every peer matches nothing) are left out of the redundancy checks, whose finding would
    only repeat these."""

    def __init__(self, context: LintContext) -> None:
        self.context = context
        self.inert_policies: set[int] = set()
        self.inert_rules: set[RuleKey] = set()
        vectors = context.builder.vectors
        self.pods: Mask = vectors.is_pod.copy()
        self.pods[context.pod_count :] = False

    def findings(self) -> list[Finding]:
        found = list(self._unselected())
        found += self._selects_nothing()
        found += self._peers()
        found += self._named_ports()
        found += self._passes()
        found += self._empty_tiers()
        return found

    def _rules(self) -> Iterator[tuple[RuleKey, Rule]]:
        for position, policy in enumerate(self.context.policies):
            for direction in Direction:
                for index, rule in enumerate(policy.rules(direction) or ()):
                    yield RuleKey(position, direction, index), rule

    # NW101 / NW102 ---------------------------------------------------------------------------

    def _unselected(self) -> Iterator[Finding]:
        context = self.context
        for direction, check in ((Direction.INGRESS, "NW101"), (Direction.EGRESS, "NW102")):
            covered = np.zeros(context.builder.vectors.size, dtype=np.bool_)
            for position, policy in enumerate(context.policies):
                if policy.rules(direction) is not None:
                    covered |= context.selected[position]
            open_pods = np.flatnonzero(self.pods & ~covered)
            workloads: dict[tuple[str, str], list[int]] = {}
            for i in open_pods.tolist():
                endpoint = context.endpoints[i]
                workloads.setdefault((endpoint.namespace or "", owner(endpoint)), []).append(i)
            for (namespace, name), members in workloads.items():
                first = context.endpoints[members[0]]
                pods = examples([context.endpoints[m].name for m in members])
                yield finding(
                    check,
                    f"{namespace}/{name} ({count(len(members), 'pod')}: {pods}) is selected by "
                    f"no policy for {direction.value}: every {direction.value} connection is "
                    "allowed",
                    first.source,
                    f"{namespace}/{name}",
                )

    # NW201 -----------------------------------------------------------------------------------

    def _selects_nothing(self) -> Iterator[Finding]:
        for position, policy in enumerate(self.context.policies):
            if policy.ingress is None and policy.egress is None:
                continue  # no direction: redundancy reports it
            if not self.context.selected[position].any():
                self.inert_policies.add(position)
                yield finding(
                    "NW201",
                    f"{policy_name(policy)} selects no endpoint: no pod (or host endpoint) "
                    "matches its subject",
                    policy.source,
                    policy_name(policy),
                )

    # NW202 -----------------------------------------------------------------------------------

    def peer_vector(self, peer: Peer, rule: Rule) -> Mask:
        """Which endpoints (and IP atoms) the peer matches, as the engine decides."""
        context = self.context
        builder = context.builder
        if not rule_supported(rule):
            cluster = context.cluster
            return np.fromiter(
                (
                    peer_matches(peer, e, e.ips[0] if e.ips else None, cluster)
                    for e in context.endpoints
                ),
                np.bool_,
                len(context.endpoints),
            )
        if isinstance(peer, EntityMatch):
            return builder.compiler.entities.match(peer)
        return builder.vectors.peer(peer)

    def _peers(self) -> Iterator[Finding]:
        context = self.context
        for key, rule in self._rules():
            if key.policy in self.inert_policies or not rule.peers:
                continue
            empty = [
                i for i, peer in enumerate(rule.peers) if not self.peer_vector(peer, rule).any()
            ]
            if len(empty) == len(rule.peers):
                self.inert_rules.add(key)
            for i in empty:
                yield finding(
                    "NW202",
                    f"{context.rule_name(key)}: peer {describe_peer(rule.peers[i])} matches "
                    "no endpoint, network set or address"
                    + (" (the rule matches nothing)" if len(empty) == len(rule.peers) else ""),
                    context.rule_location(key),
                    f"{context.rule_name(key)} peer {i}",
                )

    # NW501 -----------------------------------------------------------------------------------

    def _declared(self, match: PortMatch, among: Mask) -> bool:
        tables = self.context.builder.vectors.named_tables(match)
        return any((table.ports[among] != NO_PORT).any() for table in tables)

    def _named_ports(self) -> Iterator[Finding]:
        context = self.context
        for key, rule in self._rules():
            named = [m for m in rule.ports if m.name is not None]
            if not named or key.policy in self.inert_policies or key in self.inert_rules:
                continue
            if key.direction is Direction.INGRESS:
                among = context.selected[key.policy]
                whose = "the pods the policy selects"
            elif rule.peers:
                among = np.zeros(len(context.endpoints), dtype=np.bool_)
                for peer in rule.peers:
                    among |= self.peer_vector(peer, rule)
                whose = "the rule's destination pods"
            else:
                among = self.pods
                whose = "any pod"
            undeclared = [match for match in named if not self._declared(match, among)]
            if len(undeclared) == len(rule.ports):
                self.inert_rules.add(key)  # no port it names exists: it matches nothing
            for match in undeclared:
                yield finding(
                    "NW501",
                    f"{context.rule_name(key)}: named port {match} is declared by none of {whose}",
                    context.rule_location(key),
                    f"{context.rule_name(key)} port {match}",
                )

    # NW601 -----------------------------------------------------------------------------------

    def _passes(self) -> Iterator[Finding]:
        context = self.context
        tiers = [tier.name for tier, _ in context.builder.ordered]
        # Per direction and policy position, what the policies from there on select.
        below_from: dict[Direction, list[Mask]] = {}
        for direction in Direction:
            running = np.zeros(len(context.endpoints), dtype=np.bool_)
            suffix = [running]
            for position in range(len(context.policies) - 1, -1, -1):
                if context.policies[position].rules(direction) is not None:
                    running = running | context.selected[position]
                suffix.append(running)
            below_from[direction] = suffix[::-1]
        first_after = {name: i + 1 for i, name in enumerate(tiers)}  # the last one's wins
        for key, rule in self._rules():
            if rule.action is not Action.PASS or key.policy in self.inert_policies:
                continue
            subjects = context.selected[key.policy] & self.pods
            below = below_from[key.direction][first_after[tiers[key.policy]]]
            alone = np.flatnonzero(subjects & ~below)
            if alone.shape[0] == 0:
                continue
            names = examples([context.endpoints[i].key for i in alone.tolist()])
            total = int(subjects.sum())
            yield finding(
                "NW601",
                f"{context.rule_name(key)}: Pass hands {key.direction.value} flows of "
                f"{alone.shape[0]} of {total} selected pods ({names}) to no later policy, so "
                "their profile allows them",
                context.rule_location(key),
                context.rule_name(key),
            )

    # NW701 -----------------------------------------------------------------------------------

    def _empty_tiers(self) -> Iterator[Finding]:
        used = {policy.tier for policy in self.context.cluster.enforced_policies}
        staged = {policy.tier for policy in self.context.cluster.policies}
        for tier in self.context.cluster.tiers:
            if tier.source is None or tier.name in used:
                continue
            note = " (only staged policies)" if tier.name in staged else ""
            yield finding(
                "NW701",
                f"tier {tier.name} (order {tier.order:g}) has no enforced policy{note}",
                tier.source,
                f"Tier {tier.name}",
                (),
            )


def selector_text(selector: Selector) -> str:
    """Calico's text for a selector (`app == "web"`), which reads well for both dialects."""
    try:
        return format_selector(selector)
    except ValueError:
        return repr(selector)


def describe_peer(peer: Peer) -> str:
    """A short description of a peer for messages."""
    if isinstance(peer, NetworkPeer):
        excepted = f" except {', '.join(map(str, peer.excepted))}" if peer.excepted else ""
        return f"{peer.cidr}{excepted}"
    if isinstance(peer, NodePeer):
        return f"nodes [{selector_text(peer.nodes)}]"
    if isinstance(peer, EndpointSelector):
        where = (
            f"namespace {peer.namespace}"
            if peer.namespace
            else f"namespaces [{selector_text(peer.namespaces)}]"
        )
        return f"pods [{selector_text(peer.pods)}] in {where}"
    parts = []
    if peer.selector is not None:
        parts.append(f"selector [{selector_text(peer.selector)}]")
    if peer.nets:
        parts.append("nets " + ", ".join(map(str, peer.nets)))
    if peer.namespaces is not None:
        parts.append(f"namespaces [{selector_text(peer.namespaces)}]")
    if peer.service is not None:
        parts.append(f"service {'/'.join(peer.service)}")
    return " ".join(parts) or "entity"


__all__ = ["InventoryChecks", "Related", "describe_peer", "examples"]
