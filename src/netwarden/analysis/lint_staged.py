"""NW703: staged policies that would change verdicts if they were enforced.

Each staged policy is applied alone to the enforced set (as `staged_policy_set` applies it)
and both versions' connectivity tables are compared on every pair of endpoint classes (IP atoms
included) and port atom, with port and IP atoms cut for both versions. A staged policy that
changes nothing is not reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from netwarden.analysis.atoms import PortAtoms, ip_atoms, port_atoms
from netwarden.analysis.lint_catalogue import Finding, finding
from netwarden.analysis.lint_context import policy_name
from netwarden.analysis.lint_inventory import count
from netwarden.analysis.partition import Words, first_members, refine, unpack
from netwarden.analysis.tables import DirectionTable, TableBuilder
from netwarden.engine.decide import staged_policy_set
from netwarden.engine.endpoint_vectors import Ints, Mask
from netwarden.model import (
    TCP,
    ClusterState,
    Direction,
    Endpoint,
    StagedAction,
    external_endpoint,
    protocol_name,
)

#: Class pairs compared at once (bounds memory).
_PAIRS_AT_ONCE = 1 << 20


def staged_findings(cluster: ClusterState) -> Iterator[Finding]:
    staged = [policy for policy in cluster.policies if policy.staged is not None]
    if not staged:
        return
    everything = replace(
        cluster, policies=tuple(replace(policy, staged=None) for policy in cluster.policies)
    )
    atoms = port_atoms(everything)
    externals = ip_atoms(everything)
    endpoints = tuple(cluster.endpoints) + tuple(
        external_endpoint(atom.representative) for atom in externals
    )
    inside = np.zeros(len(endpoints), dtype=np.bool_)
    inside[: len(cluster.endpoints)] = True
    enforced = replace(cluster, policies=cluster.enforced_policies)
    base = _tables(enforced, endpoints, atoms)
    for policy in staged:
        variant = replace(cluster, policies=staged_policy_set((*cluster.enforced_policies, policy)))
        changed, example = _compare(
            base, _tables(variant, endpoints, atoms), inside, atoms.protocol
        )
        if not changed:
            continue
        src, dst, atom, before = example
        flow = (
            f"{endpoints[src].key} -> {endpoints[dst].key} "
            f"{protocol_name(int(atoms.protocol[atom]))}"
            + (f"/{int(atoms.start[atom])}" if int(atoms.start[atom]) else "")
        )
        verdicts = "allowed -> denied" if before else "denied -> allowed"
        deleting = policy.staged is StagedAction.DELETE
        what = f"staged {'deletion of ' if deleting else ''}{policy_name(policy)}"
        yield finding(
            "NW703",
            f"{what} would change the verdict of {count(changed, 'endpoint pair')}, e.g. "
            f"{flow}: {verdicts}",
            policy.source,
            f"staged {policy_name(policy)}",
        )


def _tables(
    cluster: ClusterState, endpoints: tuple[Endpoint, ...], atoms: PortAtoms
) -> tuple[DirectionTable, DirectionTable]:
    builder = TableBuilder(cluster, endpoints, atoms)
    return builder.table(Direction.EGRESS), builder.table(Direction.INGRESS)


def _words(tables: tuple[DirectionTable, DirectionTable], src: Ints, dst: Ints) -> Words:
    egress, ingress = tables
    found: Words = egress.words(src, dst) & ingress.words(dst, src)
    return found


def _compare(
    base: tuple[DirectionTable, DirectionTable],
    variant: tuple[DirectionTable, DirectionTable],
    inside: Mask,
    atoms_protocol: Ints,
) -> tuple[int, tuple[int, int, int, bool]]:
    """How many endpoint pairs differ, and one (src, dst, atom, allowed before) example."""
    keys: list[Mask | Ints] = [inside]
    for tables in (base, variant):
        for table in tables:
            keys += [table.subject_class, table.peer_class]
    classes = refine(np.zeros(inside.shape[0], np.int64), keys)
    reps = first_members(classes)
    sizes = np.bincount(classes)
    total = reps.shape[0]
    changed = 0
    example = (0, 0, 0, False)
    step = max(1, _PAIRS_AT_ONCE // max(total, 1))
    for start in range(0, total, step):
        block = np.arange(start, min(total, start + step))
        src = np.repeat(block, total)
        dst = np.tile(np.arange(total), block.shape[0])
        keep = inside[reps[src]] | inside[reps[dst]]
        src, dst = src[keep], dst[keep]
        before = _words(base, reps[src], reps[dst])
        after = _words(variant, reps[src], reps[dst])
        differ = (before != after).any(axis=1)
        if not differ.any():
            continue
        changed += int((sizes[src[differ]] * sizes[dst[differ]]).sum())
        if example == (0, 0, 0, False):
            first = int(np.flatnonzero(differ)[0])
            width = int(before.shape[1]) * 64
            bits = unpack((before[first] ^ after[first]).reshape(1, -1), width)[0]
            differing = np.flatnonzero(bits[: len(atoms_protocol)])
            tcp = differing[atoms_protocol[differing] == TCP]  # the most telling example
            atom = int(tcp[0] if tcp.shape[0] else differing[0])
            was = bool(unpack(before[first].reshape(1, -1), width)[0][atom])
            example = (int(reps[src[first]]), int(reps[dst[first]]), atom, was)
    return changed, example
