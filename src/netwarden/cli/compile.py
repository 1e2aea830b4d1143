"""`netwarden compile -f PATH... --target k8s|calico|nftables [--node NODE] [-o DIR]`.

Manifest targets write the policies read with `-f` back out: multi-document YAML on stdout, or
one file per resource kind in DIR. Ruleset targets compile what one node enforces and print it.
A policy the target cannot express is an error (exit 2) and nothing is written. To add a
target, add one line to `TARGETS` (manifests) or `RULESETS` (per-node rulesets).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from netwarden.cli.common import FilesOption, load_cluster, warn
from netwarden.dataplane.nftables import calico_interfaces, compile_ruleset
from netwarden.dialects.calico_writer import write_calico
from netwarden.dialects.k8s_writer import write_k8s
from netwarden.errors import UsageError
from netwarden.model import ClusterState

Writer = Callable[[ClusterState], Sequence[dict[str, Any]]]
RulesetCompiler = Callable[[ClusterState, str], str]

#: Target name -> the writer that turns a cluster into that target's manifests.
TARGETS: dict[str, Writer] = {
    "k8s": write_k8s,
    "calico": write_calico,
}


def _nftables(cluster: ClusterState, node: str) -> str:
    """Interfaces are named as Calico names them when no lab gives the names."""
    return compile_ruleset(cluster, node, calico_interfaces(cluster, node)).script


def _nftables_flow_logs(cluster: ClusterState, node: str) -> str:
    """The same, with each new connection's verdicts logged (what `netwarden collect` reads)."""
    interfaces = calico_interfaces(cluster, node)
    return compile_ruleset(cluster, node, interfaces, flow_logs=True).script


#: Target name -> the compiler of one node's ruleset (text, as the dataplane loads it).
RULESETS: dict[str, RulesetCompiler] = {
    "nftables": _nftables,
}
#: Ruleset targets that can log flows (`--flow-logs`): target -> that compiler.
FLOW_LOG_RULESETS: dict[str, RulesetCompiler] = {
    "nftables": _nftables_flow_logs,
}


def compile_command(
    files: FilesOption,
    target: Annotated[
        str,
        typer.Option(
            "--target",
            "-t",
            metavar="TARGET",
            help=f"What to write: {' | '.join([*TARGETS, *RULESETS])}.",
            show_default=False,
        ),
    ],
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output-dir",
            metavar="DIR",
            help="Write one file per resource kind into DIR instead of stdout.",
            file_okay=False,
        ),
    ] = None,
    node: Annotated[
        str | None,
        typer.Option("--node", metavar="NODE", help="The node to compile a ruleset for."),
    ] = None,
    flow_logs: Annotated[
        bool,
        typer.Option(
            "--flow-logs",
            help="nftables: also log each new connection's deciding rules to NFLOG (read by"
            " `netwarden collect --node`).",
        ),
    ] = False,
) -> None:
    """Write the policies read with -f as manifests for TARGET, or one node's ruleset."""
    if flow_logs and target not in FLOW_LOG_RULESETS:
        raise UsageError(f"--flow-logs is for --target {' | '.join(FLOW_LOG_RULESETS)}")
    if target in RULESETS:
        if node is None or output_dir is not None:
            raise UsageError(f"--target {target} needs --node NODE and prints to stdout")
        cluster = load_cluster(files)
        if node not in cluster.nodes_by_name and not any(e.node == node for e in cluster.endpoints):
            raise UsageError(f"unknown node {node!r}: no Node object or pod names it")
        compiler = FLOW_LOG_RULESETS[target] if flow_logs else RULESETS[target]
        sys.stdout.write(compiler(cluster, node))
        return
    writer = TARGETS.get(target)
    if writer is None:
        choices = ", ".join([*TARGETS, *RULESETS])
        raise UsageError(f"unknown target {target!r} (choose from {choices})")
    if node is not None:
        raise UsageError(f"--node is for ruleset targets ({', '.join(RULESETS)})")
    documents = list(writer(load_cluster(files)))
    if not documents:
        warn("nothing to write: the inputs hold no policies")
    if output_dir is None:
        sys.stdout.write(dump(documents))
        return
    for path, count in write_by_kind(documents, output_dir):
        typer.echo(f"wrote {path} ({count} resource{'s' if count != 1 else ''})")


def dump(documents: Sequence[dict[str, Any]]) -> str:
    """Multi-document YAML, keys in the order written, long selectors on one line."""
    return yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False, width=1000)


def write_by_kind(documents: Sequence[dict[str, Any]], directory: Path) -> list[tuple[Path, int]]:
    """One file per kind (`networkpolicy.yaml`), named with the API group as well when two
    groups share a kind. Every file is rendered before the first is written."""
    groups: dict[str, set[str]] = {}
    for document in documents:
        group = document["apiVersion"].rpartition("/")[0] or "core"
        groups.setdefault(document["kind"], set()).add(group)
    files: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        kind = document["kind"]
        name = kind.lower()
        if len(groups[kind]) > 1:
            name += "." + (document["apiVersion"].rpartition("/")[0] or "core")
        files.setdefault(name + ".yaml", []).append(document)
    rendered = {name: dump(contents) for name, contents in files.items()}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in rendered.items():
            path = directory / name
            path.write_text(text, encoding="utf-8")
            written.append((path, len(files[name])))
    except OSError as error:
        raise UsageError(f"cannot write to {directory}: {error}") from None
    return written
