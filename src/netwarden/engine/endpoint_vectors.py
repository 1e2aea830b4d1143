"""Selectors, peers and named ports as boolean / integer vectors over a batch's endpoints.

The vectorized engine asks "which endpoints does this selector (peer) match?" once per selector
and gathers the answer per probe. Selectors are evaluated once per distinct label set (pods) or
namespace, never per pod, by `selector_index.LabelTable`. The semantics are `matching.py`'s; the
property test in `tests/engine/test_vectorized.py` holds the two together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set

import numpy as np
import numpy.typing as npt

from netwarden.engine.labels import endpoint_labels, resolve_global
from netwarden.engine.selector_index import LabelTable
from netwarden.model import (
    ClusterState,
    Endpoint,
    EndpointKind,
    EndpointSelector,
    IPAddress,
    IPNetwork,
    NetworkPeer,
    NodePeer,
    Peer,
)

Mask = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]

_LOW64 = (1 << 64) - 1
#: A named-port table entry for "not declared": no probe port (an int32) can equal it.
NO_PORT = -(1 << 40)


def _split(value: int) -> tuple[int, int]:
    """A 128-bit integer as (high, low) 64-bit halves: IPv6 does not fit one numpy integer."""
    return value >> 64, value & _LOW64


class EndpointVectors:
    """Per-endpoint answers for one tuple of endpoints (a batch's), each computed once."""

    def __init__(self, cluster: ClusterState, endpoints: Sequence[Endpoint]) -> None:
        self.cluster = cluster
        self.size = len(endpoints)
        self.kinds = [e.kind for e in endpoints]
        self.is_pod = self.of_kind({EndpointKind.POD})
        self._index_labels(endpoints)
        self._index_addresses(endpoints)
        self._index_named_ports(endpoints)
        self._selects: dict[EndpointSelector, Mask] = {}
        self._peers: dict[Peer, Mask] = {}
        self._host_on_node: dict[str, list[int]] = {}
        for i, endpoint in enumerate(endpoints):
            if endpoint.kind is EndpointKind.HOST and endpoint.node is not None:
                self._host_on_node.setdefault(endpoint.node, []).append(i)

    def of_kind(self, kinds: Set[EndpointKind]) -> Mask:
        return np.fromiter((kind in kinds for kind in self.kinds), np.bool_, self.size)

    def _index_labels(self, endpoints: Sequence[Endpoint]) -> None:
        """Label sets of pods, and of their namespaces; the last namespace row is "none"."""
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
        # The labels selectors see: a pod's own plus the ones Calico adds (its namespace, ...).
        self.pods = LabelTable([endpoint_labels(e, self.cluster) for e in endpoints])
        self.namespaces = LabelTable([*namespace_labels, {}])
        # Pod and namespace selectors pick pods that live in a namespace, nothing else.
        self.selectable = self.is_pod & (self.namespace_id < len(namespace_ids))

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

    def selects(self, selector: EndpointSelector) -> Mask:
        """Which endpoints `selector` picks (`matching.selects`) among pods; selectors with
        more than pods, namespaces and namespace are `vector_support`'s to refuse."""
        found = self._selects.get(selector)
        if found is None:
            found = self.selectable.copy()
            if selector.namespace is not None:
                wanted = self.namespace_ids.get(selector.namespace, -1)
                found &= self.namespace_id == wanted
            found &= self.pods.matches(selector.pods)
            namespaces = resolve_global(selector.namespaces, False)  # pods are namespaced
            found &= self.namespaces.matches(namespaces)[self.namespace_id]
            self._selects[selector] = found
        return found

    def peer(self, peer: Peer) -> Mask:
        """Which endpoints, at their address, are `peer` (`matching.peer_matches`)."""
        found = self._peers.get(peer)
        if found is None:
            if isinstance(peer, EndpointSelector):
                found = self.selects(peer)
            elif isinstance(peer, NetworkPeer):
                found = self._network(peer)
            elif isinstance(peer, NodePeer):
                found = self._node(peer)
            else:
                raise TypeError(f"no vector form for peer {type(peer).__name__}")
            self._peers[peer] = found
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
