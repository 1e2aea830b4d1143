"""Kubernetes inventory: Namespace, Node, Pod, and the controllers that create pods.

Namespaces, nodes and pods map one to one onto the model. Workload controllers (Deployment,
StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob) are read into
`Workload`s; `finish_inventory` then stands in for the pods of each workload whose pods were not
given, so that a repository of manifests can be checked as if it were deployed.

Real pod names carry random suffixes; stand-ins are named deterministically: `<name>-<i>` for
i = 0, 1, ... (what a StatefulSet really does), `<name>-<node>` for a DaemonSet, and
`<name>-<kind>-<i>` (kind in lower case) when that name is already taken in the namespace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import ip_address
from typing import Annotated, Any, Generic, Literal, NamedTuple, TypeVar

from pydantic import Field, PlainValidator

from netwarden.dialects.k8s_common import ObjectMeta, PortName, PortNumber
from netwarden.dialects.k8s_labels import LabelSelector
from netwarden.dialects.source import Document
from netwarden.dialects.validation import Schema, fail, parse
from netwarden.errors import InputError
from netwarden.model import (
    All,
    Endpoint,
    EndpointKind,
    IPAddress,
    Location,
    NamedPort,
    Namespace,
    Node,
    Nothing,
    Selector,
    parse_protocol,
)

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
CALICO_NAME_LABEL = "projectcalico.org/name"
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"


def parse_ip(value: object) -> IPAddress:
    """An IPv4 or IPv6 address written as a string."""
    try:
        if isinstance(value, str):
            return ip_address(value)
    except ValueError:
        pass
    raise ValueError(f"invalid IP address {value!r}")


IP = Annotated[IPAddress, PlainValidator(parse_ip)]
Count = Annotated[int, Field(ge=0)]


class OwnerReference(Schema):
    kind: str
    name: str
    controller: bool = False


class Metadata(ObjectMeta):
    owner_references: list[OwnerReference] = Field(default_factory=list)

    def controller(self) -> str | None:
        """The managing controller as `Kind/name`, if any."""
        owners = [f"{o.kind}/{o.name}" for o in self.owner_references if o.controller]
        return owners[0] if owners else None


class ContainerPort(Schema):
    name: PortName | None = None
    container_port: PortNumber
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"


class Container(Schema):
    ports: list[ContainerPort] = Field(default_factory=list)
    restart_policy: Literal["Always"] | None = None  # init containers only


class PodSpec(Schema):
    # Factories, not `[]`: pydantic deep-copies a mutable default on every use.
    containers: list[Container] = Field(default_factory=list)
    init_containers: list[Container] = Field(default_factory=list)
    host_network: bool = False
    service_account_name: str = "default"
    node_selector: dict[str, str] = Field(default_factory=dict)
    node_name: str | None = None

    def endpoint(self, name: str, namespace: str, labels: dict[str, str], at: Location) -> Endpoint:
        """The pod this spec runs, as an endpoint without addresses or owner."""
        # Restartable init containers ("sidecars") run beside the main containers.
        sidecars = [c for c in self.init_containers if c.restart_policy == "Always"]
        return Endpoint(
            kind=EndpointKind.HOST if self.host_network else EndpointKind.POD,
            name=name,
            namespace=namespace,
            labels=dict(labels),
            ports=tuple(
                NamedPort(port.name, port.container_port, parse_protocol(port.protocol) or 0)
                for container in [*self.containers, *sidecars]
                for port in container.ports
                if port.name is not None  # policies can refer to named ports only
            ),
            node=self.node_name,
            service_account=self.service_account_name,
            source=at,
        )


class PodIP(Schema):
    ip: IP


class PodStatus(Schema):
    pod_ip: IP | None = Field(default=None, alias="podIP")
    pod_ips: list[PodIP] = Field(default_factory=list, alias="podIPs")


class Resource(Schema):
    metadata: Metadata


class Pod(Resource):
    spec: PodSpec = PodSpec()
    status: PodStatus = PodStatus()


class NodeAddress(Schema):
    type: str
    address: str


class NodeStatus(Schema):
    addresses: list[NodeAddress] = Field(default_factory=list)


class NodeObject(Resource):
    status: NodeStatus = NodeStatus()


class TemplateMetadata(Schema):
    labels: dict[str, str] = Field(default_factory=dict)


class PodTemplate(Schema):
    metadata: TemplateMetadata = TemplateMetadata()
    spec: PodSpec = PodSpec()


class Pods(NamedTuple):
    """What a controller's spec says about the pods it runs."""

    template: PodTemplate
    selector: LabelSelector | None  # None: the API server generates one unique to the workload
    running: int | None  # pods at once


class AppsSpec(Schema):
    replicas: Count = 1
    selector: LabelSelector
    template: PodTemplate

    def pods(self) -> Pods:
        return Pods(self.template, self.selector, self.replicas)


