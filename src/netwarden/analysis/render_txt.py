"""txt: firewall-rule lines, NCA's fw-rules layout (`aggregate.fw_lines`)."""

from __future__ import annotations

from typing import TextIO

from netwarden.analysis.aggregate import fw_lines
from netwarden.analysis.connectivity import ConnectivityMap
from netwarden.analysis.groups import By


def render(cmap: ConnectivityMap, by: By, out: TextIO) -> None:
    out.write("final fw rules for query: connectivity_map:\n")
    for line in fw_lines(cmap, by):
        out.write(f"{line}\n")
