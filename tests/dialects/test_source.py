"""The fast reader gives PyYAML SafeLoader's data and the lines the node tree gives, for every
input: tricky YAML 1.1 scalars, anchors, merge keys, lists, directives, and generated text."""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from yaml.constructor import SafeConstructor

from netwarden.dialects.source import Document, line_of, read_text
from netwarden.errors import InputError

TRICKY = """\
%YAML 1.1
---
booleans: [on, off, yes, no, y, n, true, false, True, FALSE, On, NO, "yes", 'on']
nulls: [~, null, Null, NULL, '', "null", "~"]
empty:
ints: [0, 12, -3, +4, 0o17, 017, 0x1F, 0b101, 1_000, 190:20:30, 99999999999999999999999999]
floats: [1.5, -.5, .inf, -.Inf, .NaN, 1e3, 6.8523015e+5, 190:20:30.15, 1_000.5]
not_numbers: [1e3x, 0x, 08, 1.2.3, "12", '0o17']
timestamps: [2001-12-14t21:59:43.10-05:00, 2002-12-14, 2001-12-14 21:59:43.10]
strings: ["a\\tb", 'it''s', plain text, "multi
  line", "=", <<x]
binary: !!binary aGVsbG8=
explicit: [!!str 123, !!int "42", !!float "1", !!bool "yes", !!null ""]
set: !!set {a, b}
omap: !!omap [{a: 1}, {b: 2}]
int_keys: {1: one, 2.5: two, true: three, null: four}
block: |
  line one
  line two
folded: >-
  folded
  text
---
base: &base {app: web, tier: front}
derived:
  <<: *base
  tier: back
list_merge:
  <<: [*base, {extra: 1}]
shared: [*base, *base]
---
# an empty document follows, then one holding only null
---
~
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a, labels: {app: web}}
  spec:
    containers:
    - name: main
      ports: [{name: http, containerPort: 80}]
-   apiVersion: v1
    kind: Pod
    metadata:
      name: b
- {apiVersion: v1, kind: Namespace, metadata: {name: c}}
---
{"apiVersion": "v1", "kind": "Namespace",
 "metadata": {"name": "json", "labels": {"a": "1"}}}
--- !!map
tagged: root
--- &root
anchored: root
self: [1, 2]
"""


def _plain(value: Any) -> Any:
    """Comparable data: NaN equals NaN, sets and tuples keep their type."""
    if isinstance(value, float) and math.isnan(value):
        return "<nan>"
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    return value


def _reference(text: str) -> list[tuple[Any, yaml.Node]]:
    """What the reader did before: pure-Python SafeLoader nodes, SafeConstructor data."""
    constructor = SafeConstructor()
    found = []
    for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
        if node is None:
            continue
        data = constructor.construct_document(node)
        if data is not None:
            found.append((data, node))
    return found


def _paths(data: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str):
                yield from _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            yield from _paths(item, (*prefix, index))


def _assert_same(text: str) -> list[Document]:
    documents = read_text(text, "t.yaml")
    reference = _reference(text)
    assert [_plain(d.data) for d in documents] == [_plain(data) for data, _ in reference]
    for document, (data, node) in zip(documents, reference, strict=True):
        for path in _paths(data):
            assert document.location(path).line == line_of(node, path), path
        if isinstance(data, dict) and isinstance(data.get("items"), list):
            for index, item in enumerate(data["items"]):
                child = document.child(index)
                assert child.data == item
                item_node = next(v for k, v in node.value if k.value == "items").value[index]
                for path in _paths(item):
                    assert child.location(path).line == line_of(item_node, path), path
    return documents


def test_tricky_yaml_reads_as_safe_loader_with_the_same_lines() -> None:
    documents = _assert_same(TRICKY)
    first = documents[0].data
    assert first["booleans"][:6] == [True, False, True, False, "y", "n"]
    assert first["ints"][4:9] == ["0o17", 15, 31, 5, 1000]
    assert first["ints"][9:] == [685230, 99999999999999999999999999]
    assert first["floats"][2] == math.inf and math.isnan(first["floats"][4])
    assert first["nulls"] == [None, None, None, None, "", "null", "~"]
    assert first["set"] == {"a", "b"} and first["omap"] == [("a", 1), ("b", 2)]
    derived = documents[1].data["derived"]
    assert derived == {"app": "web", "tier": "back"}


def test_shared_anchors_are_one_object_as_in_pyyaml() -> None:
    data = read_text("a: &x [1]\nb: *x\n", "t.yaml")[0].data
    assert data["a"] is data["b"]


def test_merge_keys_are_located_where_safe_loader_flattened_them() -> None:
    text = "base: &b\n  app: web\nderived:\n  <<: *b\n  tier: back\n"
    document = read_text(text, "t.yaml")[0]
    assert document.location(("derived", "app")).line == 2  # the anchor's line, as before
    assert document.location(("derived", "tier")).line == 5


