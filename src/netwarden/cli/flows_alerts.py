"""`netwarden flows alerts`: stored records matched against synced threat feeds."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from netwarden.cli.common import stderr_console, stdout_console
from netwarden.cli.flows_options import SinceOption, StoreOption, UntilOption, parse_time
from netwarden.cli.flows_output import json_default
from netwarden.errors import UsageError
from netwarden.flows.store import open_store


class AlertOutput(StrEnum):
    TABLE = "table"
    JSON = "json"


def alerts_command(
    store: StoreOption,
    state_dir: Annotated[
        Path,
        typer.Option(
            "--state-dir",
            metavar="FEEDS",
            help="Feed state (`feeds sync --state-dir`).",
            file_okay=False,
        ),
    ],
    since: SinceOption = None,
    until: UntilOption = None,
    output: Annotated[AlertOutput, typer.Option("-o", "--output")] = AlertOutput.TABLE,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when there is any alert, 0 when not.")
    ] = False,
) -> None:
    """Records to or from an address a threat feed lists, DNS lookups of a name a domain feed
    lists and records to or from the addresses they returned, per feed, indicator and pair."""
    from netwarden.flows.alerts import alert_rows, scan_alerts
    from netwarden.threatintel.state import FeedStore

    feeds = FeedStore(state_dir)
    if not any(feeds.entries(name) is not None for name in feeds.names()):
        raise UsageError(f"{state_dir}: no feed synced there (netwarden feeds sync --state-dir)")
    target = open_store(store)
    try:
        report = scan_alerts(target, feeds, parse_time(since), parse_time(until))
    finally:
        target.close()
    if report.unchecked_domain_feeds:
        stderr_console().print(
            f"not checked: domain feed(s) {', '.join(report.unchecked_domain_feeds)} (no DNS"
            " record among the scanned flow records: import DNS logs, e.g. --format calico-dns)",
            markup=False,
        )
    if output is AlertOutput.JSON:
        sys.stdout.write(json.dumps(alert_rows(report.alerts), indent=1) + "\n")
    else:
        table = Table("first seen", "last seen", "feed", "indicator", "dir", "source", "dest",
                      "ports", "action", "policy", "records")  # fmt: skip
        for alert in report.alerts:
            table.add_row(
                json_default(alert.first_seen), json_default(alert.last_seen), alert.feed,
                alert.indicator if alert.query in (None, alert.indicator)
                else f"{alert.indicator}\nquery {alert.query}",
                alert.direction, f"{alert.source_ip} {alert.source}",
                f"{alert.dest_ip} {alert.dest}", ",".join(alert.ports), ",".join(alert.actions),
                "\n".join(alert.policies), str(alert.records),
            )  # fmt: skip
        console = stdout_console()
        console.print(table)
        console.print(
            f"{len(report.alerts)} alerts from {report.records} records against"
            f" {len(report.ip_feeds)} IP feed(s)"
            + (
                f" and {len(report.domain_feeds)} domain feed(s) ({report.dns_records} DNS records)"
                if report.domain_feeds
                else ""
            )
            + f" in {report.seconds:.2f} s",
            style="dim",
            markup=False,
        )
    if exit_code and report.alerts:
        raise typer.Exit(1)
