"""Read YAML/JSON files into documents that remember where every field was written.

PyYAML composes a node tree with line marks; we keep it beside the plain Python data so that any
error found later (by pydantic or by a reader) can be turned into `file:line` through the
field's path, e.g. `("spec", "ingress", 0, "ports", 1, "port")`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from netwarden.errors import InputError
from netwarden.model import Location

SUFFIXES = (".yaml", ".yml", ".json")
FieldPath = Sequence[str | int]

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Document:
    """One manifest: its data, its YAML node (for locations) and the file it came from."""

    data: Any
    node: yaml.Node
    path: str

    def location(self, field_path: FieldPath = ()) -> Location:
        """The location of the deepest part of `field_path` that exists in the document."""
        return Location(self.path, line_of(self.node, field_path))

    def child(self, index: int) -> Document:
        """The `index`-th item of a list document (the items of a `kind: List`)."""
        item_node = _item(self.node, "items")
        assert isinstance(item_node, yaml.SequenceNode)
        return Document(self.data["items"][index], item_node.value[index], self.path)


def _item(node: yaml.Node, key: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(key, str):
        for key_node, value_node in node.value:
            if key_node.value == key:
                found: yaml.Node = value_node
                return found
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        item: yaml.Node = node.value[key]
        return item
    return None


def line_of(node: yaml.Node, field_path: FieldPath) -> int:
    """1-based line of the deepest node along `field_path`; unknown steps are skipped (pydantic
    adds union-member names such as `int` to its error paths)."""
    for key in field_path:
        found = _item(node, key)
        if found is not None:
            node = found
    return int(node.start_mark.line) + 1


def read_text(text: str, path: str) -> list[Document]:
    """Parse one file's text (YAML, multi-document, or JSON) into documents; empty ones drop."""
    constructor = SafeConstructor()
    documents = []
    try:
        for node in yaml.compose_all(text, Loader=_Loader):
            if node is None:
                continue
            data = constructor.construct_document(node)
            if data is not None:
                documents.append(Document(data, node, path))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = error.problem or error.context or "invalid YAML"
        raise InputError(Location(path, line), f"invalid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise InputError(Location(path), f"invalid YAML: {error}") from None
    return documents


def expand_paths(paths: Sequence[str | Path]) -> Iterator[Path]:
    """Files as given, and directories walked in name order for YAML/JSON files."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        elif path.is_file() or str(raw) == "-":
            yield path
        else:
            raise InputError(Location(str(raw)), "no such file or directory")


def read_paths(paths: Sequence[str | Path]) -> list[Document]:
    """All documents of all files under `paths` (`-` reads standard input)."""
    documents: list[Document] = []
    for path in expand_paths(paths):
        if str(path) == "-":
            import sys

            documents.extend(read_text(sys.stdin.read(), "<stdin>"))
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(Location(str(path)), f"cannot read: {error}") from None
        documents.extend(read_text(text, str(path)))
    return documents
