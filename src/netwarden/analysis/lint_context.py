"""What the lint checks share: endpoints, atoms, the table builder, selections and walks."""

from __future__ import annotations

from functools import cached_property

from netwarden.analysis.atoms import PortAtoms, ip_atoms, port_atoms
from netwarden.analysis.lint_classes import ClassPrograms, RuleKey, selected_masks
from netwarden.analysis.lint_walk import DirectionWalk
from netwarden.analysis.tables import TableBuilder
from netwarden.engine.endpoint_vectors import Mask
from netwarden.model import (
    ClusterState,
    Direction,
    Endpoint,
    Location,
    Policy,
    Rule,
    external_endpoint,
)


class LintContext:
    """What the checks share: the cluster's endpoints (and one per IP atom), port atoms, the
    table builder's vectors and compiled rules, selections, and each direction's walk."""

    def __init__(self, cluster: ClusterState) -> None:
        self.cluster = cluster
        self.atoms: PortAtoms = port_atoms(cluster)
        externals = ip_atoms(cluster)
        self.endpoints: tuple[Endpoint, ...] = tuple(cluster.endpoints) + tuple(
            external_endpoint(atom.representative) for atom in externals
        )
        self.pod_count = len(cluster.endpoints)
        self.builder = TableBuilder(cluster, self.endpoints, self.atoms)
        self.policies: list[Policy] = [policy for _, policy in self.builder.ordered]
        self.selected: list[Mask] = selected_masks(self.builder)

    @cached_property
    def egress(self) -> DirectionWalk:
        return DirectionWalk(ClassPrograms(self.builder, Direction.EGRESS, self.selected))

    @cached_property
    def ingress(self) -> DirectionWalk:
        return DirectionWalk(ClassPrograms(self.builder, Direction.INGRESS, self.selected))

    def walk(self, direction: Direction) -> DirectionWalk:
        return self.egress if direction is Direction.EGRESS else self.ingress

    def rule(self, key: RuleKey) -> Rule:
        rules = self.policies[key.policy].rules(key.direction)
        assert rules is not None
        return rules[key.number]

    def rule_location(self, key: RuleKey) -> Location | None:
        return self.rule(key).source or self.policies[key.policy].source

    def rule_name(self, key: RuleKey) -> str:
        """`shop/frontend ingress[0]`, with the rule's own name when it has one."""
        rule = self.rule(key)
        own = (
            f" ({rule.name})" if rule.name and not rule.name.startswith(key.direction.value) else ""
        )
        policy = self.policies[key.policy]
        return f"{policy_name(policy)} {key.direction.value}[{key.number}]{own}"


def policy_name(policy: Policy) -> str:
    """`NetworkPolicy shop/frontend`, `GlobalNetworkPolicy security.block` (kind and key)."""
    return f"{policy.kind} {policy.key}"
