"""Shadowed and redundant rules and policies (NW301-303), and tiers that end every flow before
later tiers see it (NW702), proved on sets.

A rule (a policy) is redundant when removing it changes no verdict of any pair of endpoints
(IP atoms included) on any port atom. `lint_walk` gives, per direction and subject class, the
cells whose direction verdict the removal changes; a changed cell changes a verdict only if
the other direction allows the flow, so each changed cell is checked against the other
direction's table for every (source, destination) the cell stands for. For a policy that
changes both directions the other direction is checked before and after the removal, so a
change is never missed (a policy is then at worst not reported). Rules of redundant policies,
of policies that select nothing and with only empty peers are not reported again. Rules with
an ICMP type condition (and their policies) are never reported: port atoms carry echo
requests only.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from netwarden.analysis.lint_catalogue import Finding, Related, finding
from netwarden.analysis.lint_classes import RuleKey
from netwarden.analysis.lint_context import LintContext, policy_name
from netwarden.analysis.lint_inventory import count, examples
from netwarden.analysis.lint_walk import Cause, DirectionWalk, RuleEffect
from netwarden.analysis.partition import pack
from netwarden.analysis.tables import DirectionTable
from netwarden.engine.endpoint_vectors import Ints, Mask
from netwarden.model import Direction, Policy, Rule

#: How many shadowing rules a finding names.
_CAUSES = 3


class CrossCheck:
    """Whether cells changed in one direction change a verdict, given the other direction."""

    def __init__(self, context: LintContext) -> None:
        self.context = context
        self._subject_side: dict[tuple[int, int], Ints] = {}
        self._peer_side: dict[tuple[int, int, int], Ints] = {}

    def other(self, walk: DirectionWalk) -> DirectionWalk:
        context = self.context
        return context.ingress if walk is context.egress else context.egress

    def changes_verdict(
        self, walk: DirectionWalk, klass: int, changed: Mask, others: list[DirectionTable]
    ) -> bool:
        """Some flow of a changed cell (class `klass`, [rows x atoms]) is allowed by the other
        direction in one of `others` (its tables before and after the change)."""
        other = self.other(walk)
        key = (id(walk), klass)
        peers_of_subjects = self._subject_side.get(key)
        if peers_of_subjects is None:
            # The subject side of this direction is the peer side of the other.
            peers_of_subjects = np.unique(other.peer_class[walk.subject_class == klass])
            self._subject_side[key] = peers_of_subjects
        for row in np.flatnonzero(changed.any(axis=1)).tolist():
            side = (id(walk), klass, row)
            subjects_of_peers = self._peer_side.get(side)
            if subjects_of_peers is None:
                classes = np.flatnonzero(walk.local[klass] == row)
                in_row = np.isin(walk.peer_class, classes)
                subjects_of_peers = np.unique(other.subject_class[in_row])
                self._peer_side[side] = subjects_of_peers
            wanted = pack(changed[row : row + 1])[0]
            for table in others:
                at = table.offsets[subjects_of_peers][:, None] + table.local[subjects_of_peers][
                    :, peers_of_subjects
                ].astype(np.int64)
                if (table.bits[at] & wanted).any():
                    return True
        return False


def redundancy_findings(
    context: LintContext, inert_policies: set[int], inert_rules: set[RuleKey]
) -> Iterator[Finding]:
    cross = CrossCheck(context)
    redundant: set[int] = set()
    for position, policy in enumerate(context.policies):
        if position in inert_policies:
            continue
        directions = [d for d in Direction if policy.rules(d) is not None]
        if not directions:
            redundant.add(position)
            yield finding(
                "NW303",
                f"{policy_name(policy)} has no rules in any direction: it changes no verdict",
                policy.source,
                policy_name(policy),
            )
            continue
        walks = [context.walk(d) for d in directions]
        if any(position in walk.unprovable_policies for walk in walks) or _icmp_typed(policy):
            continue
        if not _policy_changes(context, cross, position):
            redundant.add(position)
            yield finding(
                "NW303",
                f"removing {policy_name(policy)} changes no verdict: "
                + _policy_reason(context, position, directions),
                policy.source,
                policy_name(policy),
            )
    for direction in Direction:
        walk = context.walk(direction)
        for key, effect in walk.rules.items():
            if key.policy in redundant or key.policy in inert_policies or key in inert_rules:
                continue
            if effect.unprovable or _icmp_rule(context.rule(key)):
                continue
            found = _rule_finding(context, cross, walk, key, effect)
            if found is not None:
                yield found
    yield from _blocking(context)


def _icmp_rule(rule: Rule) -> bool:
    """An ICMP type condition: port atoms carry ICMP echo requests only, so what the rule
    does to other ICMP messages is not seen; such rules are never called redundant."""
    return rule.icmp is not None or rule.not_icmp is not None


def _icmp_typed(policy: Policy) -> bool:
    return any(_icmp_rule(rule) for d in Direction for rule in policy.rules(d) or ())


def _policy_changes(context: LintContext, cross: CrossCheck, position: int) -> bool:
    new_tables: dict[Direction, DirectionTable] = {}
    changes: dict[Direction, list[tuple[int, Mask]]] = {}
    for direction in Direction:
        walk = context.walk(direction)
        found = walk.policy_changes.get(position, [])
        if found:
            changes[direction] = found
            new_tables[direction] = walk.with_finals(dict(found))
    for direction, found in changes.items():
        walk = context.walk(direction)
        other = cross.other(walk)
        others = [other.table]
        if other.direction in new_tables:
            others.append(new_tables[other.direction])
        for klass, without in found:
            if cross.changes_verdict(walk, klass, without != walk.finals[klass], others):
                return True
    return False


def _policy_reason(context: LintContext, position: int, directions: list[Direction]) -> str:
    effects = [
        effect
        for direction in directions
        for key, effect in context.walk(direction).rules.items()
        if key.policy == position
    ]
    if not any(context.policies[position].rules(d) for d in directions):
        return (
            "it has no rules, and every endpoint it isolates is isolated without it too "
            "(other policies of its tier select it)"
        )
    if not any(effect.hit for effect in effects):
        return "none of its rules ever decides a flow (earlier rules or tiers decide them first)"
    return (
        "what it decides is decided the same without it (by later rules, a tier's default, "
        "or the other direction)"
    )


def _cause_text(context: LintContext, cause: Cause) -> tuple[str, Related]:
    if cause.rule is not None:
        name = context.rule_name(cause.rule)
        return name, Related(context.rule_location(cause.rule), f"shadowed by {name}")
    if cause.tier == "failsafe":
        return "the host endpoint's failsafe ports", Related(None, "failsafe ports")
    if cause.tier == "profiles":
        return "the host endpoint's profiles", Related(None, "profiles")
    tier = context.cluster.tiers_by_name.get(cause.tier)
    text = f"the default action of tier {cause.tier}"
    return text, Related(tier.source if tier else None, text)


def _rule_finding(
    context: LintContext,
    cross: CrossCheck,
    walk: DirectionWalk,
    key: RuleKey,
    effect: RuleEffect,
) -> Finding | None:
    name, where = context.rule_name(key), context.rule_location(key)
    if not effect.matched:
        return finding(
            "NW302",
            f"{name} matches no flow of the endpoints its policy selects (its ports, protocol "
            "or local conditions leave nothing): removing it changes no verdict",
            where,
            name,
        )
    if not effect.hit:
        ranked = [cause for cause, _ in effect.shadows.most_common()]
        texts = [_cause_text(context, cause) for cause in ranked[:_CAUSES]]
        more = len(ranked) - _CAUSES
        listed = ", ".join(text for text, _ in texts) + (f" and {more} more" if more > 0 else "")
        return finding(
            "NW301",
            f"{name} never decides a flow: every flow it matches is decided before it by " + listed,
            where,
            name,
            tuple(related for _, related in texts),
        )
    others = [cross.other(walk).table]
    for klass, changed in effect.changes:
        if cross.changes_verdict(walk, klass, changed, others):
            return None
    if effect.changes:
        opposite = cross.other(walk).direction.value
        reason = (
            f"every flow whose {walk.direction.value} verdict it changes is denied by the "
            f"{opposite} side anyway"
        )
    else:
        reason = "the rules after it (or the tier's default) decide the same flows alike"
    return finding("NW302", f"{name} is redundant: {reason}", where, name)


def _blocking(context: LintContext) -> Iterator[Finding]:
    for direction in Direction:
        walk = context.walk(direction)
        for tier_name, blocking in walk.blocking.items():
            subjects = np.isin(walk.subject_class[: context.pod_count], blocking.classes)
            members = np.flatnonzero(subjects)
            names = examples([context.endpoints[i].key for i in members.tolist()])
            later = sorted(blocking.later)
            later_names = examples([policy_name(context.policies[p]) for p in later])
            first = context.policies[blocking.first_policy]
            tier = context.cluster.tiers_by_name.get(tier_name)
            default = tier.default_action.value if tier else "?"
            related = tuple(
                Related(
                    context.policies[p].source, f"never applies: {policy_name(context.policies[p])}"
                )
                for p in later[:_CAUSES]
            )
            if tier is not None:
                related = (Related(tier.source, f"tier {tier_name}"), *related)
            yield finding(
                "NW702",
                f"tier {tier_name} (default action {default}) decides every "
                f"{direction.value} flow of {count(members.shape[0], 'endpoint')} ({names}); "
                f"the later policies that select them ({later_names}) never apply to them",
                first.source,
                f"Tier {tier_name} {direction.value}",
                related,
            )
