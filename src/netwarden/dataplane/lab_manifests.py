"""Which ports each pod serves in the lab, read from the manifests.

The model keeps only *named* container ports (the ones policies can refer to), but a pod serves
every port it declares, and some it does not declare at all. The lab serves, per pod:

- every `containerPort` of its containers (and restartable init containers), named or not;
- every port listed in the annotation `lab.netwarden.io/ports: "8080/TCP,5353/UDP"`, on the pod
  or on its workload's pod template: ports a container serves without declaring them, which no
  named port can match (the `declared: false` ports of the conformance cases).

This reads Kubernetes shapes, which belong in `dialects/`; it lives here until the model's
`Endpoint` carries served ports (then `k8s_inventory` reads both and this module goes). It runs
after `load_documents` has validated the same documents, so only the annotation is checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from netwarden.dataplane.lab_topology import ServedPort, parse_ports
from netwarden.dialects.source import Document
from netwarden.dialects.validation import fail
from netwarden.errors import LabError
from netwarden.model import ClusterState, parse_protocol

LAB_PORTS_ANNOTATION = "lab.netwarden.io/ports"
_TEMPLATE_PATHS: Mapping[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def served_ports(
    documents: Iterable[Document], cluster: ClusterState
) -> dict[str, tuple[ServedPort, ...]]:
    """Endpoint key -> the ports the lab serves for it, for every pod the manifests describe."""
    pods: dict[str, set[ServedPort]] = {}
    templates: dict[tuple[str, str], set[ServedPort]] = {}
    for document in _flatten(documents):
        data = document.data
        if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict):
            continue
        meta, kind = data["metadata"], str(data.get("kind"))
        namespace = meta.get("namespace") or "default"
        if kind == "Pod":
            pods[f"{namespace}/{meta.get('name')}"] = _ports(document, ("metadata",), ("spec",))
        elif kind in _TEMPLATE_PATHS:
            path = _TEMPLATE_PATHS[kind]
            served = _ports(document, (*path, "metadata"), (*path, "spec"))
            templates[namespace, _workload(kind, meta)] = served
    found: dict[str, tuple[ServedPort, ...]] = {}
    for endpoint in cluster.endpoints:
        ports = pods.get(endpoint.key)
        if ports is None and endpoint.workload is not None:
            ports = templates.get((endpoint.namespace or "default", endpoint.workload))
        if ports is not None:
            found[endpoint.key] = tuple(sorted(ports))
    return found


def _flatten(documents: Iterable[Document]) -> Iterator[Document]:
    """The items of `kind: List` documents (`kubectl get -o yaml`), as the loader reads them."""
    for document in documents:
        data = document.data
        kind, items = (
            (data.get("kind"), data.get("items")) if isinstance(data, dict) else ("", None)
        )
        if str(kind).endswith("List") and isinstance(items, list):
            yield from _flatten(document.child(i) for i in range(len(items)))
        else:
            yield document


def _workload(kind: str, meta: dict[str, Any]) -> str:
    """The name stand-in pods carry: a Deployment's ReplicaSet's pods are the Deployment's."""
    for owner in meta.get("ownerReferences") or []:
        if kind == "ReplicaSet" and owner.get("controller") and owner.get("kind") == "Deployment":
            return f"Deployment/{owner.get('name')}"
    return f"{kind}/{meta.get('name')}"


def _ports(
    document: Document, meta_path: tuple[str, ...], spec_path: tuple[str, ...]
) -> set[ServedPort]:
    meta, spec = _get(document.data, meta_path), _get(document.data, spec_path)
    ports: set[ServedPort] = set()
    containers = list(spec.get("containers") or [])
    containers += [
        c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"
    ]
    for container in containers:
        for port in container.get("ports") or []:
            protocol = parse_protocol(port.get("protocol") or "TCP")
            ports.add(ServedPort(int(port["containerPort"]), protocol or 0))
    text = (meta.get("annotations") or {}).get(LAB_PORTS_ANNOTATION)
    if text is not None:
        try:
            ports.update(parse_ports(text))
        except LabError as error:
            fail(document, (*meta_path, "annotations", LAB_PORTS_ANNOTATION), str(error))
    return ports


def _get(data: Any, path: tuple[str, ...]) -> dict[str, Any]:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}
