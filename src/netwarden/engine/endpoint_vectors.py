"""Selectors, peers, addresses and named ports as vectors over a batch's endpoints.

The vectorized engine asks "which endpoints does this selector (peer) match?" once per selector
and gathers the answer per probe. Selectors are evaluated once per distinct label set (pods),
namespace or service account, never per pod, by `selector_index.LabelTable`. The semantics are
`matching.py`'s; the property tests in `tests/engine/` hold the two together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from ipaddress import collapse_addresses
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from netwarden.engine.labels import endpoint_labels, resolve_global, resolve_rule_scope
from netwarden.engine.selector_index import LabelTable
from netwarden.model import (
    All,
    ClusterState,
    Endpoint,
    EndpointKind,
    EndpointSelector,
    IPAddress,
    IPNetwork,
    NetworkPeer,
    NodePeer,
    PortMatch,
    Selector,
)

Mask = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]

_LOW64 = (1 << 64) - 1
#: A named-port table entry for "not declared": no probe port (an int32) can equal it.
NO_PORT = -(1 << 40)
#: Above this many networks, `inside_any` binary-searches merged ranges instead of testing each.
_SEARCH_ABOVE = 8


class NamedPortTable(NamedTuple):
    """Per endpoint, the number it declares a port name at for one protocol (`NO_PORT`: none)."""

    protocol: int
    ports: Ints


def _split(value: int) -> tuple[int, int]:
    """A 128-bit integer as (high, low) 64-bit halves: IPv6 does not fit one numpy integer."""
    return value >> 64, value & _LOW64


def _keys(values: Iterable[int]) -> npt.NDArray[np.bytes_]:
    """128-bit integers as big-endian 16-byte strings, which numpy orders as the integers."""
    return np.array([value.to_bytes(16, "big") for value in values], dtype="S16")


class EndpointVectors:
    """Per-endpoint answers for one tuple of endpoints (a batch's), each computed once."""

    def __init__(self, cluster: ClusterState, endpoints: Sequence[Endpoint]) -> None:
        self.cluster = cluster
        self.endpoints = endpoints
        self.size = len(endpoints)
        self.kinds = [e.kind for e in endpoints]
        self.is_pod = self.of_kind({EndpointKind.POD})
        self.is_host_endpoint = self.of_kind({EndpointKind.HOST_ENDPOINT})
        # What policies can apply to, and what an entity rule's selectors see as labelled.
        self.is_subject = self.is_pod | self.is_host_endpoint
        self._index_labels(endpoints)
        self._index_accounts(endpoints)
        self._index_addresses(endpoints)
        self._index_named_ports(endpoints)
        self._selects: dict[EndpointSelector, Mask] = {}
        self._peers: dict[NetworkPeer | NodePeer, Mask] = {}
        self._named_tables: dict[tuple[str | None, int | None], tuple[NamedPortTable, ...]] = {}
        self._inside_any: dict[tuple[IPNetwork, ...], Mask] = {}
        self._scopes: dict[tuple[str | None, Selector | None], Mask] = {}
        self._address_keys: npt.NDArray[np.bytes_] | None = None
        self._host_on_node: dict[str, list[int]] = {}
        self._by_address: dict[IPAddress, list[int]] = {}
        for i, endpoint in enumerate(endpoints):
            if endpoint.kind is EndpointKind.HOST and endpoint.node is not None:
                self._host_on_node.setdefault(endpoint.node, []).append(i)
            if endpoint.ips:
                self._by_address.setdefault(endpoint.ips[0], []).append(i)

    def of_kind(self, kinds: Set[EndpointKind]) -> Mask:
        return np.fromiter((kind in kinds for kind in self.kinds), np.bool_, self.size)

    def _index_labels(self, endpoints: Sequence[Endpoint]) -> None:
        """Label sets of endpoints, and of their namespaces; the last namespace row is "none"."""
        namespace_ids: dict[str, int] = {}
        namespace_of = np.empty(self.size, dtype=np.intp)
        for i, endpoint in enumerate(endpoints):
            ns = endpoint.namespace
            namespace_of[i] = -1 if ns is None else namespace_ids.setdefault(ns, len(namespace_ids))
        namespace_of[namespace_of < 0] = len(namespace_ids)
        self.namespace_id = namespace_of
        self.namespace_ids = namespace_ids
        known = self.cluster.namespace_labels
        namespace_labels: list[Mapping[str, str]] = [known.get(ns, {}) for ns in namespace_ids]
        # The labels selectors see: a pod's own plus the ones Calico adds (its namespace, ...),
        # a host endpoint's own plus its profiles'.
        self.pods = LabelTable([endpoint_labels(e, self.cluster) for e in endpoints])
        self.namespaces = LabelTable([*namespace_labels, {}])
        # Pod and namespace selectors pick pods that live in a namespace, nothing else.
        self.selectable = self.is_pod & (self.namespace_id < len(namespace_ids))

    def _index_accounts(self, endpoints: Sequence[Endpoint]) -> None:
        """The service account each selectable pod runs as (`default` when none is given), as
        a row of `accounts` (labels) and `account_names`; the last row is "none"."""
        rows: dict[tuple[str, str], int] = {}
        account_of = np.empty(self.size, dtype=np.intp)
        for i, endpoint in enumerate(endpoints):
            if self.selectable[i] and endpoint.namespace is not None:
                account = (endpoint.namespace, endpoint.service_account or "default")
                account_of[i] = rows.setdefault(account, len(rows))
            else:
                account_of[i] = -1
        account_of[account_of < 0] = len(rows)
        self.account_of = account_of
        self.account_names = [name for _, name in rows]
        labels = self.cluster.service_account_labels
        self.accounts = LabelTable([*(labels.get(account, {}) for account in rows), {}])

    def _index_addresses(self, endpoints: Sequence[Endpoint]) -> None:
        """Each endpoint's address in a flow: its first IP (version 0 when it has none)."""
        self.version = np.zeros(self.size, dtype=np.int8)
        self.high = np.zeros(self.size, dtype=np.uint64)
        self.low = np.zeros(self.size, dtype=np.uint64)
        for i, endpoint in enumerate(endpoints):
            if endpoint.ips:
                ip = endpoint.ips[0]
                self.version[i] = ip.version
                self.high[i], self.low[i] = _split(int(ip))

    def _index_named_ports(self, endpoints: Sequence[Endpoint]) -> None:
        """(name, protocol) -> per-endpoint port number; the first declaration wins, as in
        `Endpoint.named_port`."""
        found: dict[tuple[str, int], dict[int, int]] = {}
        for i, endpoint in enumerate(endpoints):
            for declared in endpoint.ports:
                key = (declared.name, declared.protocol)
                found.setdefault(key, {}).setdefault(i, declared.port)
        self.named_ports: dict[tuple[str, int], Ints] = {}
        self.named_protocols: dict[str, list[int]] = {}
        for (name, protocol), ports in found.items():
            table = np.full(self.size, NO_PORT, dtype=np.int64)
            table[list(ports)] = list(ports.values())
            self.named_ports[(name, protocol)] = table
            self.named_protocols.setdefault(name, []).append(protocol)

    def named_tables(self, match: PortMatch) -> tuple[NamedPortTable, ...]:
        """The tables a named `match` reads: one per protocol some endpoint declares its name
        for, only its own protocol when it names one (`matching.port_matches`)."""
        key = (match.name, match.protocol)  # all the answer depends on; cheap to hash
        found = self._named_tables.get(key)
        if found is None:  # asked per rule and subject class: thousands of times
            assert match.name is not None
            found = tuple(
                NamedPortTable(protocol, self.named_ports[(match.name, protocol)])
                for protocol in self.named_protocols.get(match.name, ())
                if match.protocol is None or match.protocol == protocol
            )
            self._named_tables[key] = found
        return found

    def selects(self, selector: EndpointSelector) -> Mask:
        """Which endpoints `selector` picks (`matching.selects`): pods by labels, namespace
        and service account; host endpoints for a selector that allows them."""
        found = self._selects.get(selector)
        if found is None:
            found = self.selectable.copy()
            if selector.namespace is not None:
                wanted = self.namespace_ids.get(selector.namespace, -1)
                found &= self.namespace_id == wanted
            found &= self.pods.matches(selector.pods)
            if not isinstance(selector.namespaces, All):
                namespaces = resolve_global(selector.namespaces, False)  # pods are namespaced
                found &= self.namespaces.matches(namespaces)[self.namespace_id]
            if selector.service_accounts is not None:
                found &= self.accounts.matches(selector.service_accounts)[self.account_of]
            if (
                selector.host_endpoints
                and selector.namespace is None
                and selector.service_accounts is None
                and resolve_global(selector.namespaces, True).matches({})
            ):
                found |= self.is_host_endpoint & self.pods.matches(selector.pods)
            self._selects[selector] = found
        return found

    def peer(self, peer: EndpointSelector | NetworkPeer | NodePeer) -> Mask:
        """Which endpoints, at their address, are `peer` (`matching.peer_matches`); entity
        matches are `vector_entity`'s."""
        if isinstance(peer, EndpointSelector):
            return self.selects(peer)
        found = self._peers.get(peer)
        if found is None:
            found = self._network(peer) if isinstance(peer, NetworkPeer) else self._node(peer)
            self._peers[peer] = found
        return found

    def namespace_scope(self, namespace: str | None, scope: Selector | None) -> Mask:
        """Endpoints within a rule's namespace scope (`labels.in_namespace_scope`), by the
        namespace each lives in (none: a non-namespaced thing)."""
        key = (namespace, scope)
        found = self._scopes.get(key)
        if found is None:
            rows = np.zeros(len(self.namespace_ids) + 1, dtype=np.bool_)
            if namespace is not None:
                wanted = self.namespace_ids.get(namespace)
                if wanted is not None:
                    rows[wanted] = True
            elif scope is None:
                rows[:] = True
            else:
                rows[:-1] = self.namespaces.matches(resolve_rule_scope(scope, False))[:-1]
                rows[-1] = resolve_rule_scope(scope, True).matches({})
            found = rows[self.namespace_id]
            self._scopes[key] = found
        return found

    def at_addresses(self, ips: Iterable[IPAddress]) -> Mask:
        """Endpoints whose address is one of `ips`."""
        found = np.zeros(self.size, dtype=np.bool_)
        for ip in ips:
            found[self._by_address.get(ip, [])] = True
        return found

    def inside_any(self, networks: tuple[IPNetwork, ...]) -> Mask:
        """Endpoints whose address is in one of `networks` (`entity.in_any`)."""
        found = self._inside_any.get(networks)
        if found is None:
            found = np.zeros(self.size, dtype=np.bool_)
            if len(networks) <= _SEARCH_ABOVE:
                for network in networks:
                    found |= self._inside(network)
            else:
                for version in (4, 6):
                    found |= self._inside_ranges([n for n in networks if n.version == version])
            found.flags.writeable = False  # shared: callers combine it into new arrays
            self._inside_any[networks] = found
        return found

    def _inside_ranges(self, networks: list[IPNetwork]) -> Mask:
        """Endpoints inside one of `networks` (all of one family): the networks merged into
        sorted disjoint ranges, each address binary-searched among their starts."""
        found = np.zeros(self.size, dtype=np.bool_)
        if not networks:
            return found
        merged = sorted(collapse_addresses(networks))  # type: ignore[type-var]
        starts = _keys(int(n.network_address) for n in merged)
        ends = _keys(int(n.broadcast_address) for n in merged)
        if self._address_keys is None:
            self._address_keys = _keys(int(e.ips[0]) if e.ips else 0 for e in self.endpoints)
        family = np.flatnonzero(self.version == networks[0].version)
        keys = self._address_keys[family]
        at = np.searchsorted(starts, keys, side="right") - 1
        inside = at >= 0
        inside[inside] = keys[inside] <= ends[at[inside]]
        found[family[inside]] = True
        return found

    def _inside(self, network: IPNetwork) -> Mask:
        """Endpoints whose address is in `network` (same family only)."""
        start_high, start_low = _split(int(network.network_address))
        end_high, end_low = _split(int(network.broadcast_address))
        high, low = self.high, self.low
        above = (high > np.uint64(start_high)) | (
            (high == np.uint64(start_high)) & (low >= np.uint64(start_low))
        )
        below = (high < np.uint64(end_high)) | (
            (high == np.uint64(end_high)) & (low <= np.uint64(end_low))
        )
        inside: Mask = (self.version == network.version) & above & below
        return inside

    def _network(self, peer: NetworkPeer) -> Mask:
        found = self._inside(peer.cidr)
        for block in peer.excepted:
            found &= ~self._inside(block)  # a block of the other family excepts nothing
        return found

    def _node(self, peer: NodePeer) -> Mask:
        """Addresses of the selected nodes, and host endpoints on a selected node that has no
        address given."""
        found = np.zeros(self.size, dtype=np.bool_)
        for node in self.cluster.nodes:
            if not peer.nodes.matches(node.labels):
                continue
            for ip in node.ips:
                found |= self._at(ip)
            if not node.ips:
                found[self._host_on_node.get(node.name, [])] = True
        return found

    def _at(self, ip: IPAddress) -> Mask:
        high, low = _split(int(ip))
        same: Mask = (self.version == ip.version) & (self.high == np.uint64(high))
        same &= self.low == np.uint64(low)
        return same
