"""The model: the frozen intermediate form every input format is read into.

No I/O, no YAML, no Kubernetes types: dialects build these objects, the engine decides on them,
backends consume the engine's resolved form. To add a concept, add a typed dataclass (or a
field) here and teach the dialects to produce it and the engine to decide on it.
"""

from netwarden.model.cluster import ClusterState, external_endpoint
from netwarden.model.endpoints import (
    Endpoint,
    EndpointKind,
    IPAddress,
    NamedPort,
    Namespace,
    Node,
)
from netwarden.model.flow import Flow
from netwarden.model.location import Location
from netwarden.model.policy import (
    ADMIN_TIER,
    BASELINE_TIER,
    BUILTIN_TIERS,
    DEFAULT_TIER,
    K8S_NETWORK_POLICY_ORDER,
    Action,
    Direction,
    EndpointSelector,
    IPNetwork,
    NetworkPeer,
    NodePeer,
    Peer,
    Policy,
    Rule,
    Tier,
)
from netwarden.model.ports import (
    ALL_PORTS,
    ICMP,
    ICMPV6,
    PORTED_PROTOCOLS,
    SCTP,
    TCP,
    UDP,
    PortMatch,
    PortRange,
    parse_protocol,
    protocol_name,
)
from netwarden.model.selector import All, And, Has, In, Not, NotIn, Nothing, Or, Selector, all_of

__all__ = [
    "ADMIN_TIER",
    "ALL_PORTS",
    "BASELINE_TIER",
    "BUILTIN_TIERS",
    "DEFAULT_TIER",
    "ICMP",
    "ICMPV6",
    "K8S_NETWORK_POLICY_ORDER",
    "PORTED_PROTOCOLS",
    "SCTP",
    "TCP",
    "UDP",
    "Action",
    "All",
    "And",
    "ClusterState",
    "Direction",
    "Endpoint",
    "EndpointKind",
    "EndpointSelector",
    "Flow",
    "Has",
    "IPAddress",
    "IPNetwork",
    "In",
    "Location",
    "NamedPort",
    "Namespace",
    "NetworkPeer",
    "Node",
    "NodePeer",
    "Not",
    "NotIn",
    "Nothing",
    "Or",
    "Peer",
    "Policy",
    "PortMatch",
    "PortRange",
    "Rule",
    "Selector",
    "Tier",
    "all_of",
    "external_endpoint",
    "parse_protocol",
    "protocol_name",
]
