"""Read YAML/JSON files into documents that remember where every field was written.

A document keeps its plain Python data and a way to its YAML node tree (with line marks), so
that any error found later (by pydantic or by a reader) can be turned into `file:line` through
the field's path, e.g. `("spec", "ingress", 0, "ports", 1, "port")`.

Node trees are not kept: holding a node and two marks per scalar for every document costs more
in garbage collection than the parse itself. Each document records the line where it starts
(and where each of its `items` starts), which is all most documents are ever asked; a deeper
path composes that one document again from its slice of the text, the first time it is asked.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from yaml.constructor import SafeConstructor

from netwarden.dialects.yaml_fast import FastSafeLoader, construct, garbage_collection_paused
from netwarden.errors import InputError
from netwarden.model import Location

SUFFIXES = (".yaml", ".yml", ".json")
FieldPath = Sequence[str | int]


class Tree(NamedTuple):
    """A composed node and the line its marks count from (a slice of the file starts late)."""

    node: yaml.Node
    line_offset: int = 0


class Span(NamedTuple):
    """Where a node was written: character indexes and the 0-based line and column of its start."""

    start: int
    end: int
    line: int
    column: int

    @classmethod
    def of(cls, node: yaml.Node) -> Span:
        start, end = node.start_mark, node.end_mark
        return cls(start.index, end.index, start.line, start.column)


class _Source:
    """One file's text, shared by its documents, composed again only when a line is asked."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.plain_tags: dict[str, str] = {}  # implicit tags memoised across the file's parses
        self._nodes: list[yaml.Node] | None = None

    def compose_slice(self, span: Span, blank_prefix: bool) -> Tree | None:
        """The node written at `span`, composed from the text of its lines alone; None when the
        slice does not compose to the same node (directives, aliases, odd layouts)."""
        line_start = span.start - span.column
        prefix = self.text[line_start : span.start]
        if blank_prefix:  # a sequence item's `- ` would make the slice a sequence
            prefix = " " * len(prefix)
        try:
            text = prefix + self.text[span.start : span.end]
            node = FastSafeLoader(text, self.plain_tags).compose_one()
        except yaml.YAMLError:
            return None
        if node is None:
            return None
        found = Span.of(node)
        if (found.start + line_start, found.end + line_start) != (span.start, span.end):
            return None
        return Tree(node, span.line)

    def composed(self, ordinal: int) -> yaml.Node:
        """The `ordinal`-th node of the whole file (the slow, always right way)."""
        if self._nodes is None:
            loader = FastSafeLoader(self.text, self.plain_tags)
            try:
                self._nodes = []
                while loader.check_node():
                    self._nodes.append(loader.get_node())
            finally:
                loader.dispose()
        return self._nodes[ordinal]


class LazyNode:
    """The YAML node of a document or of a `kind: List` item, composed on first use."""

    __slots__ = ("_index", "_items", "_ordinal", "_parent", "_rebuilt", "_source", "_span", "_tree")

    def __init__(
        self,
        source: _Source,
        span: Span | None,
        *,
        ordinal: int = -1,
        rebuilt: bool = False,
        parent: LazyNode | None = None,
        index: int = -1,
        items: tuple[Span, ...] = (),
    ) -> None:
        self._source, self._span, self._ordinal, self._rebuilt = source, span, ordinal, rebuilt
        self._parent, self._index, self._items = parent, index, items
        self._tree: Tree | None = None

    @property
    def line(self) -> int:
        """0-based line where the node starts."""
        if self._span is not None:
            return self._span.line
        tree = self.tree()
        return int(tree.node.start_mark.line) + tree.line_offset

    def item(self, index: int) -> LazyNode:
        """The `index`-th item of the node's `items` sequence."""
        span = self._items[index] if 0 <= index < len(self._items) else None
        return LazyNode(self._source, span, rebuilt=self._rebuilt, parent=self, index=index)

    def tree(self) -> Tree:
        if self._tree is None:
            self._tree = self._compose()
        return self._tree

    def _compose(self) -> Tree:
        if self._parent is None:
            assert self._span is not None
            tree = self._source.compose_slice(self._span, blank_prefix=False)
            if tree is None:
                tree = Tree(self._source.composed(self._ordinal))
            if self._rebuilt:
                # SafeConstructor flattened merge keys in the tree it built: do so again.
                SafeConstructor().construct_document(tree.node)
            return tree
        if not self._rebuilt and self._span is not None:
            tree = self._source.compose_slice(self._span, blank_prefix=True)
            if tree is not None:
                return tree
        parent = self._parent.tree()
        items = _item(parent.node, "items")
        assert isinstance(items, yaml.SequenceNode)
        return Tree(items.value[self._index], parent.line_offset)


@dataclass(frozen=True)
class Document:
    """One manifest: its data, its YAML node (for locations) and the file it came from."""

    data: Any
    node: yaml.Node | LazyNode
    path: str

    def location(self, field_path: FieldPath = ()) -> Location:
        """The location of the deepest part of `field_path` that exists in the document."""
        if isinstance(self.node, LazyNode):
            if not field_path:
                return Location(self.path, self.node.line + 1)
            tree = self.node.tree()
            return Location(self.path, line_of(tree.node, field_path) + tree.line_offset)
        return Location(self.path, line_of(self.node, field_path))

    def child(self, index: int) -> Document:
        """The `index`-th item of a list document (the items of a `kind: List`)."""
        item = self.data["items"][index]
        if isinstance(self.node, LazyNode):
            return Document(item, self.node.item(index), self.path)
        item_node = _item(self.node, "items")
        assert isinstance(item_node, yaml.SequenceNode)
        return Document(item, item_node.value[index], self.path)


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


def _item_spans(node: yaml.Node) -> tuple[Span, ...]:
    """Where each item of a mapping's `items` sequence starts (what `kind: List` children ask)."""
    items = _item(node, "items")
    if isinstance(items, yaml.SequenceNode):
        return tuple(Span.of(item) for item in items.value)
    return ()


def read_text(text: str, path: str) -> list[Document]:
    """Parse one file's text (YAML, multi-document, or JSON) into documents; empty ones drop."""
    try:
        with garbage_collection_paused():
            return _read_documents(text, path)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = error.problem or error.context or "invalid YAML"
        raise InputError(Location(path, line), f"invalid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise InputError(Location(path), f"invalid YAML: {error}") from None


def _read_documents(text: str, path: str) -> list[Document]:
    source = _Source(text)
    constructor = SafeConstructor()
    loader = FastSafeLoader(text, source.plain_tags)
    documents = []
    try:
        ordinal = -1
        while loader.check_node():
            node = loader.get_node()
            ordinal += 1
            if node is None:
                continue
            span = Span.of(node)
            # Without an alias indicator in its text the document is a tree, not a graph.
            aliased = text.find("*", span.start - span.column, span.end) >= 0
            try:
                data, rebuilt = construct(node, aliased, constructor)
            except (ValueError, KeyError, IndexError, AttributeError) as error:
                # SafeConstructor lets these out for an explicit tag on text it cannot read
                # (`!!int abc`, `!!bool maybe`, `!!float ""`).
                problem = f"a tagged value cannot be read ({type(error).__name__}: {error})"
                raise InputError(
                    Location(path, span.line + 1), f"invalid YAML: {problem}"
                ) from None
            if data is not None:
                items = _item_spans(node) if isinstance(data, dict) and "items" in data else ()
                lazy = LazyNode(source, span, ordinal=ordinal, rebuilt=rebuilt, items=items)
                documents.append(Document(data, lazy, path))
    finally:
        loader.dispose()
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
