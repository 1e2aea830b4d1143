"""The state directory: the last good set and the status of every feed, on disk.

    <state>/feeds/<name>/status.json     FeedStatus (last success, last error, counts, ...)
    <state>/feeds/<name>/entries.txt     the set in force: aggregated CIDRs or domain names
    <state>/feeds/<name>/held.txt        a new version held for review (see safety.py)
    <state>/feeds/<name>/taxii.json      TAXII objects known so far and the polling cursor
    <state>/networksets/threatfeed.<name>.yaml   the GlobalNetworkSet of an IP feed

Every file is written to a temporary name and renamed into place, so a reader (another
command, the scheduler in another process) sees the old file or the new one, never half.
A failed fetch touches nothing but status.json: the last good set stays.
"""

from __future__ import annotations

import json
import os
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
    disabled: bool = False  # mode Disabled: not pulled, its last good set (if any) kept
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeedStatus:
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        for key in ("bad", "withheld"):
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
        path = self.network_set_dir / f"{NETWORK_SET_PREFIX}{name}.yaml"
        _write(path, network_set_yaml(NETWORK_SET_PREFIX + name, labels, nets))
        return path


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
