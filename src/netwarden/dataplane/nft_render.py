"""One node's resolved form rendered as a ruleset: the chains, the dispatch maps, the script.

`render_node` builds the base chains, the dispatch verdict maps, and per direction the
endpoint class, tier and policy chains around the rules `nft_rules` writes; the chains and
maps of host endpoints come from `nft_host`. The layout is described in `nftables`, the
backend's public face; this module decides nothing the engine has not resolved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from netwarden.dataplane.nft_host import HostChains, host_base_chains, host_chains, host_maps
from netwarden.dataplane.nft_rules import RuleRenderer
from netwarden.dataplane.nft_ruleset import (
    PASS_MARK,
    RenderIndex,
    Ruleset,
    SetContents,
    SetDeclaration,
    nft_text,
    policy_identity,
)
from netwarden.dataplane.nft_syntax import (
    PROFILE_HIT,
    address_elements,
    comment_text,
    digest,
    flow_log_hit,
    safe_name,
)
from netwarden.engine.resolved import (
    FAMILIES,
    ResolvedDirection,
    ResolvedNode,
    ResolvedPolicy,
    TierRun,
)
from netwarden.model import Action, Direction, Policy


def render_node(
    resolved: ResolvedNode,
    interfaces: Mapping[str, str],
    interface_prefix: str,
    flow_logs: bool = False,
) -> tuple[Ruleset, RenderIndex]:
    """The ruleset, and what it was decided from (for incremental updates)."""
    return _Renderer(resolved, interfaces, interface_prefix, flow_logs=flow_logs).render()


def class_chain_name(direction: Direction, runs: Iterable[tuple[str, Sequence[Policy]]]) -> str:
    """The chain of the endpoint class that meets these (tier, policies) in this order: named
    after the class's meaning, so a pod of the same class finds it in any inventory."""
    text = ";".join(f"{tier}:{','.join(map(policy_identity, ps))}" for tier, ps in runs)
    return f"{direction.value}_c_{digest(text, 10)}"


@dataclass
class _Chain:
    name: str
    comment: str
    rules: list[str] = field(default_factory=list)
    hook: str = ""


