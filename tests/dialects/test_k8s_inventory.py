"""Reading Kubernetes inventory (namespaces, nodes, pods, workloads), and standing in for the
pods of workloads whose pods are not given."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

import pytest

from netwarden.dialects import load_paths, load_text
from netwarden.dialects.k8s_inventory import READERS, Workload
from netwarden.dialects.loader import api_group
from netwarden.dialects.source import read_paths, read_text
from netwarden.errors import InputError
from netwarden.model import (
    SCTP,
    TCP,
    UDP,
    ClusterState,
    Endpoint,
    EndpointKind,
    In,
    IPAddress,
    NamedPort,
    Namespace,
    Node,
    Nothing,
    Selector,
)

FIXTURES = Path(__file__).parent / "fixtures" / "k8s_inventory"
WORKLOADS = FIXTURES / "workloads.yaml"
NODES = FIXTURES / "nodes.yaml"


def ip(text: str) -> IPAddress:
    return ip_address(text)


def label(key: str, value: str) -> Selector:
    return In(key, frozenset({value}))


def cluster(text: str) -> ClusterState:
    result = load_text(text, "inv.yaml")
    assert not result.skipped, result.skipped
    return result.cluster


def pod(text: str) -> Endpoint:
    (endpoint,) = cluster("apiVersion: v1\nkind: Pod\n" + text).endpoints
    return endpoint


def read_workloads(path: Path) -> dict[str, Workload]:
    """The workloads of a file as read, before any pod is stood in for."""
    found = {}
    for document in read_paths([path]):
        reader = READERS[api_group(document.data["apiVersion"]), document.data["kind"]]
        for read in reader(document):
            assert isinstance(read, Workload)
            found[read.name] = read
    return found


# --- namespaces and nodes ----------------------------------------------------------------------


def test_namespace_always_has_its_name_label() -> None:
    (ns,) = cluster("""\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: web, kubernetes.io/metadata.name: spoofed}
""").namespaces
    assert ns == Namespace(
        "shop",
        {"team": "web", "kubernetes.io/metadata.name": "shop", "projectcalico.org/name": "shop"},
    )
    assert ns.source is not None and (ns.source.path, ns.source.line) == ("inv.yaml", 1)


def test_node_internal_ips_of_both_families() -> None:
    (node,) = cluster("""\
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {zone: edge}}
status:
  addresses:
  - {type: InternalIP, address: 10.0.0.1}
  - {type: ExternalIP, address: 203.0.113.1}
  - {type: Hostname, address: n1.example}
  - {type: InternalIP, address: "fd00::1"}
""").nodes
    assert node == Node("n1", {"zone": "edge"}, (ip("10.0.0.1"), ip("fd00::1")))
    assert node.source is not None and node.source.line == 1


# --- pods --------------------------------------------------------------------------------------


def test_pod_fields() -> None:
    endpoint = pod("""\
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  nodeName: n1
  serviceAccountName: web-sa
  initContainers:
  - name: init
    ports: [{name: init-port, containerPort: 1}]
  - name: proxy
    restartPolicy: Always
    ports: [{name: proxy-admin, containerPort: 9901}]
  containers:
  - name: app
    ports:
    - {name: http, containerPort: 8080}
    - {name: dns, containerPort: 53, protocol: UDP}
    - {containerPort: 9090}
  - name: sctp
    ports: [{name: sig, containerPort: 3868, protocol: SCTP}]
status:
  podIP: 10.1.0.5
  podIPs: [{ip: 10.1.0.5}, {ip: "fd00:1::5"}]
