"""Files -> documents -> model parts -> one ClusterState, with every skipped input reported."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from netwarden.dialects.k8s_inventory import Workload, finish_inventory
from netwarden.dialects.registry import READERS
from netwarden.dialects.source import Document, read_paths, read_text
from netwarden.dialects.validation import fail, resource_name
from netwarden.errors import InputError
from netwarden.model import (
    BUILTIN_TIERS,
    ClusterState,
    Endpoint,
    Location,
    Namespace,
    Node,
    Policy,
    Tier,
)


@dataclass(frozen=True)
class Skipped:
    """An input document no reader handles: reported to the user, never silently dropped."""

    location: Location
    api_version: str
    kind: str

    def __str__(self) -> str:
        return f"{self.location}: skipped {self.kind} ({self.api_version}): not a kind netwarden reads"


@dataclass(frozen=True)
class LoadResult:
    cluster: ClusterState
    skipped: tuple[Skipped, ...]


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
    parts: list[object] = []
    skipped: list[Skipped] = []
    for document in _flatten(documents):
        api_version, kind = document.data["apiVersion"], document.data["kind"]
        reader = READERS.get((api_group(api_version), kind))
        if reader is None:
            skipped.append(Skipped(document.location(), api_version, kind))
            continue
        parts.extend(reader(document))
    return LoadResult(assemble(parts), tuple(skipped))


def assemble(parts: Sequence[object]) -> ClusterState:
    """Sort parts by type, reject duplicates, expand workloads that have no pods given."""
    namespaces = _unique([p for p in parts if isinstance(p, Namespace)], lambda n: n.name)
    nodes = _unique([p for p in parts if isinstance(p, Node)], lambda n: n.name)
    pods = [p for p in parts if isinstance(p, Endpoint)]
    workloads = [p for p in parts if isinstance(p, Workload)]
    pods = _unique(finish_inventory(workloads, pods, nodes), lambda e: e.key)
    policies = _unique([p for p in parts if isinstance(p, Policy)], lambda p: f"{p.kind} {p.key}")
    # A tier written in the input replaces the built-in tier of the same name.
    tiers = {tier.name: tier for tier in BUILTIN_TIERS}
    tiers.update({t.name: t for t in _unique([p for p in parts if isinstance(p, Tier)], _name)})
    return ClusterState(
        tuple(namespaces), tuple(nodes), tuple(pods), tuple(policies), tuple(tiers.values())
    )


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
    return load_documents(read_paths(paths))


def load_text(text: str, path: str = "<text>") -> LoadResult:
    """Read manifests from a string (tests, standard input)."""
    return load_documents(read_text(text, path))


__all__ = ["LoadResult", "Skipped", "load_documents", "load_paths", "load_text", "resource_name"]
