"""One model rule as nft rules, and the named sets its ends use.

`RuleRenderer` writes each resolved rule as one nft rule per disjoint alternative (address
ends, ports, families) and defines, on first use, the sets those rules look up: `known<F>`,
`addr<F>_...` per rule end that selects endpoints, `nets<F>_...` for CIDRs and `port<F>_...`
for named ports and Services (see `nftables` for the layout). It also records what each set
was decided from (`PeerUse`, `NamedPortUse`) so that `nft_delta` can place pods later
without rendering again. The chains around the rules are `nft_render`'s.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from itertools import product

from netwarden.dataplane.nft_ruleset import NamedPortUse, PeerUse, SetDeclaration, policy_identity
from netwarden.dataplane.nft_syntax import (
    action_verdict,
    address_elements,
    address_port_elements,
    digest,
    flow_log,
    flow_log_hit,
    join_families,
    port_ranges,
    protocol_list,
    range_element,
    rule_conditions,
    safe_name,
)
from netwarden.engine.resolved import (
    FAMILIES,
    AddressMatch,
    PortSelection,
    ResolvedNode,
    ResolvedRule,
)
from netwarden.model import Action, Direction, Peer, PortMatch


@dataclass
class RuleRenderer:
    """Renders the rules of one ruleset and holds the sets they use, in order of first use."""

    node: ResolvedNode
    flow_logs: bool = False
    sets: dict[Hashable, str] = field(default_factory=dict)
    declarations: list[SetDeclaration] = field(default_factory=list)
    contents: dict[str, tuple[str, ...]] = field(default_factory=dict)
    peer_uses: dict[Hashable, PeerUse] = field(default_factory=dict)
    port_uses: dict[Hashable, NamedPortUse] = field(default_factory=dict)

    def logged(self, hit: str, verdict: str, direction: Direction) -> str:
        """`verdict`, logged first when flow logs are on."""
        return f"{flow_log(hit, direction)} {verdict}" if self.flow_logs else verdict

    def rule(self, resolved: ResolvedRule, direction: Direction) -> list[str]:
        """One model rule as nft rules: one per disjoint alternative, all with its action."""
        rule = resolved.rule
        by_name = resolved.ports is not None and _by_name(rule.ports)
        not_by_name = resolved.not_ports is not None and _by_name(rule.not_ports)
        # A rule with named ports stays even when no endpoint declares them yet: its (empty)
        # set then fills as pods come, without rewriting the rule.
        if resolved.never or (resolved.ports is not None and resolved.ports.empty and not by_name):
            return []
        common = rule_conditions(rule, resolved.label)
        verdict = action_verdict(rule.action, resolved.label)
        if rule.action is not Action.LOG:  # Pass too: Calico lists every hit in order
            verdict = self.logged(
                flow_log_hit(resolved.policy, rule.action, resolved.index), verdict, direction
            )
        specific = resolved.peer is not None or resolved.local is not None or by_name or not_by_name
        families: Sequence[int | None] = (
            ((rule.ip_version,) if rule.ip_version else FAMILIES) if specific else (None,)
        )
        lines: list[str] = []
        ingress = direction is Direction.INGRESS
        label = f"{direction.value}/{policy_identity(resolved.policy)}/{resolved.index}"
        short = f"{safe_name(resolved.policy.name)[:24]}_{resolved.index}"
        for family in families:
            factors = [
                self._ends(
                    resolved.peer_for(family),
                    "saddr" if ingress else "daddr",
                    family,
                    _End(rule.peers, False, not ingress, f"{short}_{digest(label + '/peer', 6)}"),
                )
                if family is not None and resolved.peer is not None
                else [[]],
                self._ends(
                    resolved.local_for(family),
                    "daddr" if ingress else "saddr",
                    family,
                    _End(
                        (rule.local,) if rule.local is not None else (),
                        True,
                        ingress,
                        f"{short}_{digest(label + '/local', 6)}",
                    ),
                )
                if family is not None and resolved.local is not None
                else [[]],
                self._ports(resolved, family, f"{short}_{digest(label + '/ports', 6)}"),
            ]
            not_ports = self._not_ports(resolved, family, f"{short}_{digest(label + '/not', 6)}")
            for parts in product(*factors):
                terms = [*common, *(t for part in parts for t in part), *not_ports]
                version = family or rule.ip_version
                if version and not any(t.startswith(("ip ", "ip6 ")) for t in terms):
                    terms.insert(0, f"meta nfproto ipv{version}")
                lines.append(" ".join([*terms, verdict]))
        return join_families(lines)

    def _ends(
        self, match: AddressMatch | None, field_name: str, family: int, end: _End
    ) -> list[list[str]]:
        """Disjoint alternatives for one end's address; none when nothing can match."""
        assert match is not None
        ip = "ip" if family == 4 else "ip6"
        known = self.node.known_for(family)
        use_key = (family, end.peers, end.local, end.destination)
        if match.known == known and match.external_everything:
            self.peer_uses[use_key] = PeerUse(
                family, end.peers, end.local, end.destination, None, universal=True
            )
            return [[]]
        found = []
        # Any end may match pods that come later (a selector by labels, an ipBlock by
        # address): it keeps an address set, empty for now, whenever the family has inventory
        # addresses at all, so that churn only changes elements, never rules.
        set_name = None
        if match.known or known:
            set_name = self.set(
                "addr", family, ("addr", *use_key), end.label, address_elements(match.known)
            )
            found.append([f"{ip} {field_name} @{set_name}"])
        self.peer_uses[use_key] = PeerUse(family, end.peers, end.local, end.destination, set_name)
        if match.external_everything:
            found.append([f"{ip} {field_name} != @known{family}"])
        elif match.external:
            elements = tuple(range_element(r) for r in match.external)
            nets = self.set("nets", family, ("nets", family, elements), None, elements)
            found.append([f"{ip} {field_name} != @known{family}", f"{ip} {field_name} @{nets}"])
        if match.ports:
            elements = address_port_elements(match.ports)
            ports = self.set("port", family, ("service", family, elements), None, elements)
            found.append([f"{ip} {field_name} . meta l4proto . th dport @{ports}"])
        return found

    def _named_set(
        self,
        selection: PortSelection,
        matches: tuple[PortMatch, ...],
        family: int | None,
        label: str,
    ) -> str | None:
        """The (address, protocol, port) set of a rule's named ports, if it has any."""
        if family is None or not _by_name(matches):
            return None
        named = selection.named_for(family)
        key = ("named", family, matches)
        set_name = None
        if named or self.node.known_for(family):
            set_name = self.set("port", family, key, label, address_port_elements(named))
        names = tuple(m for m in matches if m.name is not None)
        self.port_uses[key] = NamedPortUse(family, names, selection.ranges, set_name)
        return set_name

    def _ports(self, resolved: ResolvedRule, family: int | None, label: str) -> list[list[str]]:
        selection = resolved.ports
        if selection is None:
            return [[]]
        found = []
        if selection.ranges:
            found.append([port_ranges(selection.ranges, "")])
        if selection.protocols:
            found.append([f"meta l4proto {protocol_list(selection.protocols)}"])
        ports = self._named_set(selection, resolved.rule.ports, family, label)
        if ports is not None:
            ip = "ip" if family == 4 else "ip6"
            found.append([f"{ip} daddr . meta l4proto . th dport @{ports}"])
        return found

    def _not_ports(self, resolved: ResolvedRule, family: int | None, label: str) -> list[str]:
        selection = resolved.not_ports
        if selection is None:
            return []
        terms = []
        if selection.ranges:
            only = {r.protocol for r in selection.ranges} == {resolved.rule.protocol}
            terms.append(port_ranges(selection.ranges, "!= ", only))
        if selection.protocols:
            terms.append(f"meta l4proto != {protocol_list(selection.protocols)}")
        ports = self._named_set(selection, resolved.rule.not_ports, family, label)
        if ports is not None:
            ip = "ip" if family == 4 else "ip6"
            terms.append(f"{ip} daddr . meta l4proto . th dport != @{ports}")
        return terms

    # --- sets -----------------------------------------------------------------------------

    def set(
        self,
        kind: str,
        family: int,
        key: Hashable,
        label: str | None,
        elements: tuple[str, ...],
    ) -> str:
        """The name of the set `key` stands for, defining it on first use. Sets that follow
        the inventory (`label` given) are named after the rule end they serve, so the name
        holds in any inventory; the others (CIDRs, Service ports) after their content."""
        if key in self.sets:
            return self.sets[key]
        if kind == "known":
            name = f"known{family}"
        else:
            name = f"{kind}{family}_{label or digest(' '.join(elements), 10)}"
        address = "ipv4_addr" if family == 4 else "ipv6_addr"
        kinds = {
            "known": f"type {address}",
            "addr": f"type {address}",
            "nets": f"type {address}; flags interval",
            "port": f"type {address} . inet_proto . inet_service",
        }
        self.declarations.append(SetDeclaration(name, kinds[kind]))
        self.contents[name] = elements
        self.sets[key] = name
        return name


@dataclass(frozen=True)
class _End:
    """One end of a rule as `_ends` names and indexes it."""

    peers: tuple[Peer, ...]
    local: bool
    destination: bool
    label: str


def _by_name(matches: tuple[PortMatch, ...]) -> bool:
    return any(match.name is not None for match in matches)
