"""`netwarden recommend`: least-privilege policies from the traffic a flow store has seen.

The manifests go to stdout (multi-document YAML, ready for `kubectl apply -f -` or for
`netwarden preview -f`); what was read and what could not be expressed goes to stderr.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from netwarden.analysis.recommend import Target, recommend_store
from netwarden.cli.common import FilesOption, load_cluster, stderr_console, warn
from netwarden.cli.compile import dump
from netwarden.cli.flows_options import parse_time
from netwarden.cli.preview import (
    FlowsOption,
    SinceOption,
    UntilOption,
    WhereOption,
    existing_store,
)


def recommend_command(
    files: FilesOption,
    flows: FlowsOption,
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="Only this namespace (default: every one seen)."),
    ] = None,
    target: Annotated[
        Target,
        typer.Option(
            "--target",
            help="k8s: Kubernetes NetworkPolicy; calico: Calico StagedNetworkPolicy.",
        ),
    ] = Target.K8S,
    since: SinceOption = None,
    until: UntilOption = None,
    where: WhereOption = None,
) -> None:
    """Policies that allow exactly the allowed traffic stored in --flows, per workload and port.

    -f gives the inventory (namespaces, pods, workloads) the flows are matched against; its
    policies, if any, play no part."""
    from netwarden.flows.filter import FlowFilter

    cluster = load_cluster(files)
    condition = FlowFilter.parse(where) if where else None
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    with existing_store(flows) as store:  # the store folds the records: only groups leave it
        recommendation = recommend_store(cluster, store, namespace, target, condition, start, end)
    documents = recommendation.manifests()
    sys.stdout.write(dump(documents))
    for note in recommendation.notes:
        warn(note)
    for skipped in recommendation.skipped:
        warn(
            f"not used: {skipped.count} records, {skipped.reason} "
            f"(first at row {skipped.first_row})"
        )
    groups = len(recommendation.groups)
    stderr_console().print(
        f"{recommendation.records} records read: {recommendation.allowed_records} allowed used, "
        f"{recommendation.denied_records} denied left denied; {len(documents)} policies for "
        f"{groups} workload group{'s' if groups != 1 else ''}"
    )
