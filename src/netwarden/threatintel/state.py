"""The state directory: the last good set and the status of every feed, on disk.

    <state>/feeds/<name>/status.json     FeedStatus (last success, last error, counts, ...)
    <state>/feeds/<name>/entries.txt     the set in force: aggregated CIDRs or domain names
    <state>/feeds/<name>/held.txt        a new version held for review (see safety.py)
    <state>/feeds/<name>/disabled.txt    the last good set of a feed in mode Disabled: set
                                         aside (not in force, not blocked, not matched) until
                                         the feed is enabled again
    <state>/feeds/<name>/taxii.json      TAXII objects known so far and the polling cursor
    <state>/networksets/threatfeed.<name>.yaml   the GlobalNetworkSet of an IP feed

Every file is written to a temporary name and renamed into place, so a reader (another
command, the scheduler in another process) sees the old file or the new one, never half.
A failed fetch touches nothing but status.json: the last good set stays. A feed removed from
the configuration is removed here whole (`remove`), as Calico deletes the GlobalNetworkSet of
a deleted GlobalThreatFeed. No header value (they may be secrets) is ever written here.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from netwarden.errors import UsageError

#: Where `--state-dir` points by default.
STATE_ENV = "NETWARDEN_STATE_DIR"
NETWORK_SET_PREFIX = "threatfeed."


def default_state_dir() -> Path:
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "netwarden"


@dataclass(frozen=True)
class FeedStatus:
    """What `feeds status` shows for one feed; stored as JSON."""

    name: str
    content: str
    source: str
    last_attempt: str | None = None
    last_success: str | None = None
    last_error: str | None = None
    entries: int = 0  # entries in force (aggregated CIDRs or domain names)
    values: int = 0  # values the last good version held, before aggregation
    added: int = 0  # since the previous good version
    removed: int = 0
    bad_count: int = 0
    bad: tuple[str, ...] = ()
    withheld_count: int = 0
    withheld: tuple[str, ...] = ()
    held: str | None = None  # why the newest version waits for review
    etag: str | None = None
    last_modified: str | None = None
    consecutive_failures: int = 0
    disabled: bool = False  # mode Disabled: not pulled, its last good set set aside
    notes: tuple[str, ...] = ()  # e.g. an optional header left out (never a value)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeedStatus:
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        for key in ("bad", "withheld", "notes"):
            known[key] = tuple(known.get(key, ()))
        return cls(**known)

    def evolve(self, **changes: Any) -> FeedStatus:
        return replace(self, **changes)


class FeedStore:
    """One state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def feed_dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise UsageError(f"invalid feed name {name!r}")
        return self.root / "feeds" / name

    @property
    def network_set_dir(self) -> Path:
        return self.root / "networksets"

    def names(self) -> list[str]:
        folder = self.root / "feeds"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if (p / "status.json").is_file())

    def stored_names(self) -> list[str]:
        """Every feed with anything here: a folder (even without a status) or a network set."""
        names = set()
        folder = self.root / "feeds"
        if folder.is_dir():
            names |= {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
        if self.network_set_dir.is_dir():
            for path in self.network_set_dir.glob(f"{NETWORK_SET_PREFIX}*.yaml"):
                names.add(path.name.removeprefix(NETWORK_SET_PREFIX).removesuffix(".yaml"))
        return sorted(names)

    def remove(self, name: str) -> None:
        """Forget a feed: its network set first (what other commands read as a block list),
        then its folder."""
        self.remove_network_set(name)
        shutil.rmtree(self.feed_dir(name), ignore_errors=True)

    def set_aside(self, name: str) -> None:
        """Mode Disabled: the set in force leaves force (kept in disabled.txt), and with it
        the network set."""
        entries = self.feed_dir(name) / "entries.txt"
        if entries.is_file():
            os.replace(entries, self.feed_dir(name) / "disabled.txt")
        self.remove_network_set(name)

    def restore(self, name: str) -> list[str] | None:
        """Enabled again: the set aside comes back in force (None: nothing was set aside)."""
        aside = self.feed_dir(name) / "disabled.txt"
        if not aside.is_file() or (self.feed_dir(name) / "entries.txt").is_file():
            return None
        os.replace(aside, self.feed_dir(name) / "entries.txt")
        return self.entries(name)

    def status(self, name: str) -> FeedStatus | None:
        path = self.feed_dir(name) / "status.json"
        if not path.is_file():
            return None
        try:
            return FeedStatus.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as error:
            raise UsageError(f"{path}: unreadable feed status: {error}") from None

    def save_status(self, status: FeedStatus) -> None:
        data = asdict(status)
        _write(self.feed_dir(status.name) / "status.json", json.dumps(data, indent=1) + "\n")

    def entries(self, name: str) -> list[str] | None:
        """The set in force (None: the feed never succeeded)."""
        path = self.feed_dir(name) / "entries.txt"
        if not path.is_file():
            return None
        return path.read_text(encoding="utf-8").split()

    def save_entries(self, name: str, entries: Iterable[str]) -> None:
        _write(self.feed_dir(name) / "entries.txt", "".join(f"{e}\n" for e in entries))
        (self.feed_dir(name) / "held.txt").unlink(missing_ok=True)

    def save_held(self, name: str, entries: Iterable[str]) -> None:
        _write(self.feed_dir(name) / "held.txt", "".join(f"{e}\n" for e in entries))

    def taxii(self, name: str) -> tuple[dict[str, Any], str | None]:
        path = self.feed_dir(name) / "taxii.json"
        if not path.is_file():
            return {}, None
        data = json.loads(path.read_text(encoding="utf-8"))
        return dict(data.get("objects", {})), data.get("cursor")

    def save_taxii(self, name: str, objects: Mapping[str, Any], cursor: str | None) -> None:
        text = json.dumps({"cursor": cursor, "objects": objects}, sort_keys=True)
        _write(self.feed_dir(name) / "taxii.json", text)

    def save_network_set(self, name: str, labels: Mapping[str, str], nets: list[str]) -> Path:
        """A Calico GlobalNetworkSet any command can read with `-f <state>/networksets`."""
        path = self.network_set_path(name)
        _write(path, network_set_yaml(NETWORK_SET_PREFIX + name, labels, nets))
        return path

    def network_set_path(self, name: str) -> Path:
        self.feed_dir(name)  # checks the name
        return self.network_set_dir / f"{NETWORK_SET_PREFIX}{name}.yaml"

    def remove_network_set(self, name: str) -> None:
        self.network_set_path(name).unlink(missing_ok=True)


def network_set_yaml(name: str, labels: Mapping[str, str], nets: list[str]) -> str:
    """Written by hand, not by a YAML dumper: a million CIDRs dump in a fraction of the time,
    and every value is quoted with JSON escapes, which YAML reads back exactly."""
    lines = [
        "apiVersion: projectcalico.org/v3",
        "kind: GlobalNetworkSet",
        "metadata:",
        f"  name: {json.dumps(name)}",
    ]
    if labels:
        lines.append("  labels:")
        lines += [f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(labels.items())]
    lines.append("spec:")
    lines.append("  nets:" if nets else "  nets: []")
    lines += [f"  - {net}" for net in nets]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