""")
    assert endpoint == Endpoint(
        kind=EndpointKind.POD,
        name="web",
        namespace="shop",
        labels={"app": "web"},
        ips=(ip("10.1.0.5"), ip("fd00:1::5")),
        # unnamed ports cannot be referred to; of init containers, only restartable ones run
        ports=(
            NamedPort("http", 8080, TCP),
            NamedPort("dns", 53, UDP),
            NamedPort("sig", 3868, SCTP),
            NamedPort("proxy-admin", 9901, TCP),
        ),
        node="n1",
        service_account="web-sa",
    )
    assert endpoint.source is not None and endpoint.source.line == 1


@pytest.mark.parametrize(
    ("text", "key", "kind", "ips", "node"),
    [
        # defaults: namespace "default", no node, no addresses
        ("metadata: {name: p}", "default/p", EndpointKind.POD, (), None),
        # podIP when podIPs is absent, of either family
        (
            "metadata: {name: p}\nstatus: {podIP: 10.1.0.9}",
            "default/p",
            EndpointKind.POD,
            (ip("10.1.0.9"),),
            None,
        ),
        (
            "metadata: {name: p}\nstatus: {podIP: '2001:db8::9'}",
            "default/p",
            EndpointKind.POD,
            (ip("2001:db8::9"),),
            None,
        ),
        # hostNetwork: a host endpoint (its node unknown here, so no addresses)
        (
            "metadata: {name: p, namespace: x}\nspec: {hostNetwork: true, nodeName: n9}",
            "x/p",
            EndpointKind.HOST,
            (),
            "n9",
        ),
        # `kubectl get -o yaml` nulls and empty objects; nulls a template engine leaves
        (
            "metadata: {name: p, creationTimestamp: null, labels: null}\n"
            "spec: {containers: null, nodeSelector: null, securityContext: {}}\nstatus: {}",
            "default/p",
            EndpointKind.POD,
            (),
            None,
        ),
    ],
)
def test_pod_defaults(
    text: str, key: str, kind: EndpointKind, ips: tuple[IPAddress, ...], node: str | None
) -> None:
    endpoint = pod(text + "\n")
    assert (endpoint.key, endpoint.kind, endpoint.ips, endpoint.node) == (key, kind, ips, node)
    assert (endpoint.service_account, endpoint.workload, endpoint.labels) == ("default", None, {})


@pytest.mark.parametrize(
    ("labels", "owners", "workload"),
    [
        ({"pod-template-hash": "5d8f9c"}, ["ReplicaSet/web-5d8f9c"], "Deployment/web"),
        ({"pod-template-hash": "5d8f9c"}, ["ReplicaSet/web-other"], "ReplicaSet/web-other"),
        ({}, ["ReplicaSet/web-5d8f9c"], "ReplicaSet/web-5d8f9c"),
        ({}, ["StatefulSet/db"], "StatefulSet/db"),
        ({}, ["Job/report-28571234"], "Job/report-28571234"),
        ({}, ["Node/n1"], "Node/n1"),  # a static pod's mirror
        ({}, ["ConfigMap/c?", "DaemonSet/agent"], "DaemonSet/agent"),
        ({}, ["ReplicaSet/orphaned?"], None),  # `?`: not the controller
        ({}, [], None),
    ],
)
def test_pod_owner(labels: dict[str, str], owners: list[str], workload: str | None) -> None:
    refs = [
        {
            "apiVersion": "v1",
            "kind": owner.split("/")[0],
            "name": owner.split("/")[1].strip("?"),
            "uid": "u",
            "controller": not owner.endswith("?"),
        }
        for owner in owners
    ]
    metadata = {"name": "p", "labels": labels, "ownerReferences": refs}
    assert pod(f"metadata: {metadata}\n").workload == workload


# --- workloads ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "selector", "replicas"),
    [
        ("web", "Deployment", label("app", "web"), 3),
        ("paused", "Deployment", label("app", "paused"), 0),
        ("db", "StatefulSet", In("app", frozenset({"db"})), 2),
        ("cache", "ReplicaSet", label("app", "cache"), 1),
        ("agent", "DaemonSet", label("app", "agent"), None),
        ("legacy", "ReplicationController", label("app", "legacy"), 2),
        # no selector: the template's labels stand in for the one the API server generates
        ("unselected", "ReplicationController", label("app", "unselected"), 1),
        ("migrate", "Job", label("app", "migrate"), 2),  # parallelism 3, but 2 completions
        ("crunch", "Job", label("batch.kubernetes.io/controller-uid", "8d3c2b1a"), 2),
        ("report", "CronJob", label("app", "report"), 1),
    ],
)
def test_workload_kinds(name: str, kind: str, selector: Selector, replicas: int | None) -> None:
    read = read_workloads(WORKLOADS)[name]
    assert (read.kind, read.selector, read.replicas) == (kind, selector, replicas)
    assert read.namespace == ("default" if kind == "CronJob" else "apps")
    assert read.key == f"{kind}/{name}" and read.pod.workload == read.key
    assert read.source is not None and read.source.path == str(WORKLOADS)


def test_workload_pod_template() -> None:
    workloads = read_workloads(WORKLOADS)
    web, agent = workloads["web"], workloads["agent"]
    assert web.pod.labels == {"app": "web", "tier": "front"}
    assert web.pod.ports == (NamedPort("http", 8080, TCP),)
    assert (web.pod.kind, web.pod.service_account, web.node_selector) == (
        EndpointKind.POD,
        "web",
        {},
    )
    assert (agent.pod.kind, agent.pod.service_account, agent.node_selector) == (
        EndpointKind.HOST,
        "default",
        {"zone": "edge"},
    )
    assert web.source is not None and web.source.line == 2


# --- standing in for pods of workloads ---------------------------------------------------------


def nodes_ips(endpoint: Endpoint) -> tuple[IPAddress, ...]:
    return {"n1": (ip("10.0.0.1"), ip("fd00::1")), "n2": (ip("10.0.0.2"),)}[endpoint.node or ""]


@pytest.mark.parametrize(
    ("workload", "names", "nodes"),
    [
        ("Deployment/web", ["web-0", "web-1", "web-2"], [None] * 3),
        ("Deployment/paused", [], []),
        ("StatefulSet/db", ["db-0", "db-1"], [None, None]),
        ("ReplicaSet/cache", ["cache-0"], [None]),
        ("DaemonSet/agent", ["agent-n1"], ["n1"]),  # its nodeSelector wants zone=edge
        ("DaemonSet/logs", ["logs-n1", "logs-n2"], ["n1", "n2"]),
        ("ReplicationController/legacy", ["legacy-0", "legacy-1"], [None, None]),
        ("ReplicationController/unselected", ["unselected-0"], [None]),
        ("Job/migrate", ["migrate-0", "migrate-1"], [None, None]),
        ("Job/crunch", ["crunch-0", "crunch-1"], [None, None]),
        ("CronJob/report", ["report-0"], [None]),
    ],
)
def test_workload_pods_stand_in(workload: str, names: list[str], nodes: list[str | None]) -> None:
    state = load_paths([WORKLOADS, NODES]).cluster
    pods = [e for e in state.endpoints if e.workload == workload]
    assert [e.name for e in pods] == names
    assert [e.node for e in pods] == nodes
    template = read_workloads(WORKLOADS)[workload.split("/")[1]]
    for stand_in in pods:
        assert stand_in.namespace == template.namespace and stand_in.labels == template.pod.labels
        assert stand_in.ports == template.pod.ports and stand_in.source == template.source
        assert stand_in.ips == (() if stand_in.kind is EndpointKind.POD else nodes_ips(stand_in))


def test_daemonset_without_known_nodes_runs_one_pod() -> None:
    state = load_paths([WORKLOADS]).cluster
    assert [e.key for e in state.endpoints if e.workload == "DaemonSet/logs"] == ["apps/logs-0"]


DOCUMENTS = {
    "deployment": """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template: {metadata: {labels: {app: web}}}
