"""The nftables backend: one node's resolved policies as one `nft -f` script.

`compile_ruleset` renders `netwarden.engine.resolve.resolve_node` and decides nothing itself.
The script replaces `table inet netwarden` in one transaction (`add table`, `delete table`,
then the table), so `nft -f` swaps the whole ruleset atomically or changes nothing.

Layout, for a node namespace where each pod has its own interface (Calico style):

- base chains: `forward_egress` (forward hook, priority filter) dispatches on the input
  interface to the sending pod's egress policy; `forward_ingress` (priority filter + 10) on the
  output interface to the receiving pod's ingress policy. `accept` in the first lets the
  packet go on to the second; `drop` is final. `input_egress` covers local pods talking to the
  node's own (and hostNetwork pods') addresses, `output_ingress` the node talking to them.
  Each starts with `ct state established,related accept`, `ct state invalid drop` and
  accepting IPv6 neighbour discovery (link control, which Calico allows before policy too).
- dispatch: the verdict maps `egress_dispatch` / `ingress_dispatch` send a pod interface to
  its endpoint class chain, or `accept` when no policy selects it in that direction. Any other
  interface with the pod prefix is dropped: an endpoint whose policy is not compiled yet is
  never reachable (fail closed).
- class chain (`<direction>_c_<hash of its tiers and policies>`): one jump per tier that
  selects the class, then `accept` (the profile allows a pod no tier decided). Tier chain
  (`<direction>_t_<tier>_<hash>`): one jump per policy in order, then the tier's default (`drop`
  for Deny; falling off the end is Pass). Policy chain (`<direction>_p_<policy>`): the rules in
  order. Allow is `accept`, Deny `drop`, Log `log prefix "<tier>/<policy>/<rule> " group 1`
  and on, Pass sets `PASS_MARK` in the packet mark and returns; the tier chain returns when it
  sees the bit, and the class chain clears it before the next tier.
- sets: `known4`/`known6` (every inventory address); `addr<F>_<policy>_<rule>_<hash>` hash
  sets of single addresses, one per rule end that selects endpoints (shared by every rule with
  the same peers), kept even while empty so that pods joining only add elements;
  `nets<F>_<hash>` interval sets of ranges (CIDRs: they change only with policies);
  `port<F>_...` (address . protocol . port) sets for named ports and Services. A rule matches
  a peer when the address is in its `addr` set, or is not in `known` and is in its `nets` set.
  Port lists are anonymous sets. Names come from what a set or chain means, never from a
  counter, so another inventory gives the same names and churn is a change of elements
  (`nft_update`, `nft_delta`). The set `generation` holds a hash naming the content loaded.

Every rule carries `counter` and `comment "<tier>/<policy>/<rule name or index>"`.
With `flow_logs`, every Allow, Deny and Pass, each tier's default and the profile's accept also
log the packet (`FLOW_LOG_GROUPS`, one NFLOG group per direction, prefix as Calico names the
hit): only a connection's first packet gets that far, so `netwarden.flows.collect` turns the
logs into one record per connection.

Calico host endpoints (the node's own traffic: failsafe ports, tiers, profiles, default deny)
are dispatched by address from their own base chains on the input and output hooks
(`nft_host.py`); a hostNetwork pod at a host endpoint's address is governed by it, as the
engine decides, and otherwise is not a subject and needs nothing.

Interface names come from the caller: the lab passes its veth names; without a lab,
`calico_interfaces` derives Calico's: `cali` + the first 11 hex digits of sha1("<ns>.<pod>").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_network
from itertools import product

from netwarden.dataplane.apply import apply_ruleset
from netwarden.dataplane.nft_host import HostChains, host_base_chains, host_chains, host_maps
from netwarden.dataplane.nft_ruleset import (
    GENERATION_SET,
    PASS_MARK,
    TABLE,
    NamedPortUse,
    PeerUse,
    RenderIndex,
    Ruleset,
    SetContents,
    SetDeclaration,
    policy_identity,
)
from netwarden.dataplane.nft_ruleset import (
    nft_text as _text,
)
from netwarden.engine.resolve import (
    FAMILIES,
    AddressMatch,
    AddressPort,
    AddressRange,
    PortSelection,
    ProtocolPorts,
    ResolvedDirection,
    ResolvedNode,
    ResolvedPolicy,
    ResolvedRule,
    TierRun,
    resolve_node,
)
from netwarden.errors import CompileError
from netwarden.model import (
    ICMP,
    ICMPV6,
    SCTP,
    TCP,
    UDP,
    Action,
    ClusterState,
    Direction,
    EndpointKind,
    IPAddress,
    Peer,
    Policy,
    PortMatch,
    Rule,
)

#: NFLOG group of Log rules.
LOG_GROUP = 1
#: NFLOG groups of flow logs (`flow_logs=True`), per direction: the first packet of each new
#: connection, logged at each rule that decided or passed it with the prefix
#: `<tier>|<policy>|<action>|<rule> `, the hit as Calico's flow logs write it (rule -1: the
#: tier's default; `__PROFILE__`: no tier decided). Egress is what the source's reporter saw.
FLOW_LOG_GROUPS = {Direction.EGRESS: 2, Direction.INGRESS: 3}
PROFILE_HIT = "__PROFILE__|__PROFILE__|allow|0"
_PREFIX_MAX = 126  # nft log prefixes hold 127 bytes, the last one a space
CALICO_PREFIX = "cali"
_COMMENT_MAX = 120  # nft refuses comments over 128 bytes
_NAMES = {TCP: "tcp", UDP: "udp", SCTP: "sctp", ICMP: "icmp"}
_SAFE = re.compile(r"[^A-Za-z0-9_]+")

__all__ = [
    "GENERATION_SET",
    "PASS_MARK",
    "TABLE",
    "CompileError",
    "NamedPortUse",
    "NftablesBackend",
    "PeerUse",
    "RenderIndex",
    "Ruleset",
    "SetContents",
    "SetDeclaration",
    "calico_interface",
    "calico_interfaces",
    "class_chain_name",
    "compile_ruleset",
    "policy_identity",
    "render_node",
    "render_ruleset",
]


def calico_interface(namespace: str, pod: str) -> str:
    """The host-side veth name Calico gives a pod.

    >>> calico_interface("shop", "db-0")
    'cali43878a68a0a'
    """
    return CALICO_PREFIX + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def calico_interfaces(cluster: ClusterState, node: str) -> dict[str, str]:
    """Pod key -> Calico interface name, for every pod the inventory places on `node`."""
    return {
        e.key: calico_interface(e.namespace or "", e.name)
        for e in cluster.endpoints
        if e.kind is EndpointKind.POD and e.node == node
    }


def compile_ruleset(
    cluster: ClusterState,
    node: str,
    interfaces: Mapping[str, str],
    interface_prefix: str = CALICO_PREFIX,
    flow_logs: bool = False,
) -> Ruleset:
    """The ruleset for the pods of `interfaces` (pod key -> host-side interface) on `node`;
    with `flow_logs`, every verdict on a new connection is also logged (`FLOW_LOG_GROUPS`).

    >>> from netwarden.dialects import load_paths
    >>> cluster = load_paths(["examples/shop"]).cluster
    >>> ruleset = compile_ruleset(cluster, "node-a", calico_interfaces(cluster, "node-a"))
    >>> ruleset.script.splitlines()[1]
    'add table inet netwarden'
    """
    check_interfaces(interfaces, interface_prefix)
    resolved = resolve_node(cluster, node, sorted(interfaces))
    return render_ruleset(resolved, interfaces, interface_prefix, flow_logs)


def check_interfaces(interfaces: Mapping[str, str], interface_prefix: str) -> None:
    for name in interfaces.values():
        if not name.startswith(interface_prefix):
            raise CompileError(f"interface {name} does not start with {interface_prefix!r}")


def render_ruleset(
    resolved: ResolvedNode,
    interfaces: Mapping[str, str],
    interface_prefix: str,
    flow_logs: bool = False,
) -> Ruleset:
    """The nft script for a resolved node (pure: no I/O)."""
    return render_node(resolved, interfaces, interface_prefix, flow_logs)[0]


def render_node(
    resolved: ResolvedNode,
    interfaces: Mapping[str, str],
    interface_prefix: str,
    flow_logs: bool = False,
) -> tuple[Ruleset, RenderIndex]:
    """The ruleset, and what it was decided from (for incremental updates)."""
    return _Renderer(resolved, interfaces, interface_prefix, flow_logs=flow_logs).render()


def flow_log_hit(policy: Policy, action: Action, rule: int) -> str:
    """`<tier>|<policy>|<action>|<rule>` with the policy named as Calico names it
    (`shop/knp.default.db`); a name too long for the prefix is replaced by `#<digest>`."""
    name = policy.calico_name or policy.name
    named = f"{policy.namespace}/{name}" if policy.namespace else name
    hit = _text(f"{policy.tier}|{named}|{action.value.lower()}|{rule}")
    if len(hit) > _PREFIX_MAX:
        hit = _text(f"{policy.tier}|#{_digest(named, 16)}|{action.value.lower()}|{rule}")
    return hit[:_PREFIX_MAX]


def _flow_log(hit: str, direction: Direction) -> str:
    return f'log prefix "{hit} " group {FLOW_LOG_GROUPS[direction]}'


def class_chain_name(direction: Direction, runs: Iterable[tuple[str, Sequence[Policy]]]) -> str:
    """The chain of the endpoint class that meets these (tier, policies) in this order: named
    after the class's meaning, so a pod of the same class finds it in any inventory."""
    text = ";".join(f"{tier}:{','.join(map(policy_identity, ps))}" for tier, ps in runs)
    return f"{direction.value}_c_{_digest(text, 10)}"


