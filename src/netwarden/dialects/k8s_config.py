"""Kubernetes `Secret` and `ConfigMap` manifests (v1), read for the values threat-feed headers
take from them (`valueFrom.secretKeyRef` / `configMapKeyRef`).

    Secret:    data {key: base64}, stringData {key: text} (stringData wins, as the API server
               merges it over data)
    ConfigMap: data {key: text}  (binaryData is not read: Calico reads `data` only)

Values are secrets: no diagnostic here ever repeats one, not even a malformed one; errors
name the key and what is wrong with it. Everything else about these objects is ignored.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

from netwarden.dialects.source import Document
from netwarden.dialects.threat_feed import OBJECT_KEY, OBJECT_NAME, expanded
from netwarden.dialects.validation import fail
from netwarden.model.feeds import KeyKind, KeyValues

_NAME = re.compile(OBJECT_NAME)
_KEY = re.compile(OBJECT_KEY)


def read_key_values(documents: Sequence[Document]) -> list[KeyValues]:
    """Every Secret and ConfigMap among `documents` (lists expanded); other kinds are ignored.
    The same kind, namespace and name twice is an error."""
    found: list[KeyValues] = []
    seen: dict[tuple[KeyKind, str | None, str], KeyValues] = {}
    for document in expanded(documents):
        data = document.data
        if str(data.get("apiVersion", "")) != "v1":
            continue
        kind = str(data.get("kind", ""))
        if kind not in (KeyKind.SECRET.value, KeyKind.CONFIG_MAP.value):
            continue
        item = _read(document, KeyKind(kind))
        key = (item.kind, item.namespace, item.name)
        if key in seen:
            first = seen[key].location
            fail(document, ("metadata", "name"), f"duplicate {kind} (first defined at {first})")
        seen[key] = item
        found.append(item)
    return found


def _read(document: Document, kind: KeyKind) -> KeyValues:
    data = document.data
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        fail(document, ("metadata",), "metadata must be a mapping with a name")
    name = metadata.get("name")
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 253:
        fail(document, ("metadata", "name"), f"invalid {kind.value} name {name!r}")
    namespace = metadata.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        fail(document, ("metadata", "namespace"), "namespace must be a string")
    values: dict[str, bytes] = {}
    if kind is KeyKind.SECRET:
        for key, value in _entries(document, "data").items():
            try:
                values[key] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                fail(document, ("data", key), "not valid base64 (the value is not shown)")
        for key, value in _entries(document, "stringData").items():
            values[key] = value.encode("utf-8")
    else:
        values = {key: value.encode("utf-8") for key, value in _entries(document, "data").items()}
    return KeyValues(kind, name, namespace, values, document.location())


def _entries(document: Document, field: str) -> dict[str, str]:
    """The string map at `field` (empty when absent), keys checked, values never shown."""
    raw: Any = document.data.get(field)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        fail(document, (field,), "must be a mapping of keys to strings")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _KEY.match(key) or key in (".", ".."):
            fail(document, (field,), f"invalid key {key!r}")
        if not isinstance(value, str):
            fail(document, (field, key), "the value must be a string (the value is not shown)")
        out[key] = value
    return out
