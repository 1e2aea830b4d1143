"""Semantics cases as data: the shared network-policy-api conformance corpus and our own
re-creation of the Kubernetes e2e network policy tests, in one format (see
../shared/conformance/README.md). A case is turned into real Kubernetes manifests and read
through the real dialects, so these tests cover reading as well as deciding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from netwarden.dialects import load_text
from netwarden.model import ClusterState, Flow, parse_protocol

REPO = Path(__file__).resolve().parents[2]
CONFORMANCE = REPO.parent / "shared" / "conformance" / "network-policy-api"
K8S_E2E = Path(__file__).parent / "cases" / "k8s_e2e"
CALICO = Path(__file__).parent / "cases" / "calico"
SHARED_INVENTORY = "_cluster.yaml"  # merged into every case of its folder


@dataclass(frozen=True)
class Expectation:
    src: str
    dst: str
    port: int
    protocol: str
    allowed: bool
    staged: bool | None = None  # what the staged policy set decides, when the case has one

    def __str__(self) -> str:
        return f"{self.src} -> {self.dst} {self.port}/{self.protocol}"


@dataclass(frozen=True)
class Case:
    path: Path
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.stem

    def manifests(self) -> list[dict[str, Any]]:
        """The case as the Kubernetes objects a cluster would hold."""
        docs: list[dict[str, Any]] = []
        for name, spec in self.data.get("namespaces", {}).items():
            labels = (spec or {}).get("labels", {})
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": labels},
                }
            )
        for node in self.data.get("nodes", []) or []:
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": node["name"], "labels": node.get("labels", {})},
                    "status": {"addresses": [{"type": "InternalIP", "address": node["ip"]}]},
                }
            )
        for pod in self.data.get("pods", []):
            ports = []
            for port in pod.get("ports", []):
                if not port.get("declared", True):
                    continue  # served but not declared: no named port can match it
                declared = {"containerPort": port["port"], "protocol": port["protocol"]}
                if port.get("name"):
                    declared["name"] = port["name"]
                ports.append(declared)
            spec: dict[str, Any] = {
                "containers": [{"name": "main", "image": "agnhost", "ports": ports}]
            }
            if pod.get("hostNetwork"):
                spec["hostNetwork"] = True
            if pod.get("nodeName"):
                spec["nodeName"] = pod["nodeName"]
            if pod.get("serviceAccount"):
                spec["serviceAccountName"] = pod["serviceAccount"]
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": pod["name"],
                        "namespace": pod["namespace"],
                        "labels": pod.get("labels", {}),
                    },
                    "spec": spec,
                    "status": {"podIP": pod["ip"], "podIPs": [{"ip": pod["ip"]}]}
                    if pod.get("ip")
                    else {},
                }
            )
        return docs + list(self.data.get("resources", [])) + list(self.data.get("policies", []))

    def cluster(self) -> ClusterState:
        text = yaml.safe_dump_all(self.manifests(), sort_keys=False)
        result = load_text(text, str(self.path))
        assert not result.skipped, result.skipped
        return result.cluster

    def expectations(self) -> list[Expectation]:
        return [
            Expectation(
                row["from"],
                row["to"],
                int(row["port"]),
                row["protocol"],
                row["allowed"],
                row.get("staged"),
            )
            for row in self.data["expect"]
        ]


def flow_of(cluster: ClusterState, expectation: Expectation) -> Flow:
    src, dst = cluster.endpoint(expectation.src), cluster.endpoint(expectation.dst)
    assert src is not None and dst is not None, expectation
    protocol = parse_protocol(expectation.protocol)
    assert protocol is not None
    return Flow(src, dst, expectation.port, protocol)


def load_cases(folder: Path) -> list[Case]:
    """Every case file of a folder; a `_cluster.yaml` there is the shared inventory."""
    shared_path = folder / SHARED_INVENTORY
    shared = yaml.safe_load(shared_path.read_text()) if shared_path.exists() else {}
    return [
        Case(path, {**shared, **yaml.safe_load(path.read_text())})
        for path in sorted(folder.glob("*.yaml"))
        if path.name != SHARED_INVENTORY
    ]


def kubernetes_cases() -> list[Case]:
    """The upstream suites: Kubernetes and network-policy-api resources only."""
    return load_cases(CONFORMANCE) + load_cases(K8S_E2E)


def all_cases() -> list[Case]:
    return kubernetes_cases() + load_cases(CALICO)


def wrong_verdicts(case: Case, cluster: ClusterState) -> list[str]:
    """Every expectation of the case that the single-flow engine on `cluster` decides
    otherwise, enforced or staged, as readable lines."""
    from netwarden.engine import PolicyEngine

    engine = PolicyEngine(cluster)
    wrong = []
    for expectation in case.expectations():
        verdict = engine.decide(flow_of(cluster, expectation))
        if verdict.allowed != expectation.allowed:
            wrong.append(
                f"{expectation}: expected {'allow' if expectation.allowed else 'deny'}, "
                f"egress {verdict.egress.deciding}, ingress {verdict.ingress.deciding}"
            )
        staged = verdict.staged.allowed if verdict.staged is not None else None
        if expectation.staged is not None and staged != expectation.staged:
            wrong.append(
                f"{expectation}: staged set should {'allow' if expectation.staged else 'deny'}"
            )
    return wrong
