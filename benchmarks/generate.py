"""A seeded, realistic cluster as manifests, and probes against it, for benchmarks.

    text = generate_cluster(pods=5000, policies=1000, seed=1)   # multi-document YAML
    cluster = load_text(text).cluster
    probes = generate_probes(cluster, 1_000_000, seed=1)

The cluster: ~100 pods per namespace, each namespace a team's (labels `team`, `env`,
`tenant`), running a few apps (labels `app`, `tier`, `team`, `version`; databases are
StatefulSet pods with a unique `statefulset.kubernetes.io/pod-name`), with named container
ports, plus `kube-system` (DNS) and `monitoring`, nodes with hostNetwork agents. Policies are
what platform and application teams write: per-namespace default deny, app-to-app allows by
podSelector / namespaceSelector / matchExpressions, named ports, port ranges, egress ipBlocks
with `except`, AdminNetworkPolicies with Allow / Deny / Pass (pods, namespaces, networks,
nodes peers) and one BaselineAdminNetworkPolicy. Same arguments, same text.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import numpy as np
import yaml

from netwarden.engine.batch import Probe
from netwarden.model import ICMP, SCTP, TCP, UDP, ClusterState, EndpointKind

Manifest = dict[str, Any]

APPS = {  # app -> (tier, named ports as (name, port, protocol))
    "frontend": ("web", [("http", 8080, "TCP"), ("metrics", 9090, "TCP")]),
    "api": ("app", [("http", 8080, "TCP"), ("grpc", 9000, "TCP"), ("metrics", 9090, "TCP")]),
    "auth": ("app", [("grpc", 9000, "TCP"), ("metrics", 9090, "TCP")]),
    "worker": ("app", [("metrics", 9090, "TCP")]),
    "search": ("app", [("http", 9200, "TCP"), ("transport", 9300, "TCP")]),
    "cache": ("data", [("redis", 6379, "TCP")]),
    "queue": ("data", [("amqp", 5672, "TCP"), ("stats", 8125, "UDP")]),
    "db": ("data", [("postgres", 5432, "TCP"), ("metrics", 9187, "TCP")]),
}
STATEFUL = {"db", "cache", "queue"}
ENVS = ("prod", "staging", "dev")
ZONES = ("zone-a", "zone-b", "zone-c")
PODS_PER_NAMESPACE = 100
PODS_PER_NODE = 50
#: Probe ports: the named ports' numbers, common service ports, and anything else.
PROBE_PORTS = (8080, 9090, 9000, 9200, 9300, 6379, 5672, 5432, 9187, 53, 443, 80, 22, 8443)
EXTERNAL_NETWORKS = ("203.0.113.0", "198.51.100.0", "192.0.2.0", "8.8.8.0", "169.254.169.0")


def generate_cluster(
    pods: int,
    policies: int,
    seed: int,
    *,
    admin_policies: bool = True,
    host_network: bool = True,
    pod_network_ipblocks: bool = True,
) -> str:
    """Exactly `pods` pods (at least ~10) and `policies` policies, as multi-document YAML.

    The keywords drop constructs a peer tool lacks (benchmarks/peer_nca.py): without
    `admin_policies` every policy is a Kubernetes NetworkPolicy; without `host_network` there
    are no hostNetwork node agents (all pods are tenant or system pods); without
    `pod_network_ipblocks` no ipBlock covers pod addresses (the partner network replaces
    10.0.0.0/8). The defaults keep the text of earlier versions.
    """
    rng = random.Random(seed)
    namespaces = _namespaces(max(1, pods // PODS_PER_NAMESPACE), rng)
    nodes = _nodes(max(1, pods // PODS_PER_NODE), rng)
    docs: list[Manifest] = namespaces + nodes
    docs += _pods(pods, namespaces, nodes, rng, host_network=host_network)
    docs += _policies(
        policies,
        namespaces,
        rng,
        admin_policies=admin_policies,
        pod_network_ipblocks=pod_network_ipblocks,
    )
    dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump_all(docs, Dumper=dumper, sort_keys=False, default_flow_style=None)


def _namespaces(count: int, rng: random.Random) -> list[Manifest]:
    made = []
    for i in range(count):
        team = f"team-{i % 20:02d}"
        labels = {"team": team, "env": rng.choice(ENVS), "tenant": f"tenant-{i % 7}"}
        made.append(_namespace(f"{team}-ns{i:03d}", labels))
    made.append(_namespace("kube-system", {"role": "system"}))
    made.append(_namespace("monitoring", {"role": "system"}))
    return made


def _namespace(name: str, labels: dict[str, str]) -> Manifest:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _nodes(count: int, rng: random.Random) -> list[Manifest]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": f"node-{i:03d}",
                "labels": {
                    "topology.kubernetes.io/zone": ZONES[i % len(ZONES)],
                    "node-role": "infra" if rng.random() < 0.1 else "worker",
                },
            },
            "status": {"addresses": [{"type": "InternalIP", "address": _node_ip(i)}]},
        }
        for i in range(count)
    ]


def _node_ip(i: int) -> str:
    return f"172.16.{i // 250}.{i % 250 + 1}"


def _pod_ip(i: int) -> str:
    # 64,000 pods per /16 (256 x 250): the third octet stays below 256 at any size.
    return f"10.{244 + i // 64_000}.{(i % 64_000) // 250}.{i % 250 + 1}"


def _pods(
    count: int,
    namespaces: list[Manifest],
    nodes: list[Manifest],
    rng: random.Random,
    host_network: bool = True,
) -> list[Manifest]:
    """Tenant pods spread over the tenant namespaces; DNS, Prometheus and node agents."""
    tenants = [ns for ns in namespaces if "team" in ns["metadata"]["labels"]]
    made: list[Manifest] = []
    system = [
        ("kube-system", "coredns", [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]),
        ("monitoring", "prometheus", [("web", 9090, "TCP")]),
    ]
    for namespace, app, ports in system:
        for r in range(2):
            made.append(_pod(namespace, f"{app}-{r}", {"app": app}, ports, len(made), nodes, rng))
    agents = nodes[: max(1, len(nodes) // 2)] if host_network else []
    tenant_pods = count - len(made) - len(agents)
    if tenant_pods < len(tenants):
        raise ValueError(f"{count} pods are too few for {len(tenants)} namespaces")
    for t, ns in enumerate(tenants):
        name, team = ns["metadata"]["name"], ns["metadata"]["labels"]["team"]
        apps = rng.sample(sorted(APPS), rng.randint(4, 7))
        share = tenant_pods // len(tenants) + (t < tenant_pods % len(tenants))
        for k in range(share):
            app = apps[k % len(apps)]
            tier, ports = APPS[app]
            labels = {"app": app, "tier": tier, "team": team, "version": rng.choice(("v1", "v2"))}
            if app in STATEFUL:
                labels["statefulset.kubernetes.io/pod-name"] = f"{app}-{k}"
            made.append(_pod(name, f"{app}-{k}", labels, ports, len(made), nodes, rng))
    for i, node in enumerate(agents):  # hostNetwork node agents
        node_name = node["metadata"]["name"]
        pod = _pod(
            "kube-system",
            f"node-agent-{node_name}",
            {"app": "node-agent"},
            [("metrics", 9100, "TCP")],
            len(made),
            nodes,
            rng,
        )
        pod["spec"]["hostNetwork"] = True
        pod["spec"]["nodeName"] = node_name
        pod["status"] = {"podIP": _node_ip(i), "podIPs": [{"ip": _node_ip(i)}]}
        made.append(pod)
    return made


def _pod(
    namespace: str,
    name: str,
    labels: dict[str, str],
    ports: list[tuple[str, int, str]],
    index: int,
    nodes: list[Manifest],
    rng: random.Random,
) -> Manifest:
    ip = _pod_ip(index)
    container_ports = [{"name": n, "containerPort": p, "protocol": proto} for n, p, proto in ports]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "nodeName": rng.choice(nodes)["metadata"]["name"],
            "containers": [{"name": "main", "image": "example/app:1", "ports": container_ports}],
        },
        "status": {"podIP": ip, "podIPs": [{"ip": ip}]},
    }


def _policies(
    count: int,
    namespaces: list[Manifest],
    rng: random.Random,
    admin_policies: bool = True,
    pod_network_ipblocks: bool = True,
) -> list[Manifest]:
    """About 7% AdminNetworkPolicies, one BaselineAdminNetworkPolicy, the rest NetworkPolicies
    spread over the tenant namespaces (a default deny first in each)."""
    tenants = [ns["metadata"] for ns in namespaces if "team" in ns["metadata"]["labels"]]
    admin = min(count - 1, max(0, count * 7 // 100)) if count > 1 else 0
    baseline = 1 if count > admin else 0
    if not admin_policies:
        admin = baseline = 0
    made = [_admin_policy(i, tenants, rng) for i in range(admin)]
    if baseline:
        made.append(_baseline_policy())
    for i in range(count - admin - baseline):
        ns = tenants[i % len(tenants)]
        if i < len(tenants):  # a third of the namespaces deny egress by default too
            made.append(_default_deny(ns["name"], egress=i % 3 == 0))
        else:
            made.append(_network_policy(i, ns, tenants, rng, pod_network_ipblocks))
    return made


def _selector(labels: dict[str, str] | None = None, **expressions: Any) -> Manifest:
    found: Manifest = {}
    if labels:
        found["matchLabels"] = labels
    if expressions:
        found["matchExpressions"] = [{"key": key, **value} for key, value in expressions.items()]
    return found


def _default_deny(namespace: str, egress: bool) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": namespace},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"] if egress else ["Ingress"],
        },
    }


def _network_policy(
    i: int,
    ns: Manifest,
    tenants: list[Manifest],
    rng: random.Random,
    pod_network_ipblocks: bool = True,
) -> Manifest:
    """One of the policies application teams write, picked by `i` and the seed."""
    app = rng.choice(sorted(APPS))
    peer_app = rng.choice(sorted(APPS))
    port_name = rng.choice(APPS[app][1])[0]
    shape = rng.random()
    spec: Manifest = {"podSelector": _selector({"app": app})}
    if shape < 0.35:  # app -> app on a named port, same namespace
        spec["ingress"] = [
            {
                "from": [{"podSelector": _selector({"app": peer_app})}],
                "ports": [{"port": port_name}],
            }
        ]
    elif shape < 0.55:  # from another team's namespace, by labels
        other = rng.choice(tenants)["labels"]["team"]
        spec["ingress"] = [
            {
                "from": [
                    {
                        "namespaceSelector": _selector({"team": other}),
                        "podSelector": _selector({"app": peer_app}),
                    },
                    {"namespaceSelector": _selector({"kubernetes.io/metadata.name": "monitoring"})},
                ],
                "ports": [
                    {"port": rng.choice(PROBE_PORTS), "protocol": "TCP"},
                    {"port": "metrics"},
                ],
            }
        ]
    elif shape < 0.7:  # matchExpressions on tier and version, a port range
        spec["podSelector"] = _selector(
            tier={"operator": "In", "values": ["app", "data"]},
            version={"operator": "NotIn", "values": ["v0"]},
        )
        start = rng.choice((8000, 9000, 5000))
        spec["ingress"] = [
            {
                "from": [
                    {
                        "podSelector": _selector(
                            tier={"operator": "In", "values": ["web", "app"]},
                            app={"operator": "Exists"},
                        )
                    }
                ],
                "ports": [{"port": start, "endPort": start + rng.choice((10, 100, 500))}],
            }
        ]
    elif shape < 0.85:  # egress to the internet but not to private ranges, and to DNS
        spec["policyTypes"] = ["Egress"]
        spec["egress"] = [
            {
                "to": [
                    {
                        "ipBlock": {
                            "cidr": "0.0.0.0/0",
                            "except": ["10.0.0.0/8", "172.16.0.0/12", "169.254.169.254/32"],
                        }
                    }
                ],
                "ports": [{"port": 443}, {"port": 80}],
            },
            {
                "to": [
                    {
                        "namespaceSelector": _selector(
                            {"kubernetes.io/metadata.name": "kube-system"}
                        ),
                        "podSelector": _selector({"app": "coredns"}),
                    }
                ],
                "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
            },
        ]
    else:  # egress to an app anywhere in the tenant, and to an external partner network
        tenant = rng.choice(tenants)["labels"]["tenant"]
        spec["policyTypes"] = ["Ingress", "Egress"]
        spec["ingress"] = [{"from": [{"ipBlock": {"cidr": f"{rng.choice(EXTERNAL_NETWORKS)}/24"}}]}]
        spec["egress"] = [
            {
                "to": [
                    {
                        "namespaceSelector": _selector({"tenant": tenant}),
                        "podSelector": _selector({"app": peer_app}),
                    }
                ]
            },
            {
                "to": [{"ipBlock": _internal_block(rng.randint(244, 250), pod_network_ipblocks)}],
                "ports": [
                    {
                        "port": rng.choice(PROBE_PORTS),
                        "protocol": rng.choice(("TCP", "UDP", "SCTP")),
                    }
                ],
            },
        ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"np-{i:05d}-{app}", "namespace": ns["name"]},
        "spec": spec,
    }


def _internal_block(second_octet: int, pod_network: bool) -> Manifest:
    """The private network but one /16 of it: 10.0.0.0/8 (which holds the pod addresses), or
    the same shape inside 100.64.0.0/10, which holds no pod."""
    if pod_network:
        return {"cidr": "10.0.0.0/8", "except": [f"10.{second_octet}.0.0/16"]}
    return {"cidr": "100.64.0.0/10", "except": [f"100.{second_octet - 180}.0.0/16"]}


def _admin_policy(i: int, tenants: list[Manifest], rng: random.Random) -> Manifest:
    """Platform guardrails: tenant isolation, monitoring pass-through, metadata deny."""
    tenant = rng.choice(tenants)["labels"]
    subject: Manifest = (
        {"namespaces": _selector({"tenant": tenant["tenant"]})}
        if rng.random() < 0.6
        else {
            "pods": {
                "namespaceSelector": _selector({"env": rng.choice(ENVS)}),
                "podSelector": _selector({"app": rng.choice(sorted(APPS))}),
            }
        }
    )
    ingress = [
        {
            "name": "pass-monitoring",
            "action": "Pass",
            "from": [{"namespaces": _selector({"kubernetes.io/metadata.name": "monitoring"})}],
            "ports": [{"namedPort": "metrics"}],
        },
        {
            "name": "allow-same-tenant",
            "action": "Allow",
            "from": [{"namespaces": _selector({"tenant": tenant["tenant"]})}],
        },
        {
            "name": "deny-other-env",
            "action": "Deny",
            "from": [
                {
                    "pods": {
                        "namespaceSelector": _selector(
                            env={"operator": "NotIn", "values": [tenant["env"]]}
                        ),
                        "podSelector": {},
                    }
                }
            ],
            "ports": [
                {"portRange": {"start": 1, "end": 32767, "protocol": rng.choice(("TCP", "UDP"))}}
            ],
        },
    ]
    egress = [
        {"name": "deny-metadata", "action": "Deny", "to": [{"networks": ["169.254.169.254/32"]}]},
        {
            "name": "allow-infra-nodes",
            "action": "Allow",
            "to": [{"nodes": _selector({"node-role": "infra"})}],
            "ports": [{"portNumber": {"port": 10250, "protocol": "TCP"}}],
        },
        {
            "name": "pass-dns",
            "action": "Pass",
            "to": [{"networks": ["10.244.0.0/16", "fd00::/8"]}],
            "ports": [{"portNumber": {"port": 53, "protocol": "UDP"}}],
        },
    ]
    spec: Manifest = {
        "priority": rng.randint(0, 1000),
        "subject": subject,
        "ingress": rng.sample(ingress, rng.randint(1, 3)),
    }
    if rng.random() < 0.6:
        spec["egress"] = rng.sample(egress, rng.randint(1, 3))
    return {
        "apiVersion": "policy.networking.k8s.io/v1alpha1",
        "kind": "AdminNetworkPolicy",
        "metadata": {"name": f"anp-{i:04d}"},
        "spec": spec,
    }


def _baseline_policy() -> Manifest:
    return {
        "apiVersion": "policy.networking.k8s.io/v1alpha1",
        "kind": "BaselineAdminNetworkPolicy",
        "metadata": {"name": "default"},
        "spec": {
            "subject": {"namespaces": _selector(tenant={"operator": "Exists"})},
            "ingress": [
                {
                    "name": "allow-monitoring",
                    "action": "Allow",
                    "from": [
                        {"namespaces": _selector({"kubernetes.io/metadata.name": "monitoring"})}
                    ],
                },
                {"name": "deny-all-pods", "action": "Deny", "from": [{"namespaces": {}}]},
            ],
            "egress": [
                {
                    "name": "deny-dev",
                    "action": "Deny",
                    "to": [{"namespaces": _selector({"env": "dev"})}],
                }
            ],
        },
    }


# Calico-heavy clusters: the same inventory, run the way Calico users write policy.

#: (name, order, default action): guardrails first, then platform rules, then applications.
CALICO_TIERS = (("security", 100, "Pass"), ("platform", 200, "Pass"), ("app", 300, "Deny"))
#: Outside addresses a threat feed lists among its random blocks, so probes hit it.
THREAT_HOSTS = ("203.0.113.200/32", "198.51.100.254/32", "192.0.2.7/32")
#: Apps with a Service in each namespace: port and (named) target port.
SERVED = {"db": (5432, "postgres"), "api": (80, "http")}


def generate_calico_cluster(pods: int, policies: int, seed: int) -> str:
    """Exactly `pods` pods plus one host endpoint per node, and `policies` Calico and
    Kubernetes policies (staged ones included), as multi-document YAML read by the Calico
    reader: tiers, GlobalNetworkPolicies and namespaced NetworkPolicies with selectors using
    `in`, `has` and `!`, nets / notNets, network sets (a threat feed, partners, offices),
    serviceAccounts, services, port ranges, notPorts, ICMP and ipVersion; service accounts and
    Services; host endpoints with a profile. Same arguments, same text."""
    rng = random.Random(seed)
    namespaces = _namespaces(max(1, pods // PODS_PER_NAMESPACE), rng)
    nodes = _nodes(max(1, pods // PODS_PER_NODE), rng)
    made = _pods(pods, namespaces, nodes, rng)
    for pod in made:  # every workload runs as its own service account
        pod["spec"]["serviceAccountName"] = pod["metadata"]["labels"]["app"]
    docs: list[Manifest] = namespaces + nodes + made
    docs += _accounts_and_services(made)
    docs += _calico_inventory(namespaces, nodes, rng)
    docs += _calico_policies(policies, namespaces, rng)
    dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump_all(docs, Dumper=dumper, sort_keys=False, default_flow_style=None)


def _resource(kind: str, name: str, spec: Manifest, **meta: Any) -> Manifest:
    api = "v1" if kind in ("ServiceAccount", "Service") else "projectcalico.org/v3"
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, **meta}, "spec": spec}


def _accounts_and_services(pods: list[Manifest]) -> list[Manifest]:
    """A service account per (namespace, app), labelled with its role; Services for the
    databases and APIs of each namespace (a named target port, resolved on the pods)."""
    made: list[Manifest] = []
    seen: set[tuple[str, str]] = set()
    for pod in pods:
        meta = pod["metadata"]
        app, namespace = meta["labels"]["app"], meta["namespace"]
        if (namespace, app) in seen:
            continue
        seen.add((namespace, app))
        role = APPS[app][0] if app in APPS else "system"
        labels = {"app-role": role, "pci": "true" if app in ("db", "auth") else "false"}
        account = _resource("ServiceAccount", app, {}, namespace=namespace, labels=labels)
        made.append({key: value for key, value in account.items() if key != "spec"})
        if app in SERVED:
            port, target = SERVED[app]
            ports = [{"port": port, "targetPort": target, "protocol": "TCP"}]
            spec = {"selector": {"app": app}, "ports": ports}
            made.append(_resource("Service", app, spec, namespace=namespace))
    return made


def _calico_inventory(
    namespaces: list[Manifest], nodes: list[Manifest], rng: random.Random
) -> list[Manifest]:
    """Tiers, network sets, a host endpoint per node and the profile they share."""
    made = [
        _resource("Tier", name, {"order": order, "defaultAction": action})
        for name, order, action in CALICO_TIERS
    ]
    feed = [
        f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}"
        + rng.choice(("/32", "/28", "/24"))
        for _ in range(300)
    ]
    global_sets = {
        "threat-feed": ({"feed": "threat", "severity": "high"}, [*THREAT_HOSTS, *feed]),
        "partners": ({"role": "partner", "trust": "high"}, ["198.51.100.0/24", "2001:db8:1::/48"]),
        "resolvers": ({"role": "resolver"}, ["8.8.8.0/24"]),
        "metadata": ({"role": "metadata"}, ["169.254.169.254/32"]),
    }
    for name, (labels, nets) in global_sets.items():
        made.append(_resource("GlobalNetworkSet", name, {"nets": nets}, labels=labels))
    for i, ns in enumerate(namespaces):
        if "team" in ns["metadata"]["labels"] and i % 3 == 0:
            site, net = rng.choice((("hq", "192.0.2.0/25"), ("branch", "192.0.2.128/25")))
            meta = {"namespace": ns["metadata"]["name"], "labels": {"role": "office", "site": site}}
            made.append(_resource("NetworkSet", "office", {"nets": [net]}, **meta))
    for i, node in enumerate(nodes):
        name, role = node["metadata"]["name"], node["metadata"]["labels"]["node-role"]
        spec = {"node": name, "interfaceName": "eth0", "expectedIPs": [_node_ip(i)]}
        labels = {"role": "k8s-node", "node-role": role}
        made.append(
            _resource(
                "HostEndpoint", f"{name}-eth0", spec | {"profiles": ["host-base"]}, labels=labels
            )
        )
    host_base = {
        "labelsToApply": {"managed": "true"},
        "ingress": [
            {
                "action": "Allow",
                "protocol": "TCP",
                "source": {"nets": ["10.0.0.0/8"]},
                "destination": {"ports": [10250, "30000:32767"]},
            },
            {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8}},
        ],
        "egress": [{"action": "Allow"}],
    }
    made.append(_resource("Profile", "host-base", host_base))
    return made


def _calico_policies(count: int, namespaces: list[Manifest], rng: random.Random) -> list[Manifest]:
    """About 10% security and platform GlobalNetworkPolicies, 3% staged, 15% Kubernetes
    NetworkPolicies, the rest namespaced Calico policies of the app tier."""
    tenants = [ns["metadata"] for ns in namespaces if "team" in ns["metadata"]["labels"]]
    made = _guardrails(tenants, rng)[: max(1, count // 10)]
    staged = count * 3 // 100
    kubernetes = count * 15 // 100
    for i in range(max(0, count - len(made) - staged - kubernetes)):
        made.append(_calico_policy(i, tenants[i % len(tenants)], rng))
    for i in range(kubernetes):
        made.append(_network_policy(i, tenants[i % len(tenants)], tenants, rng))
    if staged:  # preview dropping the threat feed block, and changes to a few policies
        delete = {"tier": "security", "stagedAction": "Delete"}
        made.append(_resource("StagedGlobalNetworkPolicy", "security.block-threat-feed", delete))
        candidates = made[1:-1]  # distinct policies, none of them the deleted one
        step = max(1, len(candidates) // staged)
        made += [_staged(policy) for policy in candidates[::step][: staged - 1]]
    return made[:count]


def _guardrails(tenants: list[Manifest], rng: random.Random) -> list[Manifest]:
    """Security and platform tiers: threat feeds, cloud metadata, tenant isolation (which
    passes its own tenant on), node protection, DNS, monitoring."""
    threat = {"selector": 'feed == "threat"', "namespaceSelector": "global()"}
    metadata = {"selector": 'role == "metadata"', "namespaceSelector": "global()"}
    made = [
        _gnp(
            "block-threat-feed",
            "security",
            10,
            "all()",
            ingress=[{"action": "Deny", "source": threat}],
            egress=[{"action": "Deny", "destination": threat}],
        ),
        _gnp(
            "deny-metadata",
            "security",
            20,
            "!has(metadata-access)",
            egress=[{"action": "Deny", "destination": metadata}],
        ),
        _gnp(
            "host-protection",
            "platform",
            10,
            'role == "k8s-node"',
            ingress=[
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"nets": ["10.0.0.0/8"], "notNets": ["10.250.0.0/16"]},
                    "destination": {"ports": [10250, "30000:32767"]},
                },
                {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8, "code": 0}},
                {"action": "Deny", "notProtocol": "TCP", "ipVersion": 4},
            ],
            egress=[{"action": "Allow"}],
        ),
        _gnp(
            "dns",
            "platform",
            20,
            "has(app)",
            egress=[
                {
                    "action": "Allow",
                    "protocol": protocol,
                    "destination": {
                        "selector": 'app == "coredns"',
                        "namespaceSelector": 'kubernetes.io/metadata.name == "kube-system"',
                        "ports": [53],
                    },
                }
                for protocol in ("UDP", "TCP")
            ]
            + [{"action": "Pass", "destination": {"selector": 'role == "resolver"'}}],
        ),
        _gnp(
            "monitoring",
            "platform",
            30,
            'app in {"api", "db", "frontend", "worker"}',
            ingress=[
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {
                        "serviceAccounts": {"names": ["prometheus"]},
                        "namespaceSelector": 'role == "system"',
                    },
                    "destination": {"ports": ["metrics", "9100:9200"]},
                }
            ],
        ),
    ]
    for i, tenant in enumerate(tenants):
        name = tenant["labels"]["tenant"]
        isolation = _gnp(
            f"isolate-{tenant['name']}",
            "security",
            100 + i,
            "has(app)",
            ingress=[
                {"action": "Pass", "source": {"namespaceSelector": f'tenant == "{name}"'}},
                {"action": "Pass", "source": {"namespaceSelector": 'role == "system"'}},
                {
                    "action": "Deny",
                    "source": {"selector": "has(app)", "notNets": ["172.16.0.0/12"]},
                },
            ],
        )
        isolation["spec"]["namespaceSelector"] = (
            f'kubernetes.io/metadata.name == "{tenant["name"]}"'
        )
        made.append(isolation)
    return made


def _staged(policy: Manifest) -> Manifest:
    """The policy as a staged Set that keeps only its first rule of each direction."""
    staged = copy.deepcopy(policy)
    if staged["apiVersion"].startswith("networking.k8s.io"):
        staged["apiVersion"] = "projectcalico.org/v3"
        staged["kind"] = "StagedKubernetesNetworkPolicy"
    else:
        staged["kind"] = "Staged" + staged["kind"]
    spec = staged["spec"]
    spec["stagedAction"] = "Set"
    for direction in ("ingress", "egress"):
        if spec.get(direction):
            spec[direction] = spec[direction][:1]
    return staged


def _gnp(name: str, tier: str, order: int, selector: str, **rules: Any) -> Manifest:
    spec: Manifest = {"tier": tier, "order": order, "selector": selector, **rules}
    return _resource("GlobalNetworkPolicy", f"{tier}.{name}", spec)


def _calico_policy(i: int, ns: Manifest, rng: random.Random) -> Manifest:
    """One of the namespaced policies application teams write in Calico's language."""
    shape = rng.randrange(5)
    order = rng.choice((10, 50, 100, 500))
    rules: dict[str, list[Manifest]]
    if shape == 0:  # an API: who may call it, and what it may call
        selector = 'app == "api" && version in {"v1", "v2"}'
        rules = {
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"selector": 'tier in {"web", "app"}'},
                    "destination": {"ports": ["8000:8100", "http"], "notPorts": [8081]},
                },
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"serviceAccounts": {"selector": 'app-role == "web"'}},
                },
                {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8}},
            ],
            "egress": [
                {"action": "Allow", "protocol": "TCP", "destination": {"services": {"name": "db"}}},
                {"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}},
                {"action": "Deny"},
            ],
        }
    elif shape == 1:  # a database: its clients by service account
        selector = 'app == "db"'
        rules = {
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"serviceAccounts": {"names": ["api", "worker"]}},
                    "destination": {"ports": ["postgres"]},
                },
                {"action": "Deny", "source": {"selector": "!has(pci)", "nets": ["10.0.0.0/8"]}},
            ]
        }
    elif shape == 2:  # web tier to the internet (not to private ranges or threats), partners
        selector = 'tier == "web" && !has(statefulset.kubernetes.io/pod-name)'
        rules = {
            "egress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "destination": {
                        "nets": ["0.0.0.0/0"],
                        "notNets": ["10.0.0.0/8", "172.16.0.0/12"],
                        "notSelector": 'feed == "threat"',
                        "ports": [443, 80],
                    },
                },
                {
                    "action": "Allow",
                    "destination": {
                        "selector": 'role == "partner"',
                        "namespaceSelector": "global()",
                    },
                },
                {"action": "Pass"},
            ]
        }
    elif shape == 3:  # office access, IPv4 only, not over UDP
        selector = "has(app)"
        rules = {
            "ingress": [
                {"action": "Allow", "protocol": "TCP", "source": {"selector": 'role == "office"'}},
                {
                    "action": "Allow",
                    "notProtocol": "UDP",
                    "ipVersion": 4,
                    "source": {"nets": ["192.0.2.0/24", "198.51.100.0/24"]},
                },
                {"action": "Pass"},
            ]
        }
    else:  # caches and queues: ICMP but not unreachables, no UDP from anyone but workers
        selector = 'app in {"cache", "queue"}'
        rules = {
            "ingress": [
                {"action": "Allow", "protocol": "ICMP", "notICMP": {"type": 3}},
                {"action": "Deny", "protocol": "UDP", "source": {"notSelector": 'app == "worker"'}},
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "destination": {"ports": ["5000:7000", "redis", "amqp"]},
                },
            ]
        }
    spec: Manifest = {"tier": "app", "order": order, "selector": selector, **rules}
    return _resource("NetworkPolicy", f"app.cnp-{i:05d}-{shape}", spec, namespace=ns["name"])


