"""`netwarden feeds` and `netwarden threat`: threat feeds pulled, kept, enforced and checked.

    netwarden feeds sync -f feeds/ [--state-dir DIR] [--cluster PATH...] [--protect CIDR...]
                         [--accept NAME...] [--secrets-dir DIR] [--no-prune] [--netns NS --apply]
    netwarden feeds status [--state-dir DIR] [-o json]
    netwarden feeds run -f feeds/ [--state-dir DIR] [--secrets-dir DIR] [--no-prune]
                        [--apply [--netns NS]]                                 # until stopped
    netwarden feeds apply [-f feeds/ [--no-prune]] [--state-dir DIR] [--netns NS] [--remove]
    netwarden threat check IP|DOMAIN... [--state-dir DIR] [--subdomains] [-o json]

`sync` writes each IP feed's GlobalNetworkSet `threatfeed.<name>` into `<state>/networksets/`:
give that folder with `-f` to evaluate, explain or verify and the feeds are network sets like
any other. `sync` exits 1 when a feed failed (its last good set stays), 2 on bad input.

The `-f` inputs are the whole feed configuration: a feed in the state directory that they no
longer hold is removed (state, network set, and its sets from the dataplane at the next load),
as Calico deletes the GlobalNetworkSet of a deleted GlobalThreatFeed; `--no-prune` keeps it.
Header values named by `valueFrom` come from `--secrets-dir DIR/<name>/<key>` first, then
from Secret / ConfigMap manifests among the `-f` inputs (see `threatintel.headers`).
The work is `netwarden.threatintel` and `netwarden.dataplane.threat_block`.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from ipaddress import ip_network
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.table import Column, Table

from netwarden.cli.common import FilesOption, TableOrJson, load_cluster, stdout_console, warn
from netwarden.dataplane.threat_block import FeedSets, ThreatBlocker
from netwarden.dialects.k8s_config import read_key_values
from netwarden.dialects.source import read_paths
from netwarden.dialects.threat_feed import read_feeds
from netwarden.errors import UsageError
from netwarden.model import FeedContent, IPNetwork, ThreatFeed
from netwarden.threatintel.check import FeedIndex
from netwarden.threatintel.headers import HeaderValues
from netwarden.threatintel.safety import protected_nets
from netwarden.threatintel.schedule import Scheduler
from netwarden.threatintel.state import FeedStatus, FeedStore, default_state_dir
from netwarden.threatintel.sync import SyncOptions, prune_feeds, sync_feed

feeds_app = typer.Typer(help="Threat feeds: sync, status, the scheduler, the dataplane.")
threat_app = typer.Typer(help="Threat intelligence look-ups.")

StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        metavar="DIR",
        help="Where feeds keep their sets and status (default $NETWARDEN_STATE_DIR or "
        "~/.local/state/netwarden).",
        file_okay=False,
    ),
]
ClusterOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--cluster",
        metavar="PATH",
        help="Cluster manifests: node, pod and Service addresses are never blocked.",
    ),
]
ProtectOption = Annotated[
    list[str] | None,
    typer.Option("--protect", metavar="CIDR", help="Never block this range (pod/service CIDR)."),
]
NetnsOption = Annotated[
    str | None,
    typer.Option("--netns", metavar="NS", help="Network namespace of the dataplane."),
]
SecretsDirOption = Annotated[
    Path | None,
    typer.Option(
        "--secrets-dir",
        metavar="DIR",
        help="Header values named by valueFrom, as a volume mount: DIR/<name>/<key>. "
        "Looked up before Secret/ConfigMap manifests among the -f inputs.",
        exists=True,
        file_okay=False,
    ),
]
NoPruneOption = Annotated[
    bool,
    typer.Option(
        "--no-prune",
        help="Keep feeds the -f inputs no longer hold (default: remove their state, "
        "network set and dataplane sets).",
    ),
]


@dataclass(frozen=True)
class FeedInputs:
    """The feeds of the -f inputs and the Secret/ConfigMap manifests beside them."""

    feeds: list[ThreatFeed]
    header_values: HeaderValues


def _store(state_dir: Path | None) -> FeedStore:
    return FeedStore(state_dir or default_state_dir())


def _load_feeds(files: Sequence[Path], secrets_dir: Path | None = None) -> FeedInputs:
    if not files:
        raise UsageError("no feeds: give GlobalThreatFeed / ThreatFeed manifests with -f")
    documents = read_paths(files)
    feeds, notices = read_feeds(documents)
    for item in notices:
        warn(str(item))
    if not feeds:
        raise UsageError("no GlobalThreatFeed or ThreatFeed found in the -f inputs")
    return FeedInputs(feeds, HeaderValues(tuple(read_key_values(documents)), secrets_dir))


def _options(
    cluster: Sequence[Path] | None,
    protect: Sequence[str] | None,
    accept: Sequence[str] = (),
    header_values: HeaderValues | None = None,
) -> SyncOptions:
    networks: list[IPNetwork] = []
    for text in protect or ():
        try:
            networks.append(ip_network(text, strict=False))
        except ValueError:
            raise UsageError(f"--protect {text!r}: not a CIDR") from None
    state = load_cluster(list(cluster)) if cluster else None
    protected = protected_nets(state, (), networks)
    return SyncOptions(protected, frozenset(accept), header_values=header_values or HeaderValues())


def prune(feeds: Sequence[ThreatFeed], store: FeedStore, enabled: bool = True) -> list[str]:
    """Forget the feeds the configuration no longer holds (unless `enabled` is off, i.e.
    `--no-prune`); the names removed, each reported."""
    removed = prune_feeds(store, {feed.name for feed in feeds}) if enabled else []
    for name in removed:
        stdout_console().print(
            f"removed: feed {name} (no longer configured): its state and network set are "
            "deleted; the next dataplane load drops its sets"
        )
    return removed


def set_aside_disabled(feeds: Sequence[ThreatFeed], store: FeedStore) -> None:
    """Disabled feeds leave force before any load (`sync_feed` pulls nothing for them)."""
    for feed in feeds:
        if not feed.enabled:
            sync_feed(feed, store, SyncOptions())


def _snapshot_path(store: FeedStore, netns: str | None) -> Path:
    return store.root / "dataplane" / f"{netns or 'host'}.json"


def ip_feed_sets(store: FeedStore) -> list[FeedSets]:
    """The set in force of every IP feed in the store, by feed name."""
    found = []
    for name in store.names():
        status = store.status(name)
        entries = store.entries(name)
        if status is not None and entries is not None and status.content == "IPSet":
            found.append(FeedSets.from_entries(name, entries))
    return found


def apply_dataplane(
    store: FeedStore, netns: str | None, blocker: ThreatBlocker | None = None
) -> None:
    """Load every IP feed's set in force into the threat table of `netns` (`blocker`: the
    one a long-running process keeps, which remembers what it loaded)."""
    blocker = blocker or ThreatBlocker(netns, _snapshot_path(store, netns))
    feeds = ip_feed_sets(store)
    applied = blocker.apply(feeds)
    how = "loaded the table" if applied.full else f"changed {applied.changed} elements"
    if applied.removed:
        how = f"removed the sets of {', '.join(applied.removed)}; {how}"
    stdout_console().print(
        f"dataplane{' ' + netns if netns else ''}: {how}, {len(feeds)} feed(s), "
        f"{applied.elements} elements"
    )


def _print_statuses(statuses: Sequence[FeedStatus]) -> None:
    table = Table(
        Column("feed", no_wrap=True),  # names stay whole and greppable
        "entries",
        "added",
        "removed",
        "bad",
        "withheld",
        Column("state", overflow="fold"),
    )
    for status in statuses:
        state = "ok"
        if status.disabled:
            state = "disabled"
        elif status.held:
            state = f"[yellow]held: {status.held}[/]"
        elif status.last_error:
            state = f"[red]error: {status.last_error}[/]"
        table.add_row(
            status.name,
            str(status.entries),
            str(status.added),
            str(status.removed),
            str(status.bad_count),
            str(status.withheld_count),
            state,
        )
    stdout_console().print(table)


def _report(status: FeedStatus) -> None:
    for note in status.notes:
        warn(f"feed {status.name}: {note}")
    for line in status.bad[:10]:
        warn(f"feed {status.name}: bad entry {line}")
    if status.bad_count > 10:
        warn(f"feed {status.name}: {status.bad_count} bad entries in all")
    for line in status.withheld[:10]:
        warn(f"feed {status.name}: {line}")
    if status.held:
        warn(f"feed {status.name}: held for review ({status.held}); `--accept {status.name}`")


@feeds_app.command("sync")
def sync_command(
    files: FilesOption,
    state_dir: StateDirOption = None,
    cluster: ClusterOption = None,
    protect: ProtectOption = None,
    accept: Annotated[
        list[str] | None,
        typer.Option("--accept", metavar="NAME", help="Apply this feed's held version."),
    ] = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Load the sets into the dataplane afterwards.")
    ] = False,
    netns: NetnsOption = None,
    secrets_dir: SecretsDirOption = None,
    no_prune: NoPruneOption = False,
) -> None:
    """Pull every feed once; keep the last good set of any that fails."""
    inputs = _load_feeds(files, secrets_dir)
    feeds = inputs.feeds
    store = _store(state_dir)
    options = _options(cluster, protect, accept or (), inputs.header_values)
    prune(feeds, store, enabled=not no_prune)
    statuses = [sync_feed(feed, store, options) for feed in feeds]
    for status in statuses:
        _report(status)
    _print_statuses(statuses)
    if apply:
        apply_dataplane(store, netns)
    if any(status.last_error and status.consecutive_failures for status in statuses):
        raise typer.Exit(1)


@feeds_app.command("status")
def status_command(
    state_dir: StateDirOption = None,
    output: Annotated[TableOrJson, typer.Option("-o", "--output")] = TableOrJson.TABLE,
) -> None:
    """Last success, last error, entries and changes of every synced feed."""
    store = _store(state_dir)
    statuses = [s for s in (store.status(name) for name in store.names()) if s is not None]
    if output is TableOrJson.JSON:
        typer.echo(json.dumps([asdict(s) for s in statuses], indent=1))
        return
    _print_statuses(statuses)


@feeds_app.command("run")
def run_command(
    files: FilesOption,
    state_dir: StateDirOption = None,
    cluster: ClusterOption = None,
    protect: ProtectOption = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Load the dataplane after each change.")
    ] = False,
    netns: NetnsOption = None,
    max_syncs: Annotated[
        int | None, typer.Option("--max-syncs", metavar="N", help="Stop after N syncs.")
    ] = None,
    secrets_dir: SecretsDirOption = None,
    no_prune: NoPruneOption = False,
) -> None:
    """Keep every feed fresh on its period until SIGINT or SIGTERM."""
    inputs = _load_feeds(files, secrets_dir)
    feeds = inputs.feeds
    store = _store(state_dir)
    options = _options(cluster, protect, header_values=inputs.header_values)
    prune(feeds, store, enabled=not no_prune)
    set_aside_disabled(feeds, store)
    blocker = ThreatBlocker(netns, _snapshot_path(store, netns))

    def after(feed: ThreatFeed, status: FeedStatus) -> None:
        _report(status)
        _print_statuses([status])
        changed = status.added or status.removed
        if apply and feed.content is FeedContent.IP_SET and changed and not status.last_error:
            apply_dataplane(store, netns, blocker)

    scheduler = Scheduler(feeds, lambda feed: sync_feed(feed, store, options), after_sync=after)
    if apply:
        apply_dataplane(store, netns, blocker)  # the last good sets, before the first pull
    with stop_on_signals(scheduler):
        scheduler.run(max_syncs)


@contextmanager
def stop_on_signals(scheduler: Scheduler) -> Iterator[None]:
    """SIGINT and SIGTERM stop the loop between two syncs (main thread only); the previous
    handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        scheduler.stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@feeds_app.command("apply")
