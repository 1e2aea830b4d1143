"""Calico host endpoints in the nftables ruleset: the node's own traffic under policy.

The engine attributes a flow to a host endpoint by address (`PolicyEngine.subject_of`: a node
or hostNetwork pod address that a host endpoint's `expectedIPs` hold), whatever interface the
packet uses, so the ruleset dispatches on addresses too (the model keeps no `interfaceName`):

- base chains `host_ingress` (input hook, priority filter + 10: after a local pod's own egress
  chain) and `host_egress` (output hook, priority filter - 10: before a local pod's ingress
  chain). Like the pod base chains they accept established and related packets, drop invalid
  ones and let IPv6 neighbour discovery through, then look the packet's own-end address up in
  the verdict maps `host<F>_<direction>_dispatch` (destination on input, source on output).
  An address no host endpoint holds is not matched: the node's other traffic stays as it was.
- class chain `host_<direction>_c_<hash of tiers, policies and profiles>`: Felix's failsafe
  ports accepted before any policy; one jump per tier that selects the class, sharing the
  pods' tier and policy chains; one jump per profile the host endpoints list; then `drop` (no
  tier decided and no profile allowed: a host endpoint's default is deny).
- profile chain `host_<direction>_r_<profile>_<hash>`: the profile's Allow and Deny rules in
  order, rendered as policy rules are (the engine passes over Log and Pass in a profile).

Forwarded traffic is not a host endpoint's (`applyOnForward`, `preDNAT` and `doNotTrack` are
not in the model and the engine decides none of them), so nothing here hooks `forward`.
Every name comes from what it means, so churn of pods leaves these chains and maps alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from netwarden.dataplane.nft_ruleset import PASS_MARK, SetDeclaration, policy_identity
from netwarden.dataplane.nft_syntax import digest
from netwarden.engine.resolved import (
    FAMILIES,
    PROFILE_TIER,
    HostEndpointClass,
    ResolvedDirection,
    ResolvedRule,
    TierRun,
)
from netwarden.model import Direction, protocol_name

#: The flow log hits of the host endpoint verdicts that no policy or profile rule names.
FAILSAFE_HIT = "__FAILSAFE__|__FAILSAFE__|allow|0"
NO_PROFILE_HIT = f"{PROFILE_TIER}|__NO_MATCH__|deny|-1"
_HOOKS = {
    Direction.INGRESS: ("input", "filter + 10", "daddr"),
    Direction.EGRESS: ("output", "filter - 10", "saddr"),
}


@dataclass
class HostChains:
    """What one direction adds for host endpoints: chains as (name, comment, rules), and the
    dispatch entries per family as (address, verdict)."""

    profile_chains: list[tuple[str, str, list[str]]] = field(default_factory=list)
    class_chains: list[tuple[str, str, list[str]]] = field(default_factory=list)
    dispatch: dict[int, list[tuple[str, str]]] = field(default_factory=dict)


#: The renderer's own steps, so that host endpoint rules read exactly as pod rules do.
RenderRule = Callable[[ResolvedRule, Direction], list[str]]
JumpTiers = Callable[[list[str], Sequence[TierRun]], None]
Logged = Callable[[str, str, Direction], str]


def host_chains(
    resolved: ResolvedDirection, render_rule: RenderRule, jump_tiers: JumpTiers, logged: Logged
) -> HostChains:
    """Profile and class chains, and the address dispatch, of one direction."""
    found = HostChains(dispatch={family: [] for family in FAMILIES})
    name = resolved.direction.value
    profile_chains = []
    for profile in resolved.profiles:
        chain = (
            f"host_{name}_r_{_safe(profile.profile.name)[:32]}_{digest(profile.profile.name, 6)}"
        )
        rules = [line for rule in profile.rules for line in render_rule(rule, resolved.direction)]
        found.profile_chains.append((chain, f"{PROFILE_TIER}/{profile.profile.name}", rules))
        profile_chains.append(chain)
    for host_class in resolved.host_classes:
        chain = host_class_chain_name(resolved, host_class)
        rules = [f"meta mark set meta mark & {~PASS_MARK & 0xFFFFFFFF:#010x}"]
        if resolved.failsafe:
            ports = ", ".join(
                f"{protocol_name(p).lower()} . {port}" for p, port in resolved.failsafe
            )
            verdict = f'counter accept comment "failsafe {_failsafe_word(resolved)} port"'
            rules.append(
                f"meta l4proto . th dport {{ {ports} }} "
                + logged(FAILSAFE_HIT, verdict, resolved.direction)
            )
        jump_tiers(rules, host_class.tiers)
        rules += [f"jump {profile_chains[i]}" for i in host_class.profiles]
        end = 'counter drop comment "host endpoint: no tier decided, no profile allowed"'
        rules.append(logged(NO_PROFILE_HIT, end, resolved.direction))
        found.class_chains.append((chain, f"{name} host endpoint class", rules))
        for address in host_class.addresses:
            found.dispatch[address.version].append((str(address), f"jump {chain}"))
    for entries in found.dispatch.values():
        entries.sort()
    return found


def host_class_chain_name(resolved: ResolvedDirection, host_class: HostEndpointClass) -> str:
    """Named after the tiers, policies and profiles the class meets, never after a counter."""
    tiers = ";".join(
        f"{run.tier.name}:"
        + ",".join(policy_identity(resolved.policies[i].policy) for i in run.policies)
        for run in host_class.tiers
    )
    profiles = ",".join(resolved.profiles[i].profile.name for i in host_class.profiles)
    return f"host_{resolved.direction.value}_c_{digest(f'{tiers}|{profiles}', 10)}"


def dispatch_map_name(family: int, direction: Direction) -> str:
    return f"host{family}_{direction.value}_dispatch"


def host_maps(
    dispatch: dict[Direction, HostChains],
) -> list[tuple[SetDeclaration, tuple[str, ...]]]:
    """The address verdict maps, both families, each direction."""
    found = []
    for direction in (Direction.EGRESS, Direction.INGRESS):
        for family in FAMILIES:
            address = "ipv4_addr" if family == 4 else "ipv6_addr"
            declaration = SetDeclaration(
                dispatch_map_name(family, direction), f"type {address} : verdict", True
            )
            entries = dispatch[direction].dispatch[family]
            found.append((declaration, tuple(f"{a} : {v}" for a, v in entries)))
    return found


def host_base_chains() -> list[tuple[str, str, list[str]]]:
    """(name, hook line, rules) of the two base chains."""
    found = []
    for direction in (Direction.EGRESS, Direction.INGRESS):
        hook, priority, field_name = _HOOKS[direction]
        rules = [
            "ct state established,related accept",
            "ct state invalid drop",
            "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, "
            'nd-neighbor-advert } accept comment "IPv6 neighbour discovery: not policy"',
            *(
                f"{'ip' if family == 4 else 'ip6'} {field_name} vmap "
                f"@{dispatch_map_name(family, direction)}"
                for family in FAMILIES
            ),
        ]
        found.append(
            (
                f"host_{direction.value}",
                f"type filter hook {hook} priority {priority}; policy accept;",
                rules,
            )
        )
    return found


def _failsafe_word(resolved: ResolvedDirection) -> str:
    return "inbound" if resolved.direction is Direction.INGRESS else "outbound"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text).strip("_") or "x"


__all__ = [
    "FAILSAFE_HIT",
    "NO_PROFILE_HIT",
    "HostChains",
    "host_base_chains",
    "host_chains",
    "host_maps",
]
