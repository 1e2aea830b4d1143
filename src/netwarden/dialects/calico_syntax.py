"""How Calico manifests spell what every Calico writer module needs: the `projectcalico.org/v3`
envelope, selector text (with the orchestrator clause that keeps a selector to pods),
protocols and port values.
"""

from __future__ import annotations

from typing import Any

from netwarden.dialects.calico_rules import PROTOCOL_NAMES, has_global
from netwarden.dialects.calico_selector import format_selector
from netwarden.dialects.writer_common import Inexpressible, Manifest
from netwarden.model import In, Selector

CALICO_API = "projectcalico.org/v3"
ORCHESTRATOR = In("projectcalico.org/orchestrator", frozenset({"k8s"}))


def calico_resource(kind: str, name: str, namespace: str | None = None, **meta: Any) -> Manifest:
    """A Calico object without its spec: apiVersion, kind and metadata."""
    metadata: Manifest = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata.update(meta)
    return {"apiVersion": CALICO_API, "kind": kind, "metadata": metadata}


def calico_selector(selector: Selector) -> str:
    """Calico's canonical text; Inexpressible for what its syntax cannot quote."""
    try:
        return format_selector(selector)
    except (TypeError, ValueError) as error:
        raise Inexpressible(str(error)) from None


def plain_selector(selector: Selector) -> str:
    """A selector where `global()` has no meaning."""
    if has_global(selector):
        raise Inexpressible("global() outside an entity rule's namespaceSelector")
    return calico_selector(selector)


def protocol_value(number: int) -> int | str:
    """A protocol by its Calico name when it has one, else its number."""
    return PROTOCOL_NAMES.get(number, number)


def port_value(start: int, end: int) -> int | str:
    """A numorstring.Port of numbers: one number, or `start:end`."""
    return start if start == end else f"{start}:{end}"
