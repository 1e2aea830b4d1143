"""dot: a Graphviz digraph, one node per group (clustered by namespace), one edge per allowed
connection labelled with its ports. Renders with `dot -Tsvg`."""

from __future__ import annotations

from collections import defaultdict
from typing import TextIO

from netwarden.analysis.connectivity import Connection, ConnectivityMap
from netwarden.analysis.groups import By, Group


def render(cmap: ConnectivityMap, by: By, out: TextIO) -> None:
    connections = list(cmap.connections(by))
    groups = nodes(cmap, by, connections)
    ids = {g.name: f"n{i}" for i, g in enumerate(groups)}
    out.write("digraph connectivity {\n  rankdir=LR;\n  node [shape=box, fontsize=10];\n")
    out.write("  edge [fontsize=8];\n")
    by_namespace: dict[str, list[Group]] = defaultdict(list)
    for group in groups:
        by_namespace[group.namespace or ""].append(group)
    for k, (namespace, members) in enumerate(sorted(by_namespace.items())):
        if namespace:
            out.write(f"  subgraph cluster_{k} {{\n    label={_quote(namespace)};\n")
        for group in members:
            shape = ", shape=ellipse" if group.is_external else ""
            out.write(f"    {ids[group.name]} [label={_quote(group.name)}{shape}];\n")
        if namespace:
            out.write("  }\n")
    for connection in connections:
        src, dst = ids[connection.src.name], ids[connection.dst.name]
        out.write(f"  {src} -> {dst} [label={_quote(str(connection.ports))}];\n")
    out.write("}\n")


def nodes(cmap: ConnectivityMap, by: By, connections: list[Connection]) -> list[Group]:
    """Every group of the cluster, and the IP ranges the connections name (merged ranges are
    groups of their own)."""
    found = {g.name: g for g in cmap.groups(by) if not g.is_external}
    for connection in connections:
        for group in (connection.src, connection.dst):
            found.setdefault(group.name, group)
    return list(found.values())


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