class NftablesBackend:
    """The backend's two halves: `compile` (pure) and `apply` (one atomic transaction)."""

    name = "nftables"

    def compile(
        self,
        cluster: ClusterState,
        node: str,
        interfaces: Mapping[str, str] | None = None,
        interface_prefix: str = CALICO_PREFIX,
    ) -> Ruleset:
        chosen = calico_interfaces(cluster, node) if interfaces is None else interfaces
        return compile_ruleset(cluster, node, chosen, interface_prefix)

    def apply(self, netns: str | None, ruleset: Ruleset) -> None:
        """Load `ruleset` in `netns` (None: here) as one transaction; see `apply_ruleset`."""
        apply_ruleset(netns, ruleset.script)


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
    sets: dict[Hashable, str] = field(default_factory=dict)
    declarations: list[SetDeclaration] = field(default_factory=list)
    contents: dict[str, tuple[str, ...]] = field(default_factory=dict)
    policy_chains: list[_Chain] = field(default_factory=list)
    tier_chains: list[_Chain] = field(default_factory=list)
    class_chains: list[_Chain] = field(default_factory=list)
    base_chains: list[_Chain] = field(default_factory=list)
    peer_uses: dict[Hashable, PeerUse] = field(default_factory=dict)
    port_uses: dict[Hashable, NamedPortUse] = field(default_factory=dict)
    flow_logs: bool = False
    host_dispatch: dict[Direction, HostChains] = field(default_factory=dict)

    def render(self) -> tuple[Ruleset, RenderIndex]:
        for family in FAMILIES:
            elements = _addresses(self.node.known_for(family))
            self._set("known", family, ("known", family), f"known{family}", elements)
        dispatch = {
            d: self._direction(self.node.direction(d))
            for d in (Direction.EGRESS, Direction.INGRESS)
        }
        self._base_chains()
        for direction in (Direction.EGRESS, Direction.INGRESS):
            name = f"{direction.value}_dispatch"
            self.declarations.append(SetDeclaration(name, "type ifname : verdict", True))
            self.contents[name] = tuple(f'"{i}" : {v}' for i, v in dispatch[direction])
        if self.host_dispatch:  # only a node with host endpoints has these (nft_host.py)
            for declaration, elements in host_maps(self.host_dispatch):
                self.declarations.append(declaration)
                self.contents[declaration.name] = elements
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
                chain_lines.append(f'\t\tcomment "{_text(chain.comment)}"')
            chain_lines += [f"\t\t{rule}" for rule in chain.rules]
            chain_lines.append("\t}")
        contents = tuple(SetContents(d.name, self.contents[d.name]) for d in self.declarations)
        digest = hashlib.sha256("\n".join(chain_lines).encode())
        for declaration, held in zip(self.declarations, contents, strict=True):
            digest.update(f"{declaration}\n{held}\n".encode())
        ruleset = Ruleset(
            self.node.node,
            tuple(self.declarations),
            tuple(chain_lines),
            contents,
            digest.hexdigest()[:8],
            len(chains),
            sum(len(c.rules) for c in chains),
            len(self.node.endpoints),
        )
        index = RenderIndex(
            tuple(self.peer_uses.values()),
            tuple(self.port_uses.values()),
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
                self._logged(
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
            profile.rules.append(self._logged(PROFILE_HIT, "counter accept", resolved.direction))
            self.class_chains.append(profile)
            unselected = f"jump {profile.name}"
        elements += [(key, unselected) for key in resolved.unselected]
        if self.node.host_endpoints:
            hosts = host_chains(
                resolved,
                self._rule,
                lambda rules, tiers: self._jump_tiers(
                    rules, tiers, resolved, policy_chains, tier_chains
                ),
                self._logged,
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
                    f"{name}_t_{_safe(run.tier.name)[:32]}_{_digest(identities, 6)}",
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
            end = f'counter {verdict} comment "{_comment(f"{tier}/(end of tier)")}"'
            if policies:  # Calico names a tier's default after one of its selecting policies
                first = policies[0][1]
                end = self._logged(flow_log_hit(first.policy, default, -1), end, first.direction)
            chain.rules.append(end)
        self.tier_chains.append(chain)
        return name

    def _logged(self, hit: str, verdict: str, direction: Direction) -> str:
        """`verdict`, logged first when flow logs are on."""
        return f"{_flow_log(hit, direction)} {verdict}" if self.flow_logs else verdict

    def _policy(self, policy: ResolvedPolicy) -> str:
        name = f"{policy.direction.value}_p_{_safe(policy.policy.key)}"
        if any(c.name == name for c in self.policy_chains):
            name += "_" + _digest(policy_identity(policy.policy), 6)
        chain = _Chain(name, f"{policy.policy.tier}/{policy.policy.key}")
        for rule in policy.rules:
            chain.rules += self._rule(rule, policy.direction)
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

    # --- rules ----------------------------------------------------------------------------

    def _rule(self, resolved: ResolvedRule, direction: Direction) -> list[str]:
        """One model rule as nft rules: one per disjoint alternative, all with its action."""
        rule = resolved.rule
        by_name = resolved.ports is not None and _by_name(rule.ports)
        not_by_name = resolved.not_ports is not None and _by_name(rule.not_ports)
        # A rule with named ports stays even when no endpoint declares them yet: its (empty)
        # set then fills as pods come, without rewriting the rule.
        if resolved.never or (resolved.ports is not None and resolved.ports.empty and not by_name):
            return []
        common = _conditions(rule, resolved.label)
        verdict = _action(rule.action, resolved.label)
        if rule.action is not Action.LOG:  # Pass too: Calico lists every hit in order
            verdict = self._logged(
                flow_log_hit(resolved.policy, rule.action, resolved.index), verdict, direction
            )
        specific = resolved.peer is not None or resolved.local is not None or by_name or not_by_name
        families: Sequence[int | None] = (
            ((rule.ip_version,) if rule.ip_version else FAMILIES) if specific else (None,)
        )
        lines: list[str] = []
        ingress = direction is Direction.INGRESS
        label = f"{direction.value}/{policy_identity(resolved.policy)}/{resolved.index}"
        short = f"{_safe(resolved.policy.name)[:24]}_{resolved.index}"
        for family in families:
            factors = [
                self._ends(
                    resolved.peer_for(family),
                    "saddr" if ingress else "daddr",
                    family,
                    _End(rule.peers, False, not ingress, f"{short}_{_digest(label + '/peer', 6)}"),
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
                        f"{short}_{_digest(label + '/local', 6)}",
                    ),
                )
                if family is not None and resolved.local is not None
                else [[]],
                self._ports(resolved, family, f"{short}_{_digest(label + '/ports', 6)}"),
            ]
            not_ports = self._not_ports(resolved, family, f"{short}_{_digest(label + '/not', 6)}")
            for parts in product(*factors):
                terms = [*common, *(t for part in parts for t in part), *not_ports]
                version = family or rule.ip_version
                if version and not any(t.startswith(("ip ", "ip6 ")) for t in terms):
                    terms.insert(0, f"meta nfproto ipv{version}")
                lines.append(" ".join([*terms, verdict]))
        return _join_families(lines)

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
            set_name = self._set(
                "addr", family, ("addr", *use_key), end.label, _addresses(match.known)
            )
            found.append([f"{ip} {field_name} @{set_name}"])
        self.peer_uses[use_key] = PeerUse(family, end.peers, end.local, end.destination, set_name)
        if match.external_everything:
            found.append([f"{ip} {field_name} != @known{family}"])
        elif match.external:
            elements = tuple(_range(r) for r in match.external)
            nets = self._set("nets", family, ("nets", family, elements), None, elements)
            found.append([f"{ip} {field_name} != @known{family}", f"{ip} {field_name} @{nets}"])
        if match.ports:
            elements = _address_ports(match.ports)
            ports = self._set("port", family, ("service", family, elements), None, elements)
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
            set_name = self._set("port", family, key, label, _address_ports(named))
        names = tuple(m for m in matches if m.name is not None)
        self.port_uses[key] = NamedPortUse(family, names, selection.ranges, set_name)
        return set_name

    def _ports(self, resolved: ResolvedRule, family: int | None, label: str) -> list[list[str]]:
        selection = resolved.ports
        if selection is None:
            return [[]]
        found = []
        if selection.ranges:
            found.append([_port_ranges(selection.ranges, "")])
        if selection.protocols:
            found.append([f"meta l4proto {_protocols(selection.protocols)}"])
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
            terms.append(_port_ranges(selection.ranges, "!= ", only))
        if selection.protocols:
            terms.append(f"meta l4proto != {_protocols(selection.protocols)}")
        ports = self._named_set(selection, resolved.rule.not_ports, family, label)
        if ports is not None:
            ip = "ip" if family == 4 else "ip6"
            terms.append(f"{ip} daddr . meta l4proto . th dport != @{ports}")
        return terms

    # --- sets -----------------------------------------------------------------------------

    def _set(
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
            name = f"{kind}{family}_{label or _digest(' '.join(elements), 10)}"
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


def _digest(text: str, size: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def _join_families(lines: list[str]) -> list[str]:
    """`meta nfproto ipv4 X` and `meta nfproto ipv6 X` as one `X`: the inet table sees no
    other family."""
    if len(lines) == 2 and lines[0].startswith("meta nfproto ipv4 "):
        rest = lines[0].removeprefix("meta nfproto ipv4 ")
        if lines[1] == f"meta nfproto ipv6 {rest}":
            return [rest]
    return lines


def _map(name: str, elements: list[tuple[str, str]]) -> list[str]:
    lines = [f"\tmap {name} {{", "\t\ttype ifname : verdict"]
    if elements:
        body = ", ".join(f'"{ifname}" : {verdict}' for ifname, verdict in elements)
        lines.append(f"\t\telements = {{ {body} }}")
    return [*lines, "\t}"]


def _conditions(rule: Rule, label: str) -> list[str]:
    """The rule-wide conditions, as written on the rule."""
    terms = []
    if rule.protocol is not None:
        terms.append(f"meta l4proto {_protocol(rule.protocol)}")
    if rule.not_protocol is not None:
        terms.append(f"meta l4proto != {_protocol(rule.not_protocol)}")
    for match, negated in ((rule.icmp, False), (rule.not_icmp, True)):
        if match is None:
            continue
        if rule.protocol not in (ICMP, ICMPV6):
            raise CompileError(f"{label}: an ICMP match needs the rule's protocol ICMP or ICMPv6")
        kind = "icmp" if rule.protocol == ICMP else "icmpv6"
        if match.code is None:
            terms.append(f"{kind} type {'!= ' if negated else ''}{match.type}")
        elif negated:
            terms.append(f"{kind} type . {kind} code != {{ {match.type} . {match.code} }}")
        else:
            terms.append(f"{kind} type {match.type} {kind} code {match.code}")
    return terms


def _action(action: Action, label: str) -> str:
    comment = f'comment "{_comment(label)}"'
    if action is Action.ALLOW:
        return f"counter accept {comment}"
    if action is Action.DENY:
        return f"counter drop {comment}"
    if action is Action.LOG:
        return f'counter log prefix "{_comment(label)} " group {LOG_GROUP} {comment}'
    return f"counter meta mark set meta mark | {PASS_MARK:#010x} return {comment}"


def _port_ranges(ranges: tuple[ProtocolPorts, ...], negation: str, fixed: bool = False) -> str:
    """Port ranges as one match; `fixed`: the rule already requires their one protocol."""
    protocols = {r.protocol for r in ranges}
    if negation and fixed:
        spans = [str(r.ports) for r in ranges]
        return f"{_protocol(ranges[0].protocol)} dport {negation}{_braced(spans)}"
    if len(protocols) == 1 and not negation:
        spans = [str(r.ports) for r in ranges]
        if spans == ["0-65535"]:
            return f"meta l4proto {_protocol(ranges[0].protocol)}"
        return f"{_protocol(ranges[0].protocol)} dport {_braced(spans)}"
    # The protocol and port together: `tcp dport != 80` would also reject every UDP packet.
    spans = [f"{_protocol(r.protocol)} . {r.ports}" for r in ranges]
    return f"meta l4proto . th dport {negation}{{ {', '.join(spans)} }}"


def _protocols(protocols: Iterable[int]) -> str:
    return _braced([_protocol(p) for p in protocols])


def _braced(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{{ {', '.join(items)} }}"


def _protocol(number: int) -> str:
    return _NAMES.get(number, str(number))


def _addresses(addresses: Iterable[IPAddress]) -> tuple[str, ...]:
    return tuple(str(ip) for ip in sorted(addresses, key=int))


def _range(span: AddressRange) -> str:
    """A range as nft writes it: an address, a prefix when it is one, else `start-end`."""
    if span.start == span.end:
        return str(span.start)
    size = int(span.end) - int(span.start) + 1
    if size & (size - 1) == 0 and int(span.start) % size == 0:
        return str(ip_network(f"{span.start}/{span.start.max_prefixlen - size.bit_length() + 1}"))
    return f"{span.start}-{span.end}"


def _address_ports(entries: Iterable[AddressPort]) -> tuple[str, ...]:
    ordered = sorted(entries, key=lambda e: (int(e.address), e.protocol, e.port))
    return tuple(f"{e.address} . {_protocol(e.protocol)} . {e.port}" for e in ordered)


def _safe(text: str) -> str:
    return _SAFE.sub("_", text).strip("_")[:48] or "x"


def _comment(text: str) -> str:
    cleaned = _text(text)
    return cleaned if len(cleaned) <= _COMMENT_MAX else cleaned[: _COMMENT_MAX - 3] + "..."
