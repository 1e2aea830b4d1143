"""Plain data from YAML as PyYAML's SafeLoader builds it, several times faster.

Two costs dominate `yaml.load` with libyaml: the Python resolver (a regular expression per plain
scalar) and the Python constructor (a generator and a cache entry per node). Manifests repeat
the same scalars thousands of times, so implicit tags are memoised per stream; and a document
that uses only str/int/bool/null/float/map/seq nodes and no alias is a tree, which a small
recursive converter turns into data. Anything else (aliases, merge keys, timestamps, sets,
explicit odd tags) is handed to PyYAML's own SafeConstructor, so the result is identical by
construction, not by imitation.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_BOOL_VALUES: dict[str, bool] = SafeConstructor.bool_values

# Scalars whose SafeConstructor method is a plain function of the node's text: calling it
# directly gives PyYAML's value without its per-node bookkeeping.
_SCALAR_CONSTRUCTORS = {
    tag: SafeConstructor.yaml_constructors[tag]
    for tag in (
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:timestamp",
        "tag:yaml.org,2002:binary",
        _INT,
    )
}

_CLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class FastSafeLoader(_CLoader):  # type: ignore[misc]
    """SafeLoader whose implicit scalar tags are memoised for the stream.

    Valid because no path resolvers are registered: the tag of a plain scalar then depends on
    its text alone, and a quoted one is always a string (PyYAML's `BaseResolver.resolve`).
    """

    def __init__(self, stream: str, plain_tags: dict[str, str] | None = None) -> None:
        super().__init__(stream)
        self._plain_tags: dict[str, str] = {} if plain_tags is None else plain_tags
        self._memoise = not self.yaml_path_resolvers

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        # Called from C for every node: the common case returns after one dict look-up.
        if kind is ScalarNode and self._memoise:
            if implicit[0]:
                tag = self._plain_tags.get(value)
                if tag is None:
                    tag = self._plain_tags[value] = super().resolve(kind, value, implicit)
                return tag
            return _STR
        resolved: str = super().resolve(kind, value, implicit)
        return resolved

    def compose_one(self) -> yaml.Node | None:
        """The stream's only document's node (as `yaml.compose`), and the parser released."""
        try:
            node: yaml.Node | None = self.get_single_node()
            return node
        finally:
            self.dispose()


class _Unusual(Exception):
    """The node needs SafeConstructor (alias-free trees of common tags do not)."""


def _convert(node: yaml.Node, constructor: SafeConstructor) -> Any:
    tag = node.tag
    kind = type(node)
    if kind is ScalarNode:
        if tag == _STR:
            return node.value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            flag = _BOOL_VALUES.get(node.value.lower())
            if flag is None:
                raise _Unusual
            return flag
        if tag == _INT:
            text: str = node.value
            if text.isascii() and text.isdigit() and (text[0] != "0" or text == "0"):
                return int(text)
        build = _SCALAR_CONSTRUCTORS.get(tag)
        if build is None:
            raise _Unusual
        return build(constructor, node)
    if kind is MappingNode and tag == _MAP:
        mapping = {}
        for key_node, value_node in node.value:
            # Only string keys: merge (`<<`) and value (`=`) keys and unhashable keys are
            # SafeConstructor's to handle.
            if key_node.tag != _STR or type(key_node) is not ScalarNode:
                raise _Unusual
            mapping[key_node.value] = _convert(value_node, constructor)
        return mapping
    if kind is SequenceNode and tag == _SEQ:
        return [_convert(item, constructor) for item in node.value]
    raise _Unusual


def construct(node: yaml.Node, aliased: bool, constructor: SafeConstructor) -> tuple[Any, bool]:
    """The document's data and whether SafeConstructor built it (it then also flattened merge
    keys in the node tree, which later line look-ups see). `aliased`: the document's text may
    hold an alias, so nodes may be shared and must be built once each."""
    if not aliased:
        try:
            return _convert(node, constructor), False
        except _Unusual:
            pass
    return constructor.construct_document(node), True


_gc_lock = threading.Lock()
_gc_pauses = 0


@contextmanager
def garbage_collection_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while building node trees and data.

    Composing allocates a node and two marks per scalar; with the data of earlier documents
    alive, the collector's full passes then walk millions of objects and cost several times
    the parse itself. Nothing built here forms a cycle, so there is nothing for it to find.
    Pauses nest and may overlap across threads; the collector resumes when the last ends, if
    it was running before the first began.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


_gc_was_enabled = True
