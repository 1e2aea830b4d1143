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

The code: this module is the backend's public face (`compile_ruleset`, `NftablesBackend`);
`nft_render` builds the chains and maps, `nft_rules` the rules and their sets, `nft_syntax`
says how nft spells each part, `nft_ruleset` holds the result.

Interface names come from the caller: the lab passes its veth names; without a lab,
`calico_interfaces` derives Calico's: `cali` + the first 11 hex digits of sha1("<ns>.<pod>").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from netwarden.dataplane.apply import apply_ruleset
from netwarden.dataplane.nft_render import class_chain_name, render_node
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
from netwarden.dataplane.nft_syntax import FLOW_LOG_GROUPS, LOG_GROUP, PROFILE_HIT, flow_log_hit
from netwarden.engine.resolve import resolve_node
from netwarden.engine.resolved import ResolvedNode
from netwarden.errors import CompileError
from netwarden.model import ClusterState, EndpointKind

CALICO_PREFIX = "cali"

# Names defined in nft_render, nft_ruleset and nft_syntax stay importable from here.
__all__ = [
    "FLOW_LOG_GROUPS",
    "GENERATION_SET",
    "LOG_GROUP",
    "PASS_MARK",
    "PROFILE_HIT",
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
    "flow_log_hit",
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
