"""Files -> documents -> model parts -> one ClusterState, with every skipped input reported."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from netwarden.dialects.k8s_inventory import Workload, finish_inventory
from netwarden.dialects.k8s_services import BackendRecord, ServiceRecord, resolve_services
from netwarden.dialects.notice import Notice
from netwarden.dialects.registry import READERS
from netwarden.dialects.source import Document, read_paths, read_text
from netwarden.dialects.validation import fail, resource_name
from netwarden.dialects.yaml_fast import garbage_collection_paused
from netwarden.errors import InputError
from netwarden.model import (
    BUILTIN_TIERS,
    Action,
    ClusterState,
    Endpoint,
    Location,
    Namespace,
    NetworkSet,
    Node,
    Policy,
    Profile,
    Rule,
    ServiceAccount,
    Tier,
)


@dataclass(frozen=True)
class Skipped:
    """An input document no reader handles: reported to the user, never silently dropped."""

    location: Location
    api_version: str
    kind: str

    def __str__(self) -> str:
        return (
            f"{self.location}: skipped {self.kind} ({self.api_version}): not a kind netwarden reads"
        )


@dataclass(frozen=True)
class LoadResult:
    cluster: ClusterState
    skipped: tuple[Skipped, ...]
    notices: tuple[Notice, ...] = ()


def api_group(api_version: str) -> str:
    """`networking.k8s.io/v1` -> `networking.k8s.io`; the core group `v1` -> ``."""
    return api_version.rpartition("/")[0]


def _flatten(documents: Iterable[Document]) -> Iterable[Document]:
    """Expand `kind: List` (and `*List`) documents, as `kubectl get -o yaml` prints them."""
    for document in documents:
        data = document.data
        if not isinstance(data, dict):
            raise InputError(document.location(), "expected a Kubernetes object (a mapping)")
        kind = data.get("kind")
        if not isinstance(kind, str) or not kind:
            fail(document, ("kind",), "missing or invalid kind")
        if not isinstance(data.get("apiVersion"), str):
            fail(document, ("apiVersion",), "missing or invalid apiVersion")
        if kind.endswith("List") and "items" in data:
            if not isinstance(data["items"], list):
                fail(document, ("items",), "items must be a list")
            yield from _flatten(document.child(i) for i in range(len(data["items"])))
        else:
            yield document


def load_documents(documents: Iterable[Document]) -> LoadResult:
    """Read every document; unknown kinds are skipped and reported, errors raise InputError."""
    # Validation and model building allocate as much as parsing and make no cycles to find.
    with garbage_collection_paused():
        return _load_documents(documents)


def _load_documents(documents: Iterable[Document]) -> LoadResult:
    parts: list[object] = []
    skipped: list[Skipped] = []
    for document in _flatten(documents):
        api_version, kind = document.data["apiVersion"], document.data["kind"]
        reader = READERS.get((api_group(api_version), kind))
        if reader is None:
            skipped.append(Skipped(document.location(), api_version, kind))
            continue
        parts.extend(reader(document))
    notices = tuple(part for part in parts if isinstance(part, Notice))
    return LoadResult(assemble(parts), tuple(skipped), notices)


def assemble(parts: Sequence[object]) -> ClusterState:
    """Sort parts by type, reject duplicates, expand workloads that have no pods given, resolve
    Services to their endpoints, and check that every policy's tier exists."""
    namespaces = _unique([p for p in parts if isinstance(p, Namespace)], lambda n: n.name)
    nodes = _unique([p for p in parts if isinstance(p, Node)], lambda n: n.name)
    pods = [p for p in parts if isinstance(p, Endpoint)]
    workloads = [p for p in parts if isinstance(p, Workload)]
    pods = _unique(finish_inventory(workloads, pods, nodes), lambda e: e.key)
    # A staged policy stages the policy of the same kind and key: both may be given.
    policies = _unique([p for p in parts if isinstance(p, Policy)], _policy_key)
    # A tier written in the input replaces the built-in tier of the same name.
    tiers = {tier.name: tier for tier in BUILTIN_TIERS}
    tiers.update({t.name: t for t in _unique([p for p in parts if isinstance(p, Tier)], _name)})
    for policy in policies:
        if policy.tier not in tiers:
            message = f"{policy.kind} {policy.key}: tier {policy.tier!r} is not defined by a Tier"
            raise InputError(policy.source, message)
    network_sets = _unique([p for p in parts if isinstance(p, NetworkSet)], _network_set_key)
    accounts = _unique(
        [p for p in parts if isinstance(p, ServiceAccount)],
        lambda a: f"ServiceAccount {a.namespace}/{a.name}",
    )
    services = resolve_services(
        _unique([p for p in parts if isinstance(p, ServiceRecord)], lambda s: f"Service {s.key}"),
        _unique([p for p in parts if isinstance(p, BackendRecord)], lambda b: b.key),
        pods,
    )
    profiles = _unique([p for p in parts if isinstance(p, Profile)], lambda p: f"Profile {p.name}")
    if DEFAULT_ALLOW.name not in {p.name for p in profiles} and any(
        DEFAULT_ALLOW.name in endpoint.profiles for endpoint in pods
    ):
        profiles.append(DEFAULT_ALLOW)
    return ClusterState(
        tuple(namespaces),
        tuple(nodes),
        tuple(pods),
        tuple(policies),
        tuple(tiers.values()),
        network_sets=tuple(network_sets),
        service_accounts=tuple(accounts),
        services=tuple(services),
        profiles=tuple(profiles),
    )


#: The profile Calico always provides; auto host endpoints use it to allow what no policy
#: decides.
DEFAULT_ALLOW = Profile(
    "projectcalico-default-allow", ingress=(Rule(Action.ALLOW),), egress=(Rule(Action.ALLOW),)
)


def _policy_key(policy: Policy) -> str:
    return f"{'staged ' if policy.staged else ''}{policy.kind} {policy.key}"


def _network_set_key(network_set: NetworkSet) -> str:
    kind = "NetworkSet" if network_set.namespace else "GlobalNetworkSet"
    return f"{kind} {network_set.key}"


def _name(tier: Tier) -> str:
    return tier.name


T = TypeVar("T")


def _unique(items: Sequence[T], key: Callable[[T], str]) -> list[T]:
    seen: dict[str, T] = {}
    for item in items:
        name = key(item)
        if name in seen:
            first = getattr(seen[name], "source", None)
            where = getattr(item, "source", None)
            raise InputError(where, f"duplicate {name} (first defined at {first})")
        seen[name] = item
    return list(seen.values())


def load_paths(paths: Sequence[str | Path]) -> LoadResult:
    """Read files and directories (`-f` arguments) into a cluster."""
    with garbage_collection_paused():
        return load_documents(read_paths(paths))


def load_text(text: str, path: str = "<text>") -> LoadResult:
    """Read manifests from a string (tests, standard input)."""
    with garbage_collection_paused():
        return load_documents(read_text(text, path))


__all__ = [
    "LoadResult",
    "Notice",
    "Skipped",
    "load_documents",
    "load_paths",
    "load_text",
    "resource_name",
]