""",
    "its replicaset": """\
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-5d8f9c
  namespace: shop
  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: u, controller: true}]
spec:
  selector: {matchLabels: {app: web, pod-template-hash: 5d8f9c}}
  template: {metadata: {labels: {app: web, pod-template-hash: 5d8f9c}}}
""",
    "its pod": """\
apiVersion: v1
kind: Pod
metadata: {name: web-5d8f9c-x2, namespace: shop, labels: {app: web, pod-template-hash: 5d8f9c}}
""",
    "a pod like it elsewhere": """\
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: other, labels: {app: web}}
""",
    "a pod named web-0": """\
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop}
""",
    "statefulset web": """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  template: {metadata: {labels: {app: db}}}
""",
    "cronjob": """\
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: shop}
spec:
  schedule: "@daily"
  jobTemplate: {spec: {template: {metadata: {labels: {app: report}}}}}
""",
    "its job": """\
apiVersion: batch/v1
kind: Job
metadata:
  name: report-28571234
  namespace: shop
  ownerReferences: [{apiVersion: batch/v1, kind: CronJob, name: report, uid: u, controller: true}]
spec:
  template: {metadata: {labels: {app: report}}}
""",
    "unlabelled job": "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j, namespace: shop}\n"
    "spec: {template: {}}\n",
    "its owned pod": """\