@dataclass
class _Renderer:
    """Builds one ruleset; used once by `render_node`."""

    node: ResolvedNode
    interfaces: Mapping[str, str]
    prefix: str
    policy_chains: list[_Chain] = field(default_factory=list)
    tier_chains: list[_Chain] = field(default_factory=list)
    class_chains: list[_Chain] = field(default_factory=list)
    base_chains: list[_Chain] = field(default_factory=list)
    flow_logs: bool = False
    host_dispatch: dict[Direction, HostChains] = field(default_factory=dict)
    # The verdict maps, declared after every set the rules use.
    maps: list[tuple[SetDeclaration, tuple[str, ...]]] = field(default_factory=list)
    rules: RuleRenderer = field(init=False)

    def __post_init__(self) -> None:
        self.rules = RuleRenderer(self.node, self.flow_logs)

    def render(self) -> tuple[Ruleset, RenderIndex]:
        for family in FAMILIES:
            elements = address_elements(self.node.known_for(family))
            self.rules.set("known", family, ("known", family), f"known{family}", elements)
        dispatch = {
            d: self._direction(self.node.direction(d))
            for d in (Direction.EGRESS, Direction.INGRESS)
        }
        self._base_chains()
        for direction in (Direction.EGRESS, Direction.INGRESS):
            name = f"{direction.value}_dispatch"
            self.maps.append(
                (
                    SetDeclaration(name, "type ifname : verdict", True),
                    tuple(f'"{i}" : {v}' for i, v in dispatch[direction]),
                )
            )
        if self.host_dispatch:  # only a node with host endpoints has these (nft_host.py)
            self.maps += host_maps(self.host_dispatch)
            self.base_chains += [_Chain(n, "", r, hook) for n, hook, r in host_base_chains()]
        chains = [
            *self.policy_chains,
            *sorted(self.tier_chains, key=lambda c: c.name),
            *sorted(self.class_chains, key=lambda c: c.name),
            *self.base_chains,
        ]
        chain_lines: list[str] = []
        for chain in chains:
            chain_lines.append(f"\tchain {chain.name} {{")
            if chain.hook:
                chain_lines.append(f"\t\t{chain.hook}")
            if chain.comment:
                chain_lines.append(f'\t\tcomment "{nft_text(chain.comment)}"')
            chain_lines += [f"\t\t{rule}" for rule in chain.rules]
            chain_lines.append("\t}")
        declarations = [*self.rules.declarations, *(d for d, _ in self.maps)]
        contents = (
            *(SetContents(d.name, self.rules.contents[d.name]) for d in self.rules.declarations),
            *(SetContents(d.name, elements) for d, elements in self.maps),
        )
        content_hash = hashlib.sha256("\n".join(chain_lines).encode())
        for declaration, held in zip(declarations, contents, strict=True):
            content_hash.update(f"{declaration}\n{held}\n".encode())
        ruleset = Ruleset(
            self.node.node,
            tuple(declarations),
            tuple(chain_lines),
            contents,
            content_hash.hexdigest()[:8],
            len(chains),
            sum(len(c.rules) for c in chains),
            len(self.node.endpoints),
        )
        index = RenderIndex(
            tuple(self.rules.peer_uses.values()),
            tuple(self.rules.port_uses.values()),
            frozenset(c.name for c in chains),
        )
        return ruleset, index

    # --- chains ---------------------------------------------------------------------------

    def _direction(self, resolved: ResolvedDirection) -> list[tuple[str, str]]:
        """Policy, tier and class chains for one direction; the dispatch map's elements."""
        name = resolved.direction.value
        policy_chains = [self._policy(p) for p in resolved.policies]
        tier_chains: dict[tuple[str, tuple[int, ...]], str] = {}
        elements: list[tuple[str, str]] = []
        keep = f"meta mark set meta mark & {~PASS_MARK & 0xFFFFFFFF:#010x}"
        for endpoint_class in resolved.classes:
            runs = [
                (run.tier.name, [resolved.policies[i].policy for i in run.policies])
                for run in endpoint_class.tiers
            ]
            chain = _Chain(class_chain_name(resolved.direction, runs), f"{name} class")
            chain.rules.append(keep)
            self._jump_tiers(
                chain.rules, endpoint_class.tiers, resolved, policy_chains, tier_chains
            )
            chain.rules.append(
                self.rules.logged(
                    PROFILE_HIT,
                    'counter accept comment "profile: no tier decided"',
                    resolved.direction,
                )
            )
            self.class_chains.append(chain)
            elements += [(key, f"jump {chain.name}") for key in endpoint_class.endpoints]
        unselected = "accept"
        if self.flow_logs and resolved.unselected:  # a verdict map entry cannot log: a chain
            profile = _Chain(f"{name}_profile", "flow log: no policy selects the endpoint")
            profile.rules.append(
                self.rules.logged(PROFILE_HIT, "counter accept", resolved.direction)
            )
            self.class_chains.append(profile)
            unselected = f"jump {profile.name}"
        elements += [(key, unselected) for key in resolved.unselected]
        if self.node.host_endpoints:
            hosts = host_chains(
                resolved,
                self.rules.rule,
                lambda rules, tiers: self._jump_tiers(
                    rules, tiers, resolved, policy_chains, tier_chains
                ),
                self.rules.logged,
            )
            self.host_dispatch[resolved.direction] = hosts
            self.policy_chains += [_Chain(n, c, r) for n, c, r in hosts.profile_chains]
            self.class_chains += [_Chain(n, c, r) for n, c, r in hosts.class_chains]
        return sorted((self.interfaces[key], verdict) for key, verdict in elements)

    def _jump_tiers(
        self,
        rules: list[str],
        tiers: Sequence[TierRun],
        resolved: ResolvedDirection,
        policy_chains: list[str],
        tier_chains: dict[tuple[str, tuple[int, ...]], str],
    ) -> None:
        """One jump per tier into its (shared) tier chain; after a tier that may Pass, the
        Pass bit is cleared for the next one."""
        keep = f"meta mark set meta mark & {~PASS_MARK & 0xFFFFFFFF:#010x}"
        name = resolved.direction.value
        for run in tiers:
            key = (run.tier.name, run.policies)
            if key not in tier_chains:
                identities = "|".join(
                    policy_identity(resolved.policies[i].policy) for i in run.policies
                )
                tier_chains[key] = self._tier(
                    f"{name}_t_{safe_name(run.tier.name)[:32]}_{digest(identities, 6)}",
                    run.tier.name,
                    run.tier.default_action,
                    [(policy_chains[i], resolved.policies[i]) for i in run.policies],
                )
            rules.append(f"jump {tier_chains[key]}")
            if any(resolved.policies[i].passes for i in run.policies):
                rules.append(keep)

    def _tier(
        self, name: str, tier: str, default: Action, policies: list[tuple[str, ResolvedPolicy]]
    ) -> str:
        chain = _Chain(name, f"tier {tier}")
        for chain_name, policy in policies:
            chain.rules.append(f"jump {chain_name}")
            if policy.passes:
                chain.rules.append(f"meta mark & {PASS_MARK:#010x} == {PASS_MARK:#010x} return")
        if default in (Action.DENY, Action.ALLOW):
            verdict = "drop" if default is Action.DENY else "accept"
            end = f'counter {verdict} comment "{comment_text(f"{tier}/(end of tier)")}"'
            if policies:  # Calico names a tier's default after one of its selecting policies
                first = policies[0][1]
                end = self.rules.logged(
                    flow_log_hit(first.policy, default, -1), end, first.direction
                )
            chain.rules.append(end)
        self.tier_chains.append(chain)
        return name

    def _policy(self, policy: ResolvedPolicy) -> str:
        name = f"{policy.direction.value}_p_{safe_name(policy.policy.key)}"
        if any(c.name == name for c in self.policy_chains):
            name += "_" + digest(policy_identity(policy.policy), 6)
        chain = _Chain(name, f"{policy.policy.tier}/{policy.policy.key}")
        for rule in policy.rules:
            chain.rules += self.rules.rule(rule, policy.direction)
        self.policy_chains.append(chain)
        return chain.name

    def _base_chains(self) -> None:
        wildcard = f'"{self.prefix}*"'
        hooks = (
            ("forward_egress", "forward", "filter", "iifname", Direction.EGRESS),
            ("forward_ingress", "forward", "filter + 10", "oifname", Direction.INGRESS),
            ("input_egress", "input", "filter", "iifname", Direction.EGRESS),
            ("output_ingress", "output", "filter", "oifname", Direction.INGRESS),
        )
        for name, hook, priority, match, direction in hooks:
            chain = _Chain(
                name, "", hook=f"type filter hook {hook} priority {priority}; policy accept;"
            )
            chain.rules += [
                "ct state established,related accept",
                "ct state invalid drop",
                "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, "
                'nd-neighbor-advert } accept comment "IPv6 neighbour discovery: not policy"',
                f"{match} vmap @{direction.value}_dispatch",
                f'{match} {wildcard} counter drop comment "fail closed: no policy compiled for '
                'this interface"',
            ]
            self.base_chains.append(chain)
