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
- class chain (`<direction>_c<N>`): one jump per tier that selects the class, then `accept`
  (the profile allows a pod no tier decided). Tier chain (`<direction>_t<N>_<tier>`): one jump
  per policy in order, then the tier's default (`drop` for Deny; falling off the end is Pass).
  Policy chain (`<direction>_p<N>_<policy>`): the rules in order. Allow is `accept`, Deny
  `drop`, Log `log prefix "<tier>/<policy>/<rule> " group 1` and on, Pass sets `PASS_MARK` in
  the packet mark and returns; the tier chain returns when it sees the bit, and the class
  chain clears it before the next tier.
- sets, shared by every rule that uses the same addresses: `known4`/`known6` (every inventory
  address), `addr<F>_<N>` hash sets of single addresses, `nets<F>_<N>` interval sets of
  ranges, `port<F>_<N>` (address . protocol . port) sets for named ports and Services. A rule
  matches a peer when the address is in its `addr` set, or is not in `known` and is in its
  `nets` set. Port lists are anonymous sets.

Every rule carries `counter` and `comment "<tier>/<policy>/<rule name or index>"`.

Not compiled yet (raise `CompileError`, never silently dropped): Calico host endpoints (they
govern the node's own traffic); hostNetwork pods are not subjects and need nothing.

Interface names come from the caller: the lab passes its veth names; without a lab,
`calico_interfaces` derives Calico's: `cali` + the first 11 hex digits of sha1("<ns>.<pod>").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_network
from itertools import product

from netwarden.dataplane.apply import apply_ruleset
from netwarden.engine.resolve import (
    FAMILIES,
    AddressMatch,
    AddressPort,
    AddressRange,
    ProtocolPorts,
    ResolvedDirection,
    ResolvedNode,
    ResolvedPolicy,
    ResolvedRule,
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
    Rule,
)

TABLE = "netwarden"
#: The packet-mark bit a Pass sets (outside the bits kube-proxy and Calico use).
PASS_MARK = 0x00100000
#: NFLOG group of Log rules.
LOG_GROUP = 1
CALICO_PREFIX = "cali"
_COMMENT_MAX = 120  # nft refuses comments over 128 bytes
_NAMES = {TCP: "tcp", UDP: "udp", SCTP: "sctp", ICMP: "icmp"}
_SAFE = re.compile(r"[^A-Za-z0-9_]+")

__all__ = [
    "PASS_MARK",
    "TABLE",
    "CompileError",
    "NftablesBackend",
    "Ruleset",
    "calico_interface",
    "calico_interfaces",
    "compile_ruleset",
    "render_ruleset",
]


@dataclass(frozen=True)
class Ruleset:
    """An nft script for one node and what it holds."""

    node: str
    script: str
    chains: int
    rules: int
    sets: int
    elements: int


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
) -> Ruleset:
    """The ruleset for the pods of `interfaces` (pod key -> host-side interface) on `node`.

    >>> from netwarden.dialects import load_paths
    >>> cluster = load_paths(["examples/shop"]).cluster
    >>> ruleset = compile_ruleset(cluster, "node-a", calico_interfaces(cluster, "node-a"))
    >>> ruleset.script.splitlines()[1]
    'add table inet netwarden'
    """
    for name in interfaces.values():
        if not name.startswith(interface_prefix):
            raise CompileError(f"interface {name} does not start with {interface_prefix!r}")
    resolved = resolve_node(cluster, node, sorted(interfaces))
    return render_ruleset(resolved, interfaces, interface_prefix)