apiVersion: v1
kind: Pod
metadata:
  name: j-7xk2p
  namespace: shop
  ownerReferences: [{apiVersion: batch/v1, kind: Job, name: j, uid: u, controller: true}]
""",
}


@pytest.mark.parametrize(
    ("documents", "keys"),
    [
        (["deployment"], ["shop/web-0", "shop/web-1"]),
        # a given pod matching the selector stands for all the workload's pods...
        (["deployment", "its pod"], ["shop/web-5d8f9c-x2"]),
        # ... but only in the workload's namespace
        (["deployment", "a pod like it elsewhere"], ["other/web-1", "shop/web-0", "shop/web-1"]),
        # a Deployment's ReplicaSet is not stood in for a second time
        (["its replicaset", "deployment"], ["shop/web-0", "shop/web-1"]),
        (["its replicaset", "deployment", "its pod"], ["shop/web-5d8f9c-x2"]),
        # a ReplicaSet without its Deployment is
        (["its replicaset"], ["shop/web-5d8f9c-0"]),
        # a CronJob's Job is left to the CronJob
        (["cronjob", "its job"], ["shop/report-0"]),
        (["its job"], ["shop/report-28571234-0"]),
        # a pod that names the workload as owner is its pod, whatever the selector says
        (["unlabelled job", "its owned pod"], ["shop/j-7xk2p"]),
        (["unlabelled job"], ["shop/j-0"]),
        # a taken name gets the kind
        (
            ["a pod named web-0", "deployment"],
            ["shop/web-0", "shop/web-deployment-0", "shop/web-1"],
        ),
        (["deployment", "statefulset web"], ["shop/web-0", "shop/web-1", "shop/web-statefulset-0"]),
    ],
)
def test_given_pods_are_not_stood_in_for(documents: list[str], keys: list[str]) -> None:
    state = cluster("---\n".join(DOCUMENTS[name] for name in documents))
    assert [e.key for e in state.endpoints] == keys


def test_workload_without_template_labels_or_selector_selects_no_pod() -> None:
    (document,) = read_text(DOCUMENTS["unlabelled job"], "job.yaml")
    (job,) = READERS["batch", "Job"](document)
    assert isinstance(job, Workload) and job.selector == Nothing()


def test_duplicate_workloads_are_rejected() -> None:
    with pytest.raises(InputError) as caught:
        cluster(DOCUMENTS["deployment"] + "---\n" + DOCUMENTS["deployment"])
    message = "inv.yaml:9: duplicate Deployment shop/web (first defined at inv.yaml:1)"
    assert str(caught.value) == message


def test_stand_ins_name_their_workload_as_real_pods_do() -> None:
    state = cluster(DOCUMENTS["its replicaset"])
    assert [e.workload for e in state.endpoints] == ["Deployment/web"]


def test_host_network_pods_get_their_node_addresses() -> None:
    state = cluster(
        NODES.read_text()
        + """\
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: kube-system}
spec: {hostNetwork: true, nodeName: n1}
---
apiVersion: v1
kind: Pod
metadata: {name: printed, namespace: kube-system}
spec: {hostNetwork: true, nodeName: n1}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: kube-system}
spec: {nodeName: n2}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: proxy, namespace: kube-system}
spec:
  selector: {matchLabels: {app: proxy}}
  template:
    metadata: {labels: {app: proxy}}
    spec: {hostNetwork: true}