def test_a_document_after_a_tag_directive_falls_back_to_the_whole_file() -> None:
    text = "a: 1\n---\nb: 2\n...\n%TAG !e! tag:yaml.org,2002:\n---\nc: !e!str 3\nd:\n  e: 4\n"
    documents = _assert_same(text)
    assert documents[2].data == {"c": "3", "d": {"e": 4}}
    assert documents[2].location(("d", "e")).line == 9


def test_lines_of_many_documents_and_flow_items() -> None:
    text = "".join(
        f"---\nkind: Pod\nmetadata: {{name: p{i}}}\nspec:\n  c: [{{p: {i}}}, {{q: [1, {i}]}}]\n"
        for i in range(50)
    )
    text += "---\nkind: List\nitems: [{a: 1}, {b: {c: 2}},\n  {d: [3]}]\n"
    _assert_same(text)


def test_invalid_yaml_is_located_and_the_collector_runs_again() -> None:
    assert gc.isenabled()
    with pytest.raises(InputError) as caught:
        read_text("a: 1\n---\nb: [1, 2\nc: 3\n", "bad.yaml")
    assert str(caught.value.location) == "bad.yaml:4"
    assert gc.isenabled()


def test_undefined_tags_and_aliases_are_yaml_errors() -> None:
    with pytest.raises(InputError, match="could not determine a constructor"):
        read_text("a: !custom 1\n", "t.yaml")
    with pytest.raises(InputError, match="found undefined alias"):
        read_text("a: *nowhere\n", "t.yaml")


@pytest.mark.parametrize("value", ["!!int abc", "!!bool maybe", '!!float ""', "!!timestamp x"])
def test_explicit_tags_on_unreadable_text_are_located_errors(value: str) -> None:
    with pytest.raises(InputError, match="invalid YAML: a tagged value cannot be read") as caught:
        read_text(f"---\nkind: x\n---\nkind: y\nspec:\n  v: {value}\n", "t.yaml")
    assert str(caught.value.location) == "t.yaml:4"


# Plain scalars whose YAML 1.1 type is easy to get wrong.
WORDS = [
    "on", "Off", "YES", "n", "y", "~", "null", "NULL", "", "0", "00", "07", "08", "0x1f",
    "0b11", "1_0", "-0", "+12", "1:30", "1:30.5", "1e5", "1.0e+5", ".5", "-.inf", ".nan",
    "2020-01-02", "2020-1-2", "2020-01-02 03:04:05", "<<x", "a b", "x:y", "-", "?",
    "text", "9" * 30, "0.", "1__2", "._", "True", "tRUE",
]  # fmt: skip


def _scalars() -> st.SearchStrategy[str]:
    return st.sampled_from(WORDS) | st.text(alphabet="abc019:._-+eE ~", max_size=6)


def _plain_scalar(word: str) -> bool:
    """Whether `word` written unquoted as a flow value is read back as that one scalar."""
    try:
        node = yaml.compose(f"[{word}]", Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return False
    items = node.value if isinstance(node, yaml.SequenceNode) else []
    return (
        len(items) == 1
        and isinstance(items[0], yaml.ScalarNode)
        and items[0].value == word
        and items[0].style is None
        and "<<" not in word
    )


@st.composite
def _yaml_texts(draw: st.DrawFn) -> str:
    """A document of nested maps and lists whose scalars are written plain when YAML lets
    them be (so the resolver decides their type), quoted otherwise."""

    def render(depth: int, indent: str) -> str:
        if depth > 2 or draw(st.booleans()):
            word = draw(_scalars())
            return word if _plain_scalar(word) else json.dumps(word)
        if draw(st.booleans()):
            keys = draw(st.lists(st.sampled_from(["a", "b", "on", "1", "key"]), max_size=3))
            return "{" + ", ".join(f"{k}: {render(depth + 1, indent)}" for k in keys) + "}"
        items = draw(st.lists(st.just(0), max_size=3))
        return "[" + ", ".join(render(depth + 1, indent) for _ in items) + "]"

    count = draw(st.integers(1, 3))
    return "".join(
        f"---\nk{i}: {render(0, '')}\nblock:\n  - {render(1, '  ')}\n" for i in range(count)
    )


@settings(max_examples=100, deadline=None)
@given(_yaml_texts())
def test_generated_yaml_reads_as_safe_loader(text: str) -> None:
    try:
        reference = _reference(text)
    except yaml.YAMLError:
        with pytest.raises(InputError):
            read_text(text, "t.yaml")
        return
    assert reference is not None
    _assert_same(text)


def test_nested_lists_and_renamed_documents_keep_their_lines() -> None:
    text = "kind: List\nitems:\n- kind: List\n  items:\n  - kind: Pod\n    spec:\n      x: 1\n"
    outer = read_text(text, "a.yaml")[0]
    inner = outer.child(0).child(0)
    assert inner.data == {"kind": "Pod", "spec": {"x": 1}}
    assert (inner.location().line, inner.location(("spec", "x")).line) == (5, 7)
    renamed = Document(inner.data, inner.node, "b.yaml")  # as the diff reads both sides
    assert str(renamed.location(("spec", "x"))) == "b.yaml:7"