class ReplicationControllerSpec(Schema):
    replicas: Count = 1
    selector: dict[str, str] | None = None  # a plain map; absent means the template's labels
    template: PodTemplate

    def pods(self) -> Pods:
        selector = None if self.selector is None else LabelSelector(match_labels=self.selector)
        return Pods(self.template, selector, self.replicas)


class JobSpec(Schema):
    parallelism: Count = 1
    completions: Count | None = None
    selector: LabelSelector | None = None  # usually generated by the API server
    template: PodTemplate

    def pods(self) -> Pods:
        """`parallelism` pods, but never more than there are completions to go."""
        count = self.parallelism if self.completions is None else self.completions
        return Pods(self.template, self.selector, min(self.parallelism, count))


class JobTemplate(Schema):
    spec: JobSpec


class CronJobSpec(Schema):
    job_template: JobTemplate

    def pods(self) -> Pods:
        """One run of its job (`concurrencyPolicy: Allow` may overlap runs)."""
        return self.job_template.spec.pods()


SpecT = TypeVar("SpecT", bound=Schema)


class Controller(Resource, Generic[SpecT]):
    spec: SpecT


WORKLOADS: dict[tuple[str, str], type[Controller[Any]]] = {
    ("apps", "Deployment"): Controller[AppsSpec],
    ("apps", "StatefulSet"): Controller[AppsSpec],
    ("apps", "ReplicaSet"): Controller[AppsSpec],
    ("apps", "DaemonSet"): Controller[AppsSpec],
    ("", "ReplicationController"): Controller[ReplicationControllerSpec],
    ("batch", "Job"): Controller[JobSpec],
    ("batch", "CronJob"): Controller[CronJobSpec],
}

# The API server reads an explicit null as an absent field (`labels:` left empty by a template
# engine, `creationTimestamp: null` from kubectl), so nulls are dropped before validating; not
# inside string maps, where `app:` without a value is an error rather than silently dropped.
_STRING_MAPS = frozenset({"labels", "annotations", "matchLabels", "nodeSelector", "selector"})

SchemaT = TypeVar("SchemaT", bound=Schema)


