"""Incremental updates: the ruleset in place turned into the next one by changing elements.

`plan_update` compares the ruleset loaded before (`LoadedRuleset`, kept as state) with the
next one. When their skeletons (declarations and chains) are equal, only set and verdict map
elements differ, and the update is one `nft -f` transaction of `delete element` / `add element`
lines: no rule is rewritten, and nft does not re-read a hash set to change it, so one pod's
churn costs milliseconds at any cluster size. Anything else is the full atomic replacement
(`Ruleset.script`).

The transaction first swaps the `generation` element: it deletes the element naming the
content the update was computed against, which fails (and aborts the whole transaction) when
the table holds anything else, e.g. after someone else loaded or flushed it. The applier then
falls back to the full replacement, so a stale state file can never leave a mixed table.

Order inside the transaction, for the reader (nft applies a transaction atomically anyway):
dispatch entries of endpoints that go or change are deleted first, then set elements are
deleted and added, and dispatch entries of new endpoints come last, so a new endpoint's
interface points at its policy only once the sets that policy uses hold their addresses.
Until its dispatch entry exists the interface is dropped by the unknown-interface rule.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter

from netwarden.dataplane.apply import apply_ruleset, load_script
from netwarden.dataplane.nft_ruleset import GENERATION_SET, TABLE, Ruleset, SetContents
from netwarden.errors import ApplyError, InputError
from netwarden.model import Location

__all__ = [
    "AppliedUpdate",
    "ElementChange",
    "LoadedRuleset",
    "Update",
    "apply_update",
    "plan_update",
    "read_loaded",
    "write_loaded",
]


@dataclass(frozen=True)
class LoadedRuleset:
    """What netwarden loaded into a table: enough to compute the next update against it."""

    node: str
    skeleton: str
    generation: str
    contents: tuple[SetContents, ...]
    verdict_maps: tuple[str, ...] = ()

    @classmethod
    def of(cls, ruleset: Ruleset) -> LoadedRuleset:
        maps = tuple(d.name for d in ruleset.declarations if d.verdict_map)
        return cls(ruleset.node, ruleset.skeleton, ruleset.generation, ruleset.contents, maps)


_LOADED = TypeAdapter(LoadedRuleset)


@dataclass(frozen=True)
class ElementChange:
    """Elements to delete from and add to one set or map (a map's changed entry is both)."""

    name: str
    removed: tuple[str, ...]
    added: tuple[str, ...]
    verdict_map: bool = False


@dataclass(frozen=True)
class Update:
    """What loading `ruleset` over the previous state takes: element changes, or a full
    replacement (`full`, with the `reason`)."""

    node: str
    full: bool
    reason: str
    changes: tuple[ElementChange, ...]
    script: str

    @property
    def added(self) -> int:
        return sum(len(c.added) for c in self.changes)

    @property
    def removed(self) -> int:
        return sum(len(c.removed) for c in self.changes)

    def describe(self) -> str:
        if self.full:
            return f"full replacement ({self.reason})"
        if not self.changes:
            return "no change (elements as loaded)"
        return f"{self.added} element(s) added, {self.removed} removed; no rule rewritten"


@dataclass(frozen=True)
class AppliedUpdate:
    """An update loaded: what it was, how long nft took, and the state to keep."""

    update: Update
    seconds: float
    state: LoadedRuleset
    fallback: str = ""  # why an incremental transaction was rejected before a full replace


def plan_update(
    previous: LoadedRuleset | None,
    ruleset: Ruleset,
    changes: Sequence[ElementChange] | None = None,
) -> Update:
    """The transaction that turns `previous` (None: unknown) into `ruleset`. `changes`: the
    element changes from `previous` to `ruleset` when the caller knows them (`NodeCompiler`
    does), which spares comparing every set (a large one costs milliseconds)."""
    if previous is None:
        return _full(ruleset, "no previous state")
    if previous.node != ruleset.node:
        return _full(ruleset, f"the table was compiled for node {previous.node}")
    if previous.skeleton != ruleset.skeleton:
        return _full(ruleset, "chains or set declarations differ")
    if changes is not None:
        known = tuple(changes)
        script = _script(ruleset.node, previous.generation, ruleset.generation, known)
        return Update(ruleset.node, False, "", known, script)
    maps = {d.name for d in ruleset.declarations if d.verdict_map}
    before = {c.name: c.elements for c in previous.contents}
    found = []
    for contents in ruleset.contents:
        old = before.get(contents.name, ())
        if old is contents.elements or old == contents.elements:
            continue
        change = _difference(contents.name, old, contents.elements, contents.name in maps)
        if change.added or change.removed:
            found.append(change)
    return Update(
        ruleset.node,
        False,
        "",
        tuple(found),
        _script(ruleset.node, previous.generation, ruleset.generation, found),
    )


def apply_update(
    netns: str | None,
    previous: LoadedRuleset | None,
    ruleset: Ruleset,
    changes: Sequence[ElementChange] | None = None,
) -> AppliedUpdate:
    """Load `ruleset` in `netns`: incrementally when `previous` allows, else (or when the
    incremental transaction is rejected) as the full atomic replacement. Raises `ApplyError`
    when nft rejects the full replacement too; the table then holds what it held before.
    `changes` as for `plan_update`."""
    update = plan_update(previous, ruleset, changes)
    started = time.perf_counter()
    fallback = ""
    if not update.full:
        try:
            load_script(netns, update.script)
            return AppliedUpdate(update, time.perf_counter() - started, LoadedRuleset.of(ruleset))
        except ApplyError as error:
            fallback = str(error)
            update = _full(ruleset, "the incremental transaction was rejected")
            started = time.perf_counter()
    apply_ruleset(netns, update.script)
    return AppliedUpdate(update, time.perf_counter() - started, LoadedRuleset.of(ruleset), fallback)


def next_generation(generation: str, changes: Sequence[ElementChange]) -> str:
    """A generation for content reached by `changes` (cheaper than hashing every element)."""
    digest = hashlib.sha256(generation.encode())
    for change in changes:
        digest.update(f"{change.name}\n-{change.removed}\n+{change.added}\n".encode())
    return digest.hexdigest()[:8]


def _full(ruleset: Ruleset, reason: str) -> Update:
    return Update(ruleset.node, True, reason, (), ruleset.script)


def _difference(
    name: str, old: tuple[str, ...], new: tuple[str, ...], verdict_map: bool
) -> ElementChange:
    if not verdict_map:
        kept = set(old)
        fresh = set(new)
        return ElementChange(
            name, tuple(e for e in old if e not in fresh), tuple(e for e in new if e not in kept)
        )
    # A map entry is `"key" : verdict`: a key whose verdict changes is deleted and added.
    old_entries = dict(_entry(e) for e in old)
    new_entries = dict(_entry(e) for e in new)
    removed = tuple(f"{k} : {v}" for k, v in old_entries.items() if new_entries.get(k) != v)
    added = tuple(f"{k} : {v}" for k, v in new_entries.items() if old_entries.get(k) != v)
    return ElementChange(name, removed, added, True)


def _entry(element: str) -> tuple[str, str]:
    key, _, verdict = element.partition(" : ")
    return key, verdict


def _script(
    node: str, old_generation: str, new_generation: str, changes: Sequence[ElementChange]
) -> str:
    target = f"inet {TABLE}"
    added = sum(len(c.added) for c in changes)
    removed = sum(len(c.removed) for c in changes)
    lines = [
        f"# netwarden: update of node {node}: {added} element(s) added, {removed} removed",
        f"delete element {target} {GENERATION_SET} {{ 0x{old_generation} }}",
        f"add element {target} {GENERATION_SET} {{ 0x{new_generation} }}",
    ]
    maps = [c for c in changes if c.verdict_map]
    sets = [c for c in changes if not c.verdict_map]
    for change in maps:
        if change.removed:
            keys = ", ".join(_entry(e)[0] for e in change.removed)
            lines.append(f"delete element {target} {change.name} {{ {keys} }}")
    for change in sets:
        if change.removed:
            lines.append(f"delete element {target} {change.name} {{ {', '.join(change.removed)} }}")
    for change in sets:
        if change.added:
            lines.append(f"add element {target} {change.name} {{ {', '.join(change.added)} }}")
    for change in maps:
        if change.added:
            lines.append(f"add element {target} {change.name} {{ {', '.join(change.added)} }}")
    return "\n".join(lines) + "\n"


def read_loaded(path: Path) -> LoadedRuleset | None:
    """The state saved by `write_loaded`; None when there is no such file."""
    try:
        return _LOADED.validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise InputError(
            Location(str(path)), f"unreadable ruleset state ({str(error).splitlines()[0]})"
        ) from None


def write_loaded(path: Path, loaded: LoadedRuleset) -> None:
    """Save the state atomically: a reader sees the old file or the new one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_bytes(_LOADED.dump_json(loaded))
        temporary.replace(path)
    except OSError as error:
        raise ApplyError(f"the ruleset is loaded but its state was not saved: {error}") from None
