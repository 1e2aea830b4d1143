"""Pod churn without compiling again: a node's ruleset kept up to date in place.

`NodeCompiler` compiles a node once and remembers what each set was decided from (the
renderer's `RenderIndex`). When pods come, go or change labels it only decides the changed
pods: with the engine's own `peer_matches` / `entity_matches` / `PolicyEngine.selecting`, each
pod's addresses join or leave the address sets of the rule ends it matches, its named ports
the named-port sets, and its interface points at its endpoint class chain. That costs
O(rule ends) per pod instead of O(rule ends x inventory), so one pod's churn takes
milliseconds whatever the cluster size. The skeleton stays as it is (an endpoint class chain
whose last pod left stays, unused), so the result is always a pure element change.

When a change would need a new rule or chain, it compiles the node again (`full_compiles`
counts them, `last_reason` says why): a pod of a class no chain serves yet, a pod matching a
rule end that has no address set or losing one rendered without a condition, an address
another endpoint holds or that a policy names on its own (a /32, a node, a Service), a pod in
a namespace the inventory did not know. The result equals a full compile of the new inventory
up to those unused leftovers (`tests/dataplane/test_nft_delta.py` checks it).
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import replace

from netwarden.dataplane.nft_render import class_chain_name, render_node
from netwarden.dataplane.nft_ruleset import NamedPortUse, PeerUse, Ruleset
from netwarden.dataplane.nft_update import ElementChange, next_generation
from netwarden.dataplane.nftables import CALICO_PREFIX, check_interfaces
from netwarden.engine.entity import entity_matches
from netwarden.engine.matching import peer_matches
from netwarden.engine.resolve import Resolver
from netwarden.model import (
    ClusterState,
    Direction,
    Endpoint,
    EndpointKind,
    EntityMatch,
    IPAddress,
    Peer,
)

__all__ = ["NodeCompiler"]

_NAMES = {6: "tcp", 17: "udp", 132: "sctp"}


class _NeedsCompile(Exception):
    """The change needs new rules or chains: compile the node again."""


class NodeCompiler:
    """One node's ruleset, kept up to date as pods come, go and change labels.

    >>> compiler = NodeCompiler(cluster, "node-a", interfaces)  # doctest: +SKIP
    >>> ruleset, changes = compiler.update(new_cluster, removed=[], added=[pod], interfaces=...)
    """

    def __init__(
        self,
        cluster: ClusterState,
        node: str,
        interfaces: Mapping[str, str],
        interface_prefix: str = CALICO_PREFIX,
    ) -> None:
        self.node = node
        self.prefix = interface_prefix
        self.full_compiles = 0
        self.last_reason = ""
        self._compile(cluster, interfaces)

    def _compile(self, cluster: ClusterState, interfaces: Mapping[str, str]) -> None:
        check_interfaces(interfaces, self.prefix)
        self.cluster = cluster
        self.resolver = Resolver(cluster)
        resolved = self.resolver.node(self.node, sorted(interfaces))
        self.ruleset, self.index = render_node(resolved, interfaces, self.prefix)
        self.interfaces = dict(interfaces)
        self._elements = {c.name: dict.fromkeys(c.elements) for c in self.ruleset.contents}
        self._pinned = {
            family: sorted(int(a.start) for a in atoms if a.start == a.end)
            for family, atoms in self.resolver.atoms.items()
        }
        self.full_compiles += 1

    def update(
        self,
        cluster: ClusterState,
        removed: Sequence[Endpoint],
        added: Sequence[Endpoint],
        interfaces: Mapping[str, str],
    ) -> tuple[Ruleset, tuple[ElementChange, ...] | None]:
        """The ruleset for `cluster`, which differs from the last one by the pods `removed`
        and `added` (a relabelled pod is both, old and new); `interfaces` are the local pods'
        now. Returns the ruleset and its element changes, or None for the changes when the
        node had to be compiled again (then `last_reason` says why)."""
        try:
            changes = self._delta(removed, added, interfaces)
        except _NeedsCompile as why:
            self.last_reason = str(why)
            self._compile(cluster, interfaces)
            return self.ruleset, None
        # Matching keeps using the cluster of the last compile: pod churn changes no namespace
        # (`_check` refuses a new one), and a new cluster object would rebuild its indexes.
        self.interfaces = dict(interfaces)
        self.ruleset = self._with(changes)
        return self.ruleset, changes

    # --- the delta ----------------------------------------------------------------------

    def _delta(
        self,
        removed: Sequence[Endpoint],
        added: Sequence[Endpoint],
        interfaces: Mapping[str, str],
    ) -> tuple[ElementChange, ...]:
        """Element changes, decided before anything is changed (so a refusal changes
        nothing)."""
        gone: dict[str, list[str]] = {}
        new: dict[str, list[str]] = {}
        leaving = {ip for e in removed for ip in e.ips}
        for endpoint in removed:
            for name, element in self._held(endpoint):
                gone.setdefault(name, []).append(element)
        for endpoint in added:
            self._check(endpoint, leaving)
            for name, element in self._placed(endpoint, interfaces):
                new.setdefault(name, []).append(element)
        changes = []
        for name in dict.fromkeys([*gone, *new]):
            held = self._elements[name]
            minus = [e for e in dict.fromkeys(gone.get(name, ())) if e in held]
            plus_set = set(new.get(name, ()))
            plus = [e for e in dict.fromkeys(new.get(name, ())) if e not in held or e in minus]
            # An element both removed and added (a relabel that keeps it) is no change.
            both = set(minus) & plus_set
            minus = [e for e in minus if e not in both]
            plus = [e for e in plus if e not in both]
            if minus or plus:
                verdict_map = name.endswith("_dispatch")
                changes.append(ElementChange(name, tuple(minus), tuple(plus), verdict_map))
        return tuple(changes)

    def _check(self, endpoint: Endpoint, leaving: set[IPAddress]) -> None:
        if endpoint.kind is not EndpointKind.POD:
            raise _NeedsCompile(f"{endpoint.key} is not a pod")
        if endpoint.namespace not in self.cluster.namespace_labels:
            raise _NeedsCompile(f"{endpoint.key}: namespace {endpoint.namespace} is new")
        known = {4: self._elements["known4"], 6: self._elements["known6"]}
        for ip in endpoint.ips:
            if str(ip) in known[ip.version] and ip not in leaving:
                raise _NeedsCompile(f"{endpoint.key}: address {ip} is held by another endpoint")
            pinned = self._pinned[ip.version]
            at = bisect.bisect_left(pinned, int(ip))
            if at < len(pinned) and pinned[at] == int(ip):
                raise _NeedsCompile(f"{endpoint.key}: address {ip} is named by a policy or node")

    def _held(self, endpoint: Endpoint) -> list[tuple[str, str]]:
        """(set or map, element) for everything of `endpoint` the ruleset holds now: found by
        its addresses, named ports and interface, not by deciding its old labels again."""
        addresses = {str(ip) for ip in endpoint.ips}
        found = [
            (name, element)
            for name, held in self._elements.items()
            if name.startswith(("known", "addr"))  # the single-address hash sets
            for element in addresses
            if element in held  # a lookup per address: never a pass over a large set
        ]
        for use in self.index.port_uses:
            if use.set_name is not None:
                held = self._elements[use.set_name]
                found += [(use.set_name, e) for e in _named_entries(use, endpoint) if e in held]
        ifname = self.interfaces.get(endpoint.key)
        if ifname is not None:
            for direction in (Direction.EGRESS, Direction.INGRESS):
                name = f"{direction.value}_dispatch"
                found += [(name, e) for e in self._elements[name] if e.startswith(f'"{ifname}" ')]
        return found

    def _placed(self, endpoint: Endpoint, interfaces: Mapping[str, str]) -> list[tuple[str, str]]:
        """(set or map, element) for everything `endpoint` puts in the ruleset; raises
        `_NeedsCompile` when it needs a rule or chain the ruleset does not have."""
        found: list[tuple[str, str]] = []
        local = endpoint.key in interfaces
        for ip in endpoint.ips:
            found.append((f"known{ip.version}", str(ip)))
        for use in self.index.peer_uses:
            if use.local and not local:
                continue
            for ip in endpoint.ips:
                if ip.version != use.family:
                    continue
                matched = self._matches(use, endpoint, ip)
                if use.universal:
                    if not matched:
                        raise _NeedsCompile(f"{endpoint.key} breaks a rule end matching every pod")
                elif use.set_name is None:
                    if matched:
                        raise _NeedsCompile(f"{endpoint.key} matches a rule end with no set")
                elif matched:
                    found.append((use.set_name, str(ip)))
        for port_use in self.index.port_uses:
            entries = _named_entries(port_use, endpoint)
            if port_use.set_name is not None:
                found += [(port_use.set_name, entry) for entry in entries]
            elif entries:
                raise _NeedsCompile(f"{endpoint.key} declares a named port with no set")
        if local:
            ifname = interfaces[endpoint.key]
            for direction in (Direction.EGRESS, Direction.INGRESS):
                verdict = self._verdict(endpoint, direction)
                found.append((f"{direction.value}_dispatch", f'"{ifname}" : {verdict}'))
        return found

    def _matches(self, use: PeerUse, endpoint: Endpoint, ip: IPAddress) -> bool:
        if use.local:
            (match,) = use.peers
            assert isinstance(match, EntityMatch)
            if use.destination and self._service_ports(match):
                raise _NeedsCompile("a local Service match with ports")
            return entity_matches(match, endpoint, ip, self.cluster)[0]
        free: list[Peer] = [
            p for p in use.peers if not (use.destination and self._service_ports(p))
        ]
        return any(peer_matches(p, endpoint, ip, self.cluster) for p in free)

    def _service_ports(self, peer: Peer) -> bool:
        if not isinstance(peer, EntityMatch) or peer.service is None:
            return False
        service = self.cluster.services_by_key.get(peer.service)
        return service is not None and bool(service.ports)

    def _verdict(self, endpoint: Endpoint, direction: Direction) -> str:
        runs = [
            (tier.name, policies)
            for tier, policies in self.resolver.engine.selecting(endpoint, direction)
            if policies
        ]
        if not runs:
            return "accept"
        name = class_chain_name(direction, runs)
        if name not in self.index.chain_names:
            raise _NeedsCompile(f"{endpoint.key}: no chain serves its {direction.value} class")
        return f"jump {name}"

    def _with(self, changes: Sequence[ElementChange]) -> Ruleset:
        """The ruleset with `changes` made (removals match by key in a map)."""
        touched: dict[str, ElementChange] = {}
        for change in changes:
            held = self._elements[change.name]
            if change.verdict_map:
                keys = {e.partition(" : ")[0] for e in change.removed}
                for element in [e for e in held if e.partition(" : ")[0] in keys]:
                    del held[element]
            else:
                for element in change.removed:
                    held.pop(element, None)
            held.update(dict.fromkeys(change.added))
            touched[change.name] = change
        contents = tuple(
            c
            if c.name not in touched
            else replace(c, elements=tuple(self._elements[c.name]))
            if touched[c.name].verdict_map
            else replace(c, elements=_edited(c.elements, touched[c.name]))
            for c in self.ruleset.contents
        )
        local = sum(1 for _ in self.interfaces)
        return replace(
            self.ruleset,
            contents=contents,
            generation=next_generation(self.ruleset.generation, changes),
            local_pods=local,
        )


def _edited(elements: tuple[str, ...], change: ElementChange) -> tuple[str, ...]:
    """`elements` with a set's change made, in the order the compiler keeps. A pod's churn
    removes an element or two from sets that may hold every address of the cluster: cutting
    them out by position is a C-level search and copy, not a Python pass over the set."""
    kept = elements
    if len(change.removed) <= 8:
        for element in change.removed:
            with contextlib.suppress(ValueError):
                at = kept.index(element)
                kept = kept[:at] + kept[at + 1 :]
    else:
        gone = set(change.removed)
        kept = tuple(e for e in kept if e not in gone)
    return kept + change.added


def _named_entries(use: NamedPortUse, endpoint: Endpoint) -> list[str]:
    """The endpoint's (address . protocol . port) for the use's names, as `_named` in the
    resolver picks them, minus what the rule's port ranges already cover."""
    found = []
    declared = sorted({p.protocol for p in endpoint.ports})
    for match in use.names:
        assert match.name is not None
        for protocol in declared:
            if match.protocol is not None and match.protocol != protocol:
                continue
            port = endpoint.named_port(match.name, protocol)
            if port is None:
                continue
            if any(r.protocol == protocol and port in r.ports for r in use.ranges):
                continue
            for ip in endpoint.ips:
                if ip.version == use.family:
                    found.append(f"{ip} . {_NAMES.get(protocol, str(protocol))} . {port}")
    return found
