"""The output formats of a semantic diff: txt, json, csv and md (a pull-request comment).

Every format lists the added connections, then the removed ones, aggregated as asked (by
workload or pod), each with the representative flow the engine explained, what allows it on
the side it is allowed and what denies it on the other; then the endpoints of one side only.

- txt: `+ src -> dst: ports` / `- ...` lines, each with its explanation indented below.
- csv: header `change,src,dst,protocol,ports,flow,allowed_by,denied_by`, one row per changed
  (source, destination, protocol) as the connectivity CSV writes them, then no endpoint rows.
- json: `{"by", "summary": {...}, "added": [...], "removed": [...], "endpoints": {...}}`.
- md: a summary line, an added and a removed table; a table (or endpoint list) longer than
  `COLLAPSE_AFTER` rows folds into `<details>`, and past `MD_MAX_ROWS` rows it stops with a
  line saying how many more there are (a comment has a size limit; the csv has them all).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from typing import TextIO

from netwarden.analysis.diff import ConnectionChange, ConnectivityDiff
from netwarden.analysis.groups import By

Renderer = Callable[[ConnectivityDiff, By, TextIO], None]

#: Markdown tables longer than this fold into a <details> block.
COLLAPSE_AFTER = 10
#: Markdown rows written per table at most (GitHub comments hold 65,536 characters).
MD_MAX_ROWS = 200
CSV_HEADER = ("change", "src", "dst", "protocol", "ports", "flow", "allowed_by", "denied_by")


def _split(diff: ConnectivityDiff, by: By) -> tuple[list[ConnectionChange], list[ConnectionChange]]:
    added = list(diff.changes(by, "added"))
    removed = list(diff.changes(by, "removed"))
    return added, removed


def summary(added: int, removed: int, diff: ConnectivityDiff, by: By) -> str:
    """`2 connections added, 1 removed (by workload); 1 endpoint only in head`."""
    if added or removed:
        noun = "connection" if added == 1 else "connections"
        text = f"{added} {noun} added, {removed} removed (by {by})"
    else:
        text = "no connection added or removed"
    endpoints = diff.endpoints
    notes = [
        _count(len(endpoints.only_in_base), "only in base"),
        _count(len(endpoints.only_in_head), "only in head"),
        _count(len(endpoints.changed), "changed"),
    ]
    notes = [note for note in notes if note]
    return text + ("; " + ", ".join(notes) if notes else "")


def _count(count: int, what: str) -> str:
    if not count:
        return ""
    return f"{count} endpoint{'s' if count != 1 else ''} {what}"


def render_txt(diff: ConnectivityDiff, by: By, out: TextIO) -> None:
    added, removed = _split(diff, by)
    out.write(f"netwarden diff: {summary(len(added), len(removed), diff, by)}\n")
    for title, changes, sign, allows, denies in (
        ("Added connections", added, "+", "head", "base"),
        ("Removed connections", removed, "-", "base", "head"),
    ):
        if not changes:
            continue
        out.write(f"\n{title}:\n")
        for change in changes:
            out.write(f"{sign} {change.src.name} -> {change.dst.name}: {change.ports}\n")
            out.write(f"    e.g. {change.why.flow}\n")
            out.write(f"    allowed in {allows} by {change.why.allowed_by}\n")
            out.write(f"    denied in {denies} by {change.why.denied_by}\n")
    for title, names in _endpoint_lists(diff):
        out.write(f"\n{title}:\n")
        out.writelines(f"  {name}\n" for name in names)


def _endpoint_lists(diff: ConnectivityDiff) -> list[tuple[str, tuple[str, ...]]]:
    lists = [
        ("Endpoints only in base", diff.endpoints.only_in_base),
        ("Endpoints only in head", diff.endpoints.only_in_head),
        ("Endpoints changed (labels, addresses, ports or owner)", diff.endpoints.changed),
    ]
    return [(title, names) for title, names in lists if names]


def render_csv(diff: ConnectivityDiff, by: By, out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for change in diff.changes(by):
        why = change.why
        for protocol, ports in change.ports.rows():
            writer.writerow(
                (
                    change.kind,
                    change.src.name,
                    change.dst.name,
                    protocol,
                    ports,
                    why.flow,
                    why.allowed_by,
                    why.denied_by,
                )
            )


def _json_change(change: ConnectionChange) -> dict[str, object]:
    return {
        "src": change.src.name,
        "dst": change.dst.name,
        "ports": change.ports.to_json(),
        "connection": str(change.ports),
        "rows": [[protocol, ports] for protocol, ports in change.ports.rows()],
        "flow": change.why.flow,
        "allowed_by": change.why.allowed_by,
        "denied_by": change.why.denied_by,
    }


def render_json(diff: ConnectivityDiff, by: By, out: TextIO) -> None:
    added, removed = _split(diff, by)
    endpoints = diff.endpoints
    document = {
        "by": by,
        "summary": {
            "added": len(added),
            "removed": len(removed),
            "changed": bool(added or removed),
            "endpoints_only_in_base": len(endpoints.only_in_base),
            "endpoints_only_in_head": len(endpoints.only_in_head),
            "endpoints_changed": len(endpoints.changed),
        },
        "added": [_json_change(c) for c in added],
        "removed": [_json_change(c) for c in removed],
        "endpoints": {
            "only_in_base": list(endpoints.only_in_base),
            "only_in_head": list(endpoints.only_in_head),
            "changed": list(endpoints.changed),
        },
    }
    json.dump(document, out, indent=1)
    out.write("\n")


def render_md(diff: ConnectivityDiff, by: By, out: TextIO) -> None:
    added, removed = _split(diff, by)
    out.write("### netwarden diff\n\n")
    out.write(f"**{_escape(summary(len(added), len(removed), diff, by))}**\n")
    for title, changes, allows, denies in (
        ("Added", added, "head", "base"),
        ("Removed", removed, "base", "head"),
    ):
        if not changes:
            continue
        out.write(f"\n#### {title} connections ({len(changes)})\n\n")
        rows = [
            "| source | destination | connection | example flow "
            f"| allowed in {allows} by | denied in {denies} by |",
            "|---|---|---|---|---|---|",
        ]
        for change in changes[:MD_MAX_ROWS]:
            cells = (
                change.src.name,
                change.dst.name,
                str(change.ports),
                change.why.flow,
                change.why.allowed_by,
                change.why.denied_by,
            )
            rows.append("| " + " | ".join(_code(cell) for cell in cells) + " |")
        if len(changes) > MD_MAX_ROWS:
            rows.append("")
            rows.append(
                f"… and {len(changes) - MD_MAX_ROWS} more (`netwarden diff -o csv` lists all)"
            )
        _fold(out, f"{len(changes)} connections {title.lower()}", rows)
    for title, names in _endpoint_lists(diff):
        out.write(f"\n#### {title} ({len(names)})\n\n")
        items = [f"- `{name}`" for name in names[:MD_MAX_ROWS]]
        if len(names) > MD_MAX_ROWS:
            items.append(f"- … and {len(names) - MD_MAX_ROWS} more")
        _fold(out, f"{len(names)} endpoints", items)


def _fold(out: TextIO, label: str, lines: list[str]) -> None:
    """Lines as they are, or inside a collapsed <details> block when they are many."""
    if len(lines) > COLLAPSE_AFTER:
        out.write(f"<details><summary>{label}</summary>\n\n")
        out.writelines(f"{line}\n" for line in lines)
        out.write("\n</details>\n")
    else:
        out.writelines(f"{line}\n" for line in lines)


def _code(text: str) -> str:
    """A table cell: names and flows as code, `|` escaped (GitHub honours `\\|` in code)."""
    return f"`{_escape(text)}`" if text else ""


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


RENDERERS: dict[str, Renderer] = {
    "txt": render_txt,
    "csv": render_csv,
    "json": render_json,
    "md": render_md,
}