def render_ruleset(
    resolved: ResolvedNode, interfaces: Mapping[str, str], interface_prefix: str
) -> Ruleset:
    """The nft script for a resolved node (pure: no I/O)."""
    return _Renderer(resolved, interfaces, interface_prefix).render()


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
    """Builds one script; used once by `render_ruleset`."""

    node: ResolvedNode
    interfaces: Mapping[str, str]
    prefix: str
    sets: dict[tuple[str, int, tuple[str, ...]], str] = field(default_factory=dict)
    set_lines: list[str] = field(default_factory=list)
    chains: list[_Chain] = field(default_factory=list)
    elements: int = 0

    def render(self) -> Ruleset:
        for family in FAMILIES:
            self._set("known", family, _addresses(self.node.known_for(family)), fixed=True)
        dispatch = {
            d: self._direction(self.node.direction(d))
            for d in (Direction.EGRESS, Direction.INGRESS)
        }
        self._base_chains()
        lines = [
            f"# netwarden: nftables ruleset for node {self.node.node}, "
            f"{len(self.node.endpoints)} local pod(s)",
            f"add table inet {TABLE}",
            f"delete table inet {TABLE}",
            f"table inet {TABLE} {{",
            f'\tcomment "netwarden node {_text(self.node.node)}"',
            *self.set_lines,
        ]
        for direction in (Direction.EGRESS, Direction.INGRESS):
            lines += _map(f"{direction.value}_dispatch", dispatch[direction])
        for chain in self.chains:
            lines.append(f"\tchain {chain.name} {{")
            if chain.hook:
                lines.append(f"\t\t{chain.hook}")
            if chain.comment:
                lines.append(f'\t\tcomment "{_text(chain.comment)}"')
            lines += [f"\t\t{rule}" for rule in chain.rules]
            lines.append("\t}")
        lines.append("}")
        return Ruleset(
            self.node.node,
            "\n".join(lines) + "\n",
            len(self.chains),
            sum(len(c.rules) for c in self.chains),
            len(self.sets),
            self.elements,
        )

    # --- chains ---------------------------------------------------------------------------

    def _direction(self, resolved: ResolvedDirection) -> list[tuple[str, str]]:
        """Policy, tier and class chains for one direction; the dispatch map's elements."""
        name = resolved.direction.value
        policy_chains = [
            self._policy(f"{name}_p{i}_{_safe(p.policy.key)}", p)
            for i, p in enumerate(resolved.policies)
        ]
        tier_chains: dict[tuple[str, tuple[int, ...]], str] = {}
        elements: list[tuple[str, str]] = []
        for number, endpoint_class in enumerate(resolved.classes):
            chain = _Chain(f"{name}_c{number}", f"{name} class {number}")
            chain.rules.append(f"meta mark set meta mark & {~PASS_MARK & 0xFFFFFFFF:#010x}")
            for run in endpoint_class.tiers:
                key = (run.tier.name, run.policies)
                if key not in tier_chains:
                    tier_chains[key] = self._tier(
                        f"{name}_t{len(tier_chains)}_{_safe(run.tier.name)}",
                        run.tier.name,
                        run.tier.default_action,
                        [(policy_chains[i], resolved.policies[i]) for i in run.policies],
                    )
                chain.rules.append(f"jump {tier_chains[key]}")
                if any(resolved.policies[i].passes for i in run.policies):
                    chain.rules.append(f"meta mark set meta mark & {~PASS_MARK & 0xFFFFFFFF:#010x}")
            chain.rules.append('counter accept comment "profile: no tier decided"')
            self.chains.append(chain)
            elements += [(key, f"jump {chain.name}") for key in endpoint_class.endpoints]
        elements += [(key, "accept") for key in resolved.unselected]
        return sorted((self.interfaces[key], verdict) for key, verdict in elements)

    def _tier(
        self, name: str, tier: str, default: Action, policies: list[tuple[str, ResolvedPolicy]]
    ) -> str:
        chain = _Chain(name, f"tier {tier}")
        for chain_name, policy in policies:
            chain.rules.append(f"jump {chain_name}")
            if policy.passes:
                chain.rules.append(f"meta mark & {PASS_MARK:#010x} == {PASS_MARK:#010x} return")
        if default is Action.DENY:
            chain.rules.append(f'counter drop comment "{_comment(f"{tier}/(end of tier)")}"')
        elif default is Action.ALLOW:
            chain.rules.append(f'counter accept comment "{_comment(f"{tier}/(end of tier)")}"')
        self.chains.append(chain)
        return name

    def _policy(self, name: str, policy: ResolvedPolicy) -> str:
        chain = _Chain(name[:200], f"{policy.policy.tier}/{policy.policy.key}")
        for rule in policy.rules:
            chain.rules += self._rule(rule, policy.direction)
        self.chains.append(chain)
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
            self.chains.append(chain)

    # --- rules ----------------------------------------------------------------------------

    def _rule(self, resolved: ResolvedRule, direction: Direction) -> list[str]:
        """One model rule as nft rules: one per disjoint alternative, all with its action."""
        rule = resolved.rule
        if resolved.never or (resolved.ports is not None and resolved.ports.empty):
            return []
        common = _conditions(rule, resolved.label)
        verdict = _action(rule.action, resolved.label)
        specific = (
            resolved.peer is not None
            or resolved.local is not None
            or (resolved.ports is not None and any(resolved.ports.named))
            or (resolved.not_ports is not None and any(resolved.not_ports.named))
        )
        families: Sequence[int | None] = (
            ((rule.ip_version,) if rule.ip_version else FAMILIES) if specific else (None,)
        )
        lines: list[str] = []
        for family in families:
            ingress = direction is Direction.INGRESS
            factors = [
                self._ends(resolved.peer_for(family), "saddr" if ingress else "daddr", family)
                if family is not None and resolved.peer is not None
                else [[]],
                self._local(resolved.local_for(family), "daddr" if ingress else "saddr", family)
                if family is not None and resolved.local is not None
                else [[]],
                self._ports(resolved, family),
            ]
            not_ports = self._not_ports(resolved, family)
            for parts in product(*factors):
                terms = [*common, *(t for part in parts for t in part), *not_ports]
                version = family or rule.ip_version
                if version and not any(t.startswith(("ip ", "ip6 ")) for t in terms):
                    terms.insert(0, f"meta nfproto ipv{version}")
                lines.append(" ".join([*terms, verdict]))
        return _join_families(lines)

    def _ends(self, match: AddressMatch | None, field_name: str, family: int) -> list[list[str]]:
        """Disjoint alternatives for one end's address; none when nothing can match."""
        assert match is not None
        ip = "ip" if family == 4 else "ip6"
        known = self.node.known_for(family)
        if match.known == known and match.external_everything:
            return [[]]
        found = []
        if match.known:
            found.append(
                [f"{ip} {field_name} @{self._set('addr', family, _addresses(match.known))}"]
            )
        if match.external_everything:
            found.append([f"{ip} {field_name} != @known{family}"])
        elif match.external:
            nets = self._set("nets", family, tuple(_range(r) for r in match.external))
            found.append([f"{ip} {field_name} != @known{family}", f"{ip} {field_name} @{nets}"])
        if match.ports:
            ports = self._set("port", family, _address_ports(match.ports))
            found.append([f"{ip} {field_name} . meta l4proto . th dport @{ports}"])
        return found

    def _local(self, match: AddressMatch | None, field_name: str, family: int) -> list[list[str]]:
        """Alternatives for the subject's own address: unconditional when every local pod of
        the family matches (the subject is always one of them)."""
        assert match is not None
        local = {ip for e in self.node.endpoints for ip in e.ips if ip.version == family}
        if local <= match.known:
            return [[]]
        return self._ends(match, field_name, family)

    def _ports(self, resolved: ResolvedRule, family: int | None) -> list[list[str]]:
        selection = resolved.ports
        if selection is None:
            return [[]]
        found = []
        if selection.ranges:
            found.append([_port_ranges(selection.ranges, "")])
        if selection.protocols:
            found.append([f"meta l4proto {_protocols(selection.protocols)}"])
        named = selection.named_for(family) if family is not None else frozenset()
        if named:
            ip = "ip" if family == 4 else "ip6"
            ports = self._set("port", family or 4, _address_ports(named))
            found.append([f"{ip} daddr . meta l4proto . th dport @{ports}"])
        return found

    def _not_ports(self, resolved: ResolvedRule, family: int | None) -> list[str]:
        selection = resolved.not_ports
        if selection is None:
            return []
        terms = []
        if selection.ranges:
            only = {r.protocol for r in selection.ranges} == {resolved.rule.protocol}
            terms.append(_port_ranges(selection.ranges, "!= ", only))
        if selection.protocols:
            terms.append(f"meta l4proto != {_protocols(selection.protocols)}")
        named = selection.named_for(family) if family is not None else frozenset()
        if named:
            ip = "ip" if family == 4 else "ip6"
            ports = self._set("port", family or 4, _address_ports(named))
            terms.append(f"{ip} daddr . meta l4proto . th dport != @{ports}")
        return terms

    # --- sets -----------------------------------------------------------------------------

    def _set(self, kind: str, family: int, elements: tuple[str, ...], fixed: bool = False) -> str:
        """The name of the set holding `elements`, defining it on first use."""
        key = (kind, family, elements)
        if key in self.sets:
            return self.sets[key]
        number = sum(1 for k, f, _ in self.sets if (k, f) == (kind, family))
        name = f"{kind}{family}" if fixed else f"{kind}{family}_{number}"
        address = "ipv4_addr" if family == 4 else "ipv6_addr"
        kinds = {
            "known": f"type {address}",
            "addr": f"type {address}",
            "nets": f"type {address}; flags interval",
            "port": f"type {address} . inet_proto . inet_service",
        }
        self.set_lines.append(f"\tset {name} {{")
        self.set_lines.append(f"\t\t{kinds[kind]}")
        if elements:
            self.set_lines.append(f"\t\telements = {{ {', '.join(elements)} }}")
        self.set_lines.append("\t}")
        self.sets[key] = name
        self.elements += len(elements)
        return name


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


def _text(text: str) -> str:
    """Printable ASCII without quotes or backslashes: safe inside an nft string."""
    return "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in text)


def _comment(text: str) -> str:
    cleaned = _text(text)
    return cleaned if len(cleaned) <= _COMMENT_MAX else cleaned[: _COMMENT_MAX - 3] + "..."
