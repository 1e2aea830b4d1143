"""Analysis: what the policies allow, as a whole (connectivity), against requirements, as
lint findings, and between two versions (diff).

The connectivity map (`compute_connectivity`) is the base the others build on: it decides the
engine's semantics on sets (endpoint classes, port atoms, IP atoms; see `tables`,
`atoms`, `connectivity`) and hands out connections, per-pair port sets and example flows.
Renderers (`render_*`, registered in `render.RENDERERS`) write it as txt, csv, json, md, dot
and html. To add an analysis, add a module here that takes a `ConnectivityMap` (or the
cluster), plus its CLI command in `netwarden.cli`.
"""

from netwarden.analysis.atoms import IPRange, PortAtoms
from netwarden.analysis.connectivity import (
    ClassPairs,
    Connection,
    ConnectivityMap,
    compute_connectivity,
)
from netwarden.analysis.groups import By, Group
from netwarden.analysis.portset import PortSet

__all__ = [
    "By",
    "ClassPairs",
    "Connection",
    "ConnectivityMap",
    "Group",
    "IPRange",
    "PortAtoms",
    "PortSet",
    "compute_connectivity",
]
