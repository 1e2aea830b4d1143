"""`netwarden evaluate`: verdicts for many probes, as a table or as one JSON array."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TextIO

import numpy as np
import numpy.typing as npt
import typer
from rich.table import Table
from rich.text import Text

from netwarden.cli.common import (
    FilesOption,
    TableOrJson,
    load_cluster,
    stdout_console,
    unknown_endpoint_message,
)
from netwarden.dialects.probes import parse_probe, probe_location, read_probes
from netwarden.engine import evaluate as evaluate_probes
from netwarden.engine.batch import BatchResult, DirectionColumns, Probe, resolve_probes
from netwarden.errors import InputError, UsageError
from netwarden.model import PORTED_PROTOCOLS, ClusterState, protocol_name

_CHUNK = 65_536  # JSON rows written at once


def evaluate(
    files: FilesOption,
    probes_file: Annotated[
        Path | None,
        typer.Option("--probes", help="CSV file with the header src,dst,port,protocol."),
    ] = None,
    probe: Annotated[
        tuple[str, str, str] | None,
        typer.Option(
            "--probe",
            metavar="SRC DST PORT/PROTO",
            help="One probe, e.g. shop/a-0 shop/b-0 80/TCP.",
        ),
    ] = None,
    output: Annotated[TableOrJson, typer.Option("-o", "--output", help="Output format.")] = (
        TableOrJson.TABLE
    ),
) -> None:
    """Decide whether each probe (SRC -> DST on PORT/PROTO) is allowed, and by which rules."""
    if (probes_file is None) == (probe is None):
        raise UsageError("give either --probes FILE.csv or --probe SRC DST PORT/PROTO")
    probes = [parse_probe(*probe)] if probe is not None else []
    cluster = load_cluster(files)
    if probes_file is not None:
        probes = read_probes(probes_file)
    check_endpoints(cluster, probes, probes_file)
    result = evaluate_batch(cluster, probes)
    if output is TableOrJson.JSON:
        write_json(probes, result, sys.stdout)
    else:
        print_table(probes, result)


def check_endpoints(cluster: ClusterState, probes: Sequence[Probe], path: Path | None) -> None:
    """Every `namespace/pod` must be in the inventory; the error names the probe's line."""
    names = {p.src for p in probes} | {p.dst for p in probes}
    unknown = {name for name in names if cluster.endpoint(name) is None}
    if not unknown:
        return
    for index, probe in enumerate(probes):
        for column, name in (("src", probe.src), ("dst", probe.dst)):
            if name in unknown:
                message = unknown_endpoint_message(cluster, name)
                if path is None:
                    raise UsageError(message)
                raise InputError(probe_location(path, index), message, column)


def evaluate_batch(cluster: ClusterState, probes: Sequence[Probe]) -> BatchResult:
    """Verdicts for all probes at once (the vectorized engine; same answers as `explain`)."""
    return evaluate_probes(cluster, resolve_probes(cluster, probes))


@dataclass(frozen=True)
class Outcome:
    """One distinct result of a probe: its verdict and the deciding label in each direction."""

    allowed: bool
    egress_allowed: bool
    egress_by: str
    ingress_allowed: bool
    ingress_by: str


def outcomes(result: BatchResult) -> tuple[npt.NDArray[np.intp], list[Outcome]]:
    """Per probe, an index into a short list of distinct outcomes: labels are made once per
    distinct outcome instead of once per probe."""
    egress, _ = _direction_codes(result.egress)
    ingress, ingress_first = _direction_codes(result.ingress)
    combined = egress * max(len(ingress_first), 1) + ingress
    _, first, codes = np.unique(combined, return_index=True, return_inverse=True)
    found = []
    for row in first.tolist():
        egress_allowed = bool(result.egress.allowed[row])
        ingress_allowed = bool(result.ingress.allowed[row])
        found.append(
            Outcome(
                egress_allowed and ingress_allowed,
                egress_allowed,
                result.deciding(row, egress=True),
                ingress_allowed,
                result.deciding(row, egress=False),
            )
        )
    return codes.reshape(-1), found