def generate_probes(cluster: ClusterState, n: int, seed: int) -> list[Probe]:
    """`n` probes: mostly pod to pod, some to and from outside addresses (nodes, and the
    network sets' blocks), on the ports the pods serve and others, mostly TCP."""
    rng = np.random.default_rng(seed)
    pods = [e.key for e in cluster.endpoints if e.kind is EndpointKind.POD]
    outside = [f"{net[:-1]}{h}" for net in EXTERNAL_NETWORKS for h in (7, 200, 254)]
    outside += [str(ip) for node in cluster.nodes for ip in node.ips][:20]
    # Addresses in network sets (Calico clusters): the first block of each, a few hosts in.
    outside += [str(s.nets[0][min(7, s.nets[0].num_addresses - 1)]) for s in cluster.network_sets]
    names = np.array(pods + outside, dtype=object)
    pod_count = len(pods)

    def ends(size: int) -> np.ndarray[Any, Any]:
        """Pods 90% of the time, else an outside address."""
        chosen = rng.integers(0, pod_count, size)
        out = rng.random(size) < 0.1
        chosen[out] = pod_count + rng.integers(0, len(outside), int(out.sum()))
        return chosen

    src, dst = names[ends(n)], names[ends(n)]
    ports = np.where(rng.random(n) < 0.8, rng.choice(PROBE_PORTS, n), rng.integers(1, 65536, n))
    protocol = rng.choice([TCP, UDP, SCTP, ICMP], n, p=[0.85, 0.1, 0.02, 0.03])
    ports[protocol == ICMP] = 0
    return [
        Probe(s, d, p, proto)
        for s, d, p, proto in zip(
            src.tolist(), dst.tolist(), ports.tolist(), protocol.tolist(), strict=True
        )
    ]