def _without_nulls(data: Any, key: object = None) -> Any:
    if isinstance(data, dict) and key not in _STRING_MAPS:
        return {k: _without_nulls(v, k) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [_without_nulls(item) for item in data]
    return data


def _parse(document: Document, schema: type[SchemaT]) -> SchemaT:
    return parse(replace(document, data=_without_nulls(document.data)), schema)


def read_namespace(document: Document) -> list[Namespace]:
    meta = _parse(document, Resource).metadata
    # The API server always sets this label to the name, whatever the manifest says; Calico
    # lets namespace selectors name a namespace by its own label for the name too.
    labels = {**meta.labels, NAMESPACE_NAME_LABEL: meta.name, CALICO_NAME_LABEL: meta.name}
    return [Namespace(meta.name, labels, document.location())]


def read_node(document: Document) -> list[Node]:
    node = _parse(document, NodeObject)
    ips = []
    for i, address in enumerate(node.status.addresses):
        if address.type == "InternalIP":  # ExternalIP is NATed outside; Hostname is a name
            try:
                ips.append(parse_ip(address.address))
            except ValueError as error:
                fail(document, ("status", "addresses", i, "address"), str(error))
    meta = node.metadata
    return [Node(meta.name, dict(meta.labels), tuple(ips), document.location())]


def read_pod(document: Document) -> list[Endpoint]:
    pod = _parse(document, Pod)
    meta, status = pod.metadata, pod.status
    ips = [entry.ip for entry in status.pod_ips] or ([status.pod_ip] if status.pod_ip else [])
    namespace = meta.namespace or "default"
    endpoint = pod.spec.endpoint(meta.name, namespace, meta.labels, document.location())
    return [replace(endpoint, ips=tuple(ips), workload=_pod_owner(meta))]


def _pod_owner(meta: Metadata) -> str | None:
    """The pod's controller. A Deployment's ReplicaSet is named `<deployment>-<hash>` and its
    pods carry the hash as a label: that names the Deployment without the ReplicaSet at hand."""
    owner = meta.controller() or ""
    suffix = "-" + meta.labels.get(POD_TEMPLATE_HASH_LABEL, "")
    if owner.startswith("ReplicaSet/") and suffix != "-" and owner.endswith(suffix):
        return "Deployment/" + owner.removeprefix("ReplicaSet/").removesuffix(suffix)
    return owner or None


@dataclass(frozen=True)
class Workload:
    """A controller that creates pods: what it takes to stand in for pods not given."""

    kind: str
    name: str
    namespace: str
    selector: Selector
    replicas: int | None  # pods it runs at once; None for a DaemonSet (one per matching node)
    pod: Endpoint  # the pod template: labels, named ports, hostNetwork, service account
    node_selector: dict[str, str] = field(default_factory=dict, hash=False)
    owner: str | None = None  # its own controller, e.g. a ReplicaSet's "Deployment/web"
    source: Location | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


def read_workload(document: Document) -> list[Workload]:
    group, kind = document.data["apiVersion"].rpartition("/")[0], document.data["kind"]
    controller = _parse(document, WORKLOADS[group, kind])
    meta, pods = controller.metadata, controller.spec.pods()
    labels, namespace = pods.template.metadata.labels, meta.namespace or "default"
    path = ("spec", "jobTemplate", "spec") if kind == "CronJob" else ("spec",)
    if pods.selector is None:
        # The template's labels stand in for the generated selector; a template without labels
        # then selects no given pod (their ownerReferences still tie them to the workload).
        selector = LabelSelector(match_labels=labels).to_selector() if labels else Nothing()
    else:
        selector = pods.selector.to_selector()
        if group == "apps" and isinstance(selector, All):  # the API server's rule for apps/v1
            fail(document, (*path, "selector"), "empty selector is invalid")
        if not selector.matches(labels):
            fail(document, (*path, "selector"), "selector does not match the template's labels")
    owner = meta.controller()
    # Stand-ins are named as real pods are: a Deployment's ReplicaSet's by the Deployment.
    named = owner if kind == "ReplicaSet" and (owner or "").startswith("Deployment/") else None
    template = pods.template.spec.endpoint("", namespace, labels, document.location())
    return [
        Workload(
            kind=kind,
            name=meta.name,
            namespace=namespace,
            selector=selector,
            replicas=None if kind == "DaemonSet" else pods.running,
            pod=replace(template, workload=named or f"{kind}/{meta.name}"),
            node_selector=dict(pods.template.spec.node_selector),
            owner=owner,
            source=document.location(),
        )
    ]


def finish_inventory(
    workloads: Sequence[Workload], pods: Sequence[Endpoint], nodes: Sequence[Node]
) -> list[Endpoint]:
    """The given pods (hostNetwork ones without addresses get their node's), then stand-ins for
    the pods of each workload none of whose pods is given: in its namespace, matching its
    selector or naming it as owner. A workload whose own controller is also given (a
    Deployment's ReplicaSet, a CronJob's Job) is left to that one, so no pod is made twice."""
    nodes_by_name = {node.name: node for node in nodes}
    finished = [_with_node_ips(pod, nodes_by_name) for pod in pods]
    present: dict[tuple[str, str | None], Workload] = {}
    for workload in workloads:
        first = present.setdefault((workload.namespace, workload.key), workload)
        if first is not workload:
            what = f"{workload.kind} {workload.namespace}/{workload.name}"
            raise InputError(workload.source, f"duplicate {what} (first defined at {first.source})")
    by_namespace: dict[str | None, list[Endpoint]] = {}
    for pod in pods:
        by_namespace.setdefault(pod.namespace, []).append(pod)
    taken = {pod.key for pod in pods}
    for workload in workloads:
        mine = by_namespace.get(workload.namespace, [])
        given = any(p.workload == workload.key or workload.selector.matches(p.labels) for p in mine)
        if given or (workload.namespace, workload.owner) in present:
            continue
        for suffix, node in _placements(workload, nodes):
            name = f"{workload.name}-{suffix}"
            if f"{workload.namespace}/{name}" in taken:
                name = f"{workload.name}-{workload.kind.lower()}-{suffix}"
            taken.add(f"{workload.namespace}/{name}")
            stand_in = replace(workload.pod, name=name, node=node or workload.pod.node)
            finished.append(_with_node_ips(stand_in, nodes_by_name))
    return finished


def _placements(workload: Workload, nodes: Sequence[Node]) -> list[tuple[str, str | None]]:
    """(name suffix, node) of each pod the workload runs."""
    if workload.replicas is not None:
        return [(str(i), None) for i in range(workload.replicas)]
    if not nodes:  # with no node known, a DaemonSet still runs somewhere
        return [("0", None)]
    wanted = workload.node_selector.items()
    return [(n.name, n.name) for n in nodes if all(n.labels.get(k) == v for k, v in wanted)]


def _with_node_ips(pod: Endpoint, nodes: dict[str, Node]) -> Endpoint:
    """A hostNetwork pod has its node's addresses (kubectl output already shows them)."""
    node = nodes.get(pod.node or "")
    if pod.kind is not EndpointKind.HOST or pod.ips or node is None:
        return pod
    return replace(pod, ips=node.ips)


READERS: dict[tuple[str, str], Callable[[Document], Sequence[object]]] = {
    ("", "Namespace"): read_namespace,
    ("", "Node"): read_node,
    ("", "Pod"): read_pod,
    **{key: read_workload for key in WORKLOADS},
}
