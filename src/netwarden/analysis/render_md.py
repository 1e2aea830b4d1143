"""md: the firewall-rule lines as a Markdown table (NCA's md layout)."""

from __future__ import annotations

from typing import TextIO

from netwarden.analysis.aggregate import Side, fw_lines
from netwarden.analysis.connectivity import ConnectivityMap
from netwarden.analysis.groups import By


def render(cmap: ConnectivityMap, by: By, out: TextIO) -> None:
    out.write("|src_ns|src_pods|dst_ns|dst_pods|connection|\n|---|---|---|---|---|\n")
    for line in fw_lines(cmap, by):
        out.write(f"|{_cells(line.src)}|{_cells(line.dst)}|{_escape(str(line.ports))}|\n")


def _cells(side: Side) -> str:
    if side.addresses:
        return f"|{_escape(side.addresses)}"
    return f"[{','.join(side.namespaces)}]|[{_escape(side.pods)}]"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")