def _direction_codes(
    columns: DirectionColumns,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]]:
    """Dense codes for distinct (allowed, reason, policy, rule) rows, and one row of each."""
    key = (
        ((columns.policy.astype(np.int64) + 1) << 32)
        | ((columns.rule.astype(np.int64) + 1) << 8)
        | (columns.reason.astype(np.int64) << 1)
        | columns.allowed.astype(np.int64)
    )
    _, first, codes = np.unique(key, return_index=True, return_inverse=True)
    return codes.reshape(-1).astype(np.int64), first


class _JsonStrings(dict[str, str]):
    """JSON string literals, each encoded once."""

    def __missing__(self, text: str) -> str:
        encoded = self[text] = json.dumps(text)
        return encoded


def _verdict_json(outcome: Outcome) -> str:
    return (
        f'"allowed":{_bool(outcome.allowed)},'
        f'"egress":{{"allowed":{_bool(outcome.egress_allowed)},'
        f'"decided_by":{json.dumps(outcome.egress_by)}}},'
        f'"ingress":{{"allowed":{_bool(outcome.ingress_allowed)},'
        f'"decided_by":{json.dumps(outcome.ingress_by)}}}'
    )


def write_json(probes: Sequence[Probe], result: BatchResult, out: TextIO) -> None:
    """One JSON array, one object per probe in input order, one object per line. With staged
    policies, each object also has `staged`: the staged policy set's verdict, same shape."""
    codes, found = outcomes(result)
    tails = [f",{_verdict_json(o)}" for o in found]
    if result.staged is not None:
        staged_codes, staged_found = outcomes(result.staged)
        staged_tails = [f',"staged":{{{_verdict_json(o)}}}' for o in staged_found]
        # One tail per distinct (enforced, staged) pair, so rows still format once each.
        pairs, codes = np.unique(
            codes.astype(np.int64) * len(staged_found) + staged_codes, return_inverse=True
        )
        tails = [
            tails[pair // len(staged_found)] + staged_tails[pair % len(staged_found)]
            for pair in pairs.tolist()
        ]
        codes = codes.reshape(-1)
    tails = [tail + "}" for tail in tails]
    names = _JsonStrings()
    protocols = {n: json.dumps(protocol_name(n)) for n in {p.protocol for p in probes}}
    out.write("[")
    separator = "\n"
    for start in range(0, len(probes), _CHUNK):
        chunk = zip(
            probes[start : start + _CHUNK], codes[start : start + _CHUNK].tolist(), strict=True
        )
        out.write(
            separator
            + ",\n".join(
                f'{{"src":{names[p.src]},"dst":{names[p.dst]},"port":{p.port},'
                f'"protocol":{protocols[p.protocol]}{tails[code]}'
                for p, code in chunk
            )
        )
        separator = ",\n"
    out.write("\n]\n" if probes else "]\n")
    out.flush()


def _bool(value: bool) -> str:
    return "true" if value else "false"


def print_table(probes: Sequence[Probe], result: BatchResult) -> None:
    """A Rich table, one row per probe, and the count of each verdict."""
    codes, found = outcomes(result)
    table = Table(show_edge=False, pad_edge=False)
    for header in ("src", "dst", "port/proto"):
        table.add_column(header, overflow="fold")
    table.add_column("verdict", no_wrap=True)
    table.add_column("egress by", overflow="fold")
    table.add_column("ingress by", overflow="fold")
    staged = result.staged.allowed if result.staged is not None else None
    if staged is not None:
        table.add_column("staged", no_wrap=True)
    for i, (probe, code) in enumerate(zip(probes, codes.tolist(), strict=True)):
        outcome = found[code]
        cells = [
            Text(probe.src),
            Text(probe.dst),
            Text(port_protocol(probe.port, probe.protocol)),
            verdict_text(outcome.allowed),
            Text(outcome.egress_by),
            Text(outcome.ingress_by),
        ]
        if staged is not None:
            cells.append(verdict_text(bool(staged[i])))
        table.add_row(*cells)
    allowed = int(np.count_nonzero(result.allowed))
    console = stdout_console()
    console.print(table)
    console.print(f"{allowed} allowed, {len(probes) - allowed} denied")


def port_protocol(port: int, protocol: int) -> str:
    """`443/TCP`, or the protocol alone for portless ones (`ICMP`)."""
    name = protocol_name(protocol)
    return f"{port}/{name}" if protocol in PORTED_PROTOCOLS else name


def verdict_text(allowed: bool) -> Text:
    return Text("ALLOWED", style="bold green") if allowed else Text("DENIED", style="bold red")