def apply_command(
    files: FilesOption = [],  # noqa: B006 - Typer reads the default, never mutates it
    state_dir: StateDirOption = None,
    netns: NetnsOption = None,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the threat table.")] = False,
    no_prune: NoPruneOption = False,
) -> None:
    """Load the feeds' sets in force into the dataplane (one nftables transaction). With
    -f (the feed configuration), feeds it no longer holds are removed and disabled ones set
    aside first; nothing is pulled."""
    store = _store(state_dir)
    if remove:
        ThreatBlocker(netns, _snapshot_path(store, netns)).remove()
        return
    if files:
        feeds = _load_feeds(files).feeds
        prune(feeds, store, enabled=not no_prune)
        set_aside_disabled(feeds, store)
    apply_dataplane(store, netns)


@threat_app.command("check")
def check_command(
    indicators: Annotated[list[str], typer.Argument(metavar="IP|DOMAIN...")],
    state_dir: StateDirOption = None,
    subdomains: Annotated[
        bool, typer.Option("--subdomains", help="A domain matches when a parent is listed.")
    ] = False,
    output: Annotated[TableOrJson, typer.Option("-o", "--output")] = TableOrJson.TABLE,
) -> None:
    """Which feeds list each indicator."""
    index = FeedIndex.from_store(_store(state_dir))
    found = {indicator: index.check(indicator, subdomains) for indicator in indicators}
    if output is TableOrJson.JSON:
        typer.echo(json.dumps({k: list(v) for k, v in found.items()}, indent=1))
        return
    table = Table("indicator", "feeds")
    for indicator, feeds in found.items():
        table.add_row(indicator, ", ".join(feeds) if feeds else "[green]not listed[/]")
    stdout_console().print(table)
