"""`netwarden apply -f PATH... --node NODE [--netns NS] [--state FILE] [--dry-run]`.

Compiles the ruleset of one node (interfaces named as Calico names them) and loads it into a
network namespace (`--netns`) or the current one: as a transaction of element changes when the
state of the previous apply (`--state`, by default one file per namespace under
/run/netwarden/apply) shows the same chains and sets, else as the full atomic replacement. It
prints what changed and how long compiling and loading took; `--dry-run` prints the
transaction instead of loading it. A ruleset nft rejects changes nothing (exit 2).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from netwarden.cli.common import FilesOption, load_cluster, stderr_console, stdout_console
from netwarden.dataplane.netns import netns_path
from netwarden.dataplane.nft_update import apply_update, plan_update, read_loaded, write_loaded
from netwarden.dataplane.nftables import calico_interfaces, compile_ruleset
from netwarden.errors import UsageError

#: Where `apply` keeps what it loaded, one file per namespace, unless `--state` says otherwise.
STATE_DIR_ENV = "NETWARDEN_APPLY_DIR"
DEFAULT_STATE_DIR = Path("/run/netwarden/apply")


def apply_command(
    files: FilesOption,
    node: Annotated[
        str,
        typer.Option("--node", metavar="NODE", help="The node whose ruleset to load."),
    ],
    netns: Annotated[
        str | None,
        typer.Option("--netns", metavar="NS", help="Named network namespace (default: this one)."),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            metavar="FILE",
            help="What the previous apply loaded, read for an incremental update and rewritten.",
            dir_okay=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the transaction; change nothing.")
    ] = False,
) -> None:
    """Compile NODE's nftables ruleset and load it, incrementally when possible."""
    if netns is not None and not netns_path(netns).exists():
        raise UsageError(f"no network namespace {netns!r} (ip netns list shows the names)")
    started = time.perf_counter()
    cluster = load_cluster(files)
    if node not in cluster.nodes_by_name and not any(e.node == node for e in cluster.endpoints):
        raise UsageError(f"unknown node {node!r}: no Node object or pod names it")
    ruleset = compile_ruleset(cluster, node, calico_interfaces(cluster, node))
    compiled = time.perf_counter() - started
    path = state or default_state_path(netns)
    previous = read_loaded(path)
    console = stdout_console(soft_wrap=True)
    size = (
        f"{ruleset.chains} chains, {ruleset.rules} rules, {ruleset.sets} sets, "
        f"{ruleset.elements} set elements"
    )
    if dry_run:
        update = plan_update(previous, ruleset)
        sys.stdout.write(update.script)
        stderr_console().print(
            f"node {node}: would load {update.describe()} ({size}); compiled in "
            f"{compiled * 1000:.0f} ms"
        )
        return
    applied = apply_update(netns, previous, ruleset)
    write_loaded(path, applied.state)
    if applied.fallback:
        stderr_console().print(f"incremental update rejected, replaced instead: {applied.fallback}")
    where = f"namespace {netns}" if netns else "this namespace"
    console.print(
        f"node {node} in {where}: {applied.update.describe()} ({size}); compiled in "
        f"{compiled * 1000:.0f} ms, loaded in {applied.seconds * 1000:.1f} ms"
    )


def default_state_path(netns: str | None) -> Path:
    folder = Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)
    return folder / f"{netns or 'current'}.json"