"""
    )
    assert {e.name: (e.kind, e.ips) for e in state.endpoints} == {
        "agent": (EndpointKind.HOST, (ip("10.0.0.1"), ip("fd00::1"))),
        "printed": (EndpointKind.HOST, (ip("10.0.0.1"),)),  # as kubectl printed it
        "plain": (EndpointKind.POD, ()),  # a pod on the pod network has its own address
        "proxy-n1": (EndpointKind.HOST, (ip("10.0.0.1"), ip("fd00::1"))),
        "proxy-n2": (EndpointKind.HOST, (ip("10.0.0.2"),)),
    }
    assert state.endpoint("10.0.0.2") == state.endpoints_by_key["kube-system/proxy-n2"]


# --- files: multi-document YAML, JSON, kubectl lists, directories ------------------------------


def test_multi_document_manifests() -> None:
    path = FIXTURES / "manifests.yaml"
    result = load_paths([path])
    assert [(s.kind, s.location.line) for s in result.skipped] == [("ConfigMap", 51)]
    state = result.cluster
    assert [ns.name for ns in state.namespaces] == ["shop"]
    assert [(e.key, e.workload) for e in state.endpoints] == [
        ("shop/debug", None),
        ("shop/frontend-0", "Deployment/frontend"),
        ("shop/frontend-1", "Deployment/frontend"),
    ]
    frontend = state.endpoints_by_key["shop/frontend-0"]
    # the restartable init container's port counts, the plain init container's does not
    assert frontend.ports == (NamedPort("http", 8080, TCP), NamedPort("envoy-admin", 9901, TCP))
    assert frontend.labels == {"app": "frontend", "tier": "web"}
    assert frontend.service_account == "frontend"
    assert frontend.source is not None
    assert (frontend.source.path, frontend.source.line) == (str(path), 9)
    assert state.endpoints_by_key["shop/debug"].ips == (ip("10.244.1.9"),)


def test_json_list() -> None:
    path = FIXTURES / "kubectl-get.json"
    (cache,) = load_paths([path]).cluster.endpoints
    assert cache.key == "shop/cache" and cache.node == "kind-worker"
    assert cache.ips == (ip("10.244.1.20"), ip("fd00:10:244:1::14"))
    assert cache.ports == (NamedPort("redis", 6379, TCP),)
    assert cache.source is not None and (cache.source.path, cache.source.line) == (str(path), 4)


def test_kubectl_get_pods_nodes_namespaces_list() -> None:
    result = load_paths([FIXTURES / "kubectl-get-pods-nodes-ns.yaml"])
    assert result.skipped == ()
    state = result.cluster
    assert [ns.name for ns in state.namespaces] == ["default", "kube-system", "shop"]
    assert state.namespace_labels["shop"] == {
        "kubernetes.io/metadata.name": "shop",
        "projectcalico.org/name": "shop",
        "team": "shop",
    }
    assert [(n.name, n.ips) for n in state.nodes] == [
        ("kind-control-plane", (ip("172.18.0.2"), ip("fc00:f853:ccd:e793::2"))),
        ("kind-worker", (ip("172.18.0.3"),)),  # its ExternalIP is not its own address
    ]
    coredns, proxy, db = state.endpoints
    assert coredns.key == "kube-system/coredns-7db6d8ff4d-8kx2p"
    assert (coredns.workload, coredns.node) == ("Deployment/coredns", "kind-control-plane")
    assert coredns.ips == (ip("10.244.0.3"), ip("fd00:10:244::3"))
    assert coredns.ports == (
        NamedPort("dns", 53, UDP),
        NamedPort("dns-tcp", 53, TCP),
        NamedPort("metrics", 9153, TCP),
    )
    assert coredns.service_account == "coredns"
    assert (proxy.kind, proxy.workload) == (EndpointKind.HOST, "DaemonSet/kube-proxy")
    assert proxy.ips == (ip("172.18.0.3"),)
    assert (db.key, db.workload, db.ips) == ("shop/db-0", "StatefulSet/db", ())  # Pending
    assert db.source is not None and db.source.line == 181


def test_directory_of_files() -> None:
    result = load_paths([FIXTURES / "repo"])  # its README.md is not read
    assert result.skipped == ()
    state = result.cluster
    assert [ns.name for ns in state.namespaces] == ["monitoring"]
    assert [n.name for n in state.nodes] == ["linux-1", "windows-1"]
    assert [(e.key, e.node, e.workload) for e in state.endpoints] == [
        # a DaemonSet for Linux nodes only, known from nodes.json read after it
        ("monitoring/node-exporter-linux-1", "linux-1", "DaemonSet/node-exporter"),
        ("monitoring/prometheus-0", None, "StatefulSet/prometheus"),
        ("monitoring/prometheus-1", None, "StatefulSet/prometheus"),
        ("monitoring/compact-0", None, "CronJob/compact"),
    ]
    exporter = state.endpoints[0]
    assert exporter.kind is EndpointKind.HOST and exporter.ips == (ip("192.168.10.11"),)
    assert exporter.source is not None
    assert exporter.source.path == str(FIXTURES / "repo" / "apps" / "node-exporter.yaml")


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "line", "message"),
    [
        ("bad-pod-ip.yaml", 11, "Pod shop/web: status.podIP: invalid IP address '10.0.0.300'"),
        ("bad-pod-ip.json", 9, "Pod shop/web: status.podIPs[1].ip: invalid IP address 'fd00::zz'"),
        (
            "port-out-of-range.yaml",
            18,
            "Deployment shop/web: spec.template.spec.containers[0]"
            ".ports[0].containerPort: Input should be less than or equal to 65535",
        ),
        (
            "protocol-icmp.yaml",
            12,
            "Pod pinger: spec.containers[0].ports[0].protocol: "
            "Input should be 'TCP', 'UDP' or 'SCTP'",
        ),
        (
            "labels-list.yaml",
            12,
            "Pod shop/web: metadata.labels: Input should be a valid dictionary",
        ),
        (
            "bad-node-ip.yaml",
            13,
            "Node worker-1: status.addresses[1].address: invalid IP address '10.0.0.1/24'",
        ),
        (
            "selector-mismatch.yaml",
            11,
            "CronJob shop/report: spec.jobTemplate.spec.selector: "
            "selector does not match the template's labels",
        ),
    ],
)
def test_errors_are_located_in_files(name: str, line: int, message: str) -> None:
    path = FIXTURES / "errors" / name
    with pytest.raises(InputError) as caught:
        load_paths([path])
    assert str(caught.value) == f"{path}:{line}: {message}"


POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"
DEPLOYMENT = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            POD + "  containers:\n  - ports: [{containerPort: 0}]\n",
            6,
            "Pod p: spec.containers[0].ports[0].containerPort: Input should be greater than or equal",
        ),
        (
            POD + "  containers:\n  - ports: [{name: HTTP_1, containerPort: 80}]\n",
            6,
            "Pod p: spec.containers[0].ports[0].name: invalid port name 'HTTP_1'",
        ),
        (POD + "  hostNetwork: 'yes'\n", 5, "Pod p: spec.hostNetwork: Input should be a valid"),
        (
            POD + "  initContainers:\n  - {name: i, restartPolicy: Never}\n",
            6,
            "Pod p: spec.initContainers[0].restartPolicy: Input should be 'Always'",
        ),
        # a label written without a value is an error, not dropped
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    app:\n",
            6,
            "Pod p: metadata.labels.app: Input should be a valid string",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {namespace: x}\n",
            3,
            "Pod: metadata.name: Field required",
        ),
        (
            DEPLOYMENT + "  selector: {}\n  template: {}\n",
            5,
            "Deployment d: spec.selector: empty selector is invalid",
        ),
        (
            DEPLOYMENT + "  replicas: -1\n",
            5,
            "Deployment d: spec.replicas: Input should be greater than or equal to 0",
        ),
        (
            DEPLOYMENT + "  selector: {matchLabels: {a: b}}\n",
            5,
            "Deployment d: spec.template: Field required",
        ),
        (
            DEPLOYMENT + "  selector: {matchLabels: {a: b}}\n  template: {metadata: {}}\n",
            5,
            "Deployment d: spec.selector: selector does not match the template's labels",
        ),
        (
            "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: r}\nspec:\n"
            "  selector: {a: b}\n  template: {}\n",
            5,
            "ReplicationController r: spec.selector: ",
        ),
    ],
)
def test_errors_are_located(text: str, line: int, message: str) -> None:
    with pytest.raises(InputError) as caught:
        load_text(text, "bad.yaml")
    assert str(caught.value).startswith(f"bad.yaml:{line}: {message}"), str(caught.value)
