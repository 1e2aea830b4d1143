"""The inventory back out as Kubernetes objects (Namespaces, Nodes, Pods), the inverse of
`k8s_inventory`: records for netwarden to read back beside the policies, not deployable pods.
"""

from __future__ import annotations

from netwarden.dialects.writer_common import Inexpressible, Manifest, writing
from netwarden.model import PORTED_PROTOCOLS, ClusterState, Endpoint, EndpointKind, protocol_name

# Labels the Namespace reader adds itself (the API server, and Calico, set them from the name).
_IMPLIED_NAMESPACE_LABELS = ("kubernetes.io/metadata.name", "projectcalico.org/name")


def write_inventory(cluster: ClusterState) -> list[Manifest]:
    """Namespaces, Nodes and Pods (labels, addresses, named ports, hostNetwork, node, service
    account): records for netwarden to read back, not deployable pods (the model keeps no
    images). Calico host endpoints raise WriteError; the Calico target writes them."""
    documents = [_namespace(namespace.name, namespace.labels) for namespace in cluster.namespaces]
    for node in cluster.nodes:
        addresses = [{"type": "InternalIP", "address": str(ip)} for ip in node.ips]
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": node.name, "labels": dict(node.labels)},
                "status": {"addresses": addresses},
            }
        )
    for endpoint in cluster.endpoints:
        resource = f"{endpoint.kind.value} {endpoint.key}"
        with writing(endpoint.source, resource, "Kubernetes"):
            if endpoint.kind not in (EndpointKind.POD, EndpointKind.HOST):
                raise Inexpressible("not a pod (host endpoints are Calico resources)")
            documents.append(_pod(endpoint.name, endpoint.namespace or "default", endpoint))
    return documents


# The owner a pod names (its workload) as an ownerReference: the reader takes kind and name.
_WORKLOAD_APIS = {"Job": "batch/v1", "CronJob": "batch/v1", "ReplicationController": "v1"}


def _namespace(name: str, labels: dict[str, str]) -> Manifest:
    kept = {
        key: value
        for key, value in labels.items()
        if not (key in _IMPLIED_NAMESPACE_LABELS and value == name)
    }
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": kept}}


def _pod(name: str, namespace: str, endpoint: Endpoint) -> Manifest:
    ports = []
    for declared in endpoint.ports:
        if declared.protocol not in PORTED_PROTOCOLS:
            raise Inexpressible(f"named port {declared.name} of protocol {declared.protocol}")
        ports.append(
            {
                "name": declared.name,
                "containerPort": declared.port,
                "protocol": protocol_name(declared.protocol),
            }
        )
    container: Manifest = {"name": "main"}
    if ports:
        container["ports"] = ports
    spec: Manifest = {"containers": [container]}
    if endpoint.kind is EndpointKind.HOST:
        spec["hostNetwork"] = True
    if endpoint.node:
        spec["nodeName"] = endpoint.node
    if endpoint.service_account and endpoint.service_account != "default":
        spec["serviceAccountName"] = endpoint.service_account
    metadata: Manifest = {"name": name, "namespace": namespace, "labels": dict(endpoint.labels)}
    if endpoint.workload:
        kind, _, owner = endpoint.workload.partition("/")
        api_version = _WORKLOAD_APIS.get(kind, "apps/v1")
        reference = {"apiVersion": api_version, "kind": kind, "name": owner, "controller": True}
        metadata["ownerReferences"] = [reference]
    pod: Manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
    if endpoint.ips:
        ips = [str(ip) for ip in endpoint.ips]
        pod["status"] = {"podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips]}
    return pod
