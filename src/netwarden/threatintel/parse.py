"""Feed bodies -> indicators: addresses and prefixes (both families) or domain names.

A feed is parsed in two steps: its format yields candidate values with where each was read
(`newlineDelimited` and `csv` by line, `json` by item of the JSONPath result, STIX by indicator
in `stix.py`), then `classify` turns them into prefixes or domain names. Parsing never stops
at a bad value: it is counted and the first `KEPT_BAD` are kept with their line and reason.

Addresses go through `socket.inet_pton` (C, strict: no `010.1`, no `1.2`), which keeps a
million-line feed to about a second; host bits of a prefix are cleared (`10.0.0.5/24` lists
`10.0.0.0/24`), as feeds write them either way.
"""

from __future__ import annotations

import csv
import json
import re
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netwarden.model.feeds import CsvFormat, FeedContent, FeedFormat, JsonFormat, NewlineFormat
from netwarden.threatintel.aggregate import MASKS, Prefixes, empty_prefixes, join_v6, split_v6

#: Bad values kept (with line and reason) for the status report; all are counted.
KEPT_BAD = 50
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class BadEntry:
    where: str  # "line 12", "item 3", "indicator--<uuid>"
    text: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text!r}: {self.reason}"


@dataclass(frozen=True)
class Candidates:
    """Values a format found, with a 1-based line or item number each."""

    values: list[str]
    lines: list[int]
    unit: str = "line"  # what `lines` count: "line" or "item"
    bad: list[BadEntry] = field(default_factory=list)
    bad_count: int = 0


@dataclass(frozen=True)
class ParsedFeed:
    v4: Prefixes
    v6: Prefixes
    domains: tuple[str, ...]
    bad: tuple[BadEntry, ...]
    bad_count: int
    values: int  # candidate values read, good and bad

    @property
    def entries(self) -> int:
        return len(self.v4) + len(self.v6) + len(self.domains)


class FormatError(ValueError):
    """The body is not in the feed's format at all (not JSON, a JSONPath that matches the
    wrong shape): the fetch fails and the last good set stays."""


def candidates(body: str, feed_format: FeedFormat) -> Candidates:
    """The values a body holds in `feed_format` (STIX bodies go through `stix.py`)."""
    if isinstance(feed_format, NewlineFormat):
        return _newline(body)
    if isinstance(feed_format, CsvFormat):
        return _csv(body, feed_format)
    if isinstance(feed_format, JsonFormat):
        return _json(body, feed_format.path)
    raise FormatError(f"{type(feed_format).__name__} bodies are read by the STIX reader")


def _newline(body: str) -> Candidates:
    values: list[str] = []
    lines: list[int] = []
    for number, raw in enumerate(body.splitlines(), start=1):
        text = raw.split("#", 1)[0].strip() if "#" in raw else raw.strip()
        if text:
            values.append(text)
            lines.append(number)
    return Candidates(values, lines)


def _csv(body: str, spec: CsvFormat) -> Candidates:
    result = Candidates([], [])
    column = spec.field_num
    bad: list[BadEntry] = []
    bad_count = 0
    header_pending = spec.header or spec.field_name is not None
    rows = csv.reader(
        _uncommented(body.splitlines(), spec.comment_delimiter), delimiter=spec.column_delimiter
    )
    try:
        for row in rows:
            number = rows.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if header_pending:
                header_pending = False
                if spec.field_name is not None:
                    names = [cell.strip() for cell in row]
                    if spec.field_name not in names:
                        raise FormatError(
                            f"line {number}: no column named {spec.field_name!r} in the header"
                        )
                    column = names.index(spec.field_name)
                continue
            problem = ""
            if spec.validate_record_size and spec.record_size and len(row) != spec.record_size:
                problem = f"{len(row)} columns, expected {spec.record_size}"
            elif column is None or column >= len(row):
                problem = f"no column {column} (the record has {len(row)})"
            if problem:
                bad_count += 1
                if len(bad) < KEPT_BAD:
                    bad.append(BadEntry(f"line {number}", spec.column_delimiter.join(row), problem))
                continue
            assert column is not None
            result.values.append(row[column].strip())
            result.lines.append(number)
    except csv.Error as error:
        raise FormatError(f"line {rows.line_num}: invalid CSV: {error}") from None
    return Candidates(result.values, result.lines, "line", bad, bad_count)


def _uncommented(lines: Iterable[str], comment: str) -> Iterator[str]:
    """Comment lines become empty lines, so the reader's line numbers stay the file's."""
    for line in lines:
        yield "" if comment and line.lstrip().startswith(comment) else line


def _json(body: str, path: str) -> Candidates:
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:
        raise FormatError(f"line {error.lineno}: invalid JSON: {error.msg}") from None
    values: list[str] = []
    lines: list[int] = []
    bad: list[BadEntry] = []
    bad_count = 0
    for number, value in enumerate(select_json(document, path), start=1):
        if isinstance(value, str):
            values.append(value.strip())
            lines.append(number)
        else:
            bad_count += 1
            if len(bad) < KEPT_BAD:
                bad.append(BadEntry(f"item {number}", json.dumps(value)[:80], "not a string"))
    return Candidates(values, lines, "item", bad, bad_count)


_STEP = re.compile(
    r"\.\.(?=[A-Za-z_$*])|\.\.|\.\*|\*|\[\*\]|\.?([A-Za-z_$][\w$-]*)|\[(\d+)\]"
    r"|\[['\"]([^'\"]*)['\"]\]"
)


def select_json(document: Any, path: str) -> list[Any]:
    """The values a JSONPath selects: `$`, `.key`, `['key']`, `[N]`, `[*]`, `.*`, `..`
    (recursive descent), which is what feed paths use.

    >>> select_json({"data": [{"ip": "192.0.2.1"}, {"ip": "2001:db8::1"}]}, "$.data[*].ip")
    ['192.0.2.1', '2001:db8::1']
    """
    text = path.strip()
    if not text.startswith("$"):
        raise FormatError(f"JSONPath {path!r} must start with '$'")
    current = [document]
    position = 1
    recursive = False
    while position < len(text):
        found = _STEP.match(text, position)
        if found is None:
            raise FormatError(f"JSONPath {path!r}: cannot read from column {position + 1}")
        token = found.group(0)
        position = found.end()
        if token == "..":
            recursive = True
            continue
        if recursive:
            current = [item for value in current for item in _descendants(value)]
            recursive = False
        current = _step(current, token, found)
    if recursive:
        current = [item for value in current for item in _descendants(value)]
    return current


def _step(current: list[Any], token: str, found: re.Match[str]) -> list[Any]:
    if token in (".*", "[*]", "*"):
        out: list[Any] = []
        for value in current:
            if isinstance(value, list):
                out.extend(value)
            elif isinstance(value, dict):
                out.extend(value.values())
        return out
    if found.group(2) is not None:
        index = int(found.group(2))
        return [v[index] for v in current if isinstance(v, list) and index < len(v)]
    key = found.group(1) if found.group(1) is not None else found.group(3)
    return [v[key] for v in current if isinstance(v, dict) and key in v]


def _descendants(value: Any) -> Iterator[Any]:
    yield value
    children = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    )
    for child in children:
        yield from _descendants(child)


def classify(found: Candidates, content: FeedContent) -> ParsedFeed:
    """Candidate values -> prefixes (IPSet) or domain names (DomainNameSet), bad ones counted."""
    bad = list(found.bad)
    bad_count = found.bad_count

    def reject(line: int, text: str, reason: str) -> None:
        nonlocal bad_count
        bad_count += 1
        if len(bad) < KEPT_BAD:
            bad.append(BadEntry(f"{found.unit} {line}", text, reason))

    if content is FeedContent.DOMAIN_SET:
        domains: list[str] = []
        for text, line in zip(found.values, found.lines, strict=True):
            name = normalize_domain(text)
            if name is None:
                reject(line, text, "not a domain name")
            else:
                domains.append(name)
        return ParsedFeed(
            empty_prefixes(4),
            empty_prefixes(6),
            tuple(dict.fromkeys(domains)),
            tuple(bad),
            bad_count,
            len(found.values) + found.bad_count,
        )
    v4, v6 = _addresses(found.values, found.lines, reject)
    return ParsedFeed(v4, v6, (), tuple(bad), bad_count, len(found.values) + found.bad_count)


def normalize_domain(text: str) -> str | None:
    """`Evil.Example.` -> `evil.example`; None when `text` is no domain name (or an address)."""
    name = text.strip().rstrip(".").lower()
    if name.startswith("*."):
        name = name[2:]
    return name if _DOMAIN.match(name) else None


def _addresses(
    values: Sequence[str], lines: Sequence[int], reject: Any
) -> tuple[Prefixes, Prefixes]:
    v4_values: list[int] = []
    v4_lengths: list[int] = []
    v4_lines: list[int] = []
    v6_values: list[bytes] = []
    v6_lengths: list[int] = []
    v6_lines: list[int] = []
    pton = socket.inet_pton
    for text, line in zip(values, lines, strict=True):
        address, slash, length_text = text.partition("/")
        v6 = ":" in address
        try:
            packed = pton(socket.AF_INET6 if v6 else socket.AF_INET, address)
        except OSError:
            reject(line, text, "not an IP address or prefix")
            continue
        bits = 128 if v6 else 32
        if slash:
            if not length_text.isdigit() or int(length_text) > bits or len(length_text) > 3:
                reject(line, text, f"invalid prefix length (0-{bits})")
                continue
            length = int(length_text)
        else:
            length = bits
        if v6:
            v6_values.append(packed)
            v6_lengths.append(length)
            v6_lines.append(line)
        else:
            v4_values.append(int.from_bytes(packed, "big"))
            v4_lengths.append(length)
            v4_lines.append(line)
    return _prefixes4(v4_values, v4_lengths, v4_lines), _prefixes6(v6_values, v6_lengths, v6_lines)


def _prefixes4(values: list[int], lengths: list[int], lines: list[int]) -> Prefixes:
    if not values:
        return empty_prefixes(4)
    length = np.array(lengths, dtype=np.uint8)
    network = np.array(values, dtype=np.uint64) & ~MASKS[32 - length.astype(np.int64)]
    return Prefixes(4, network, length, np.array(lines, dtype=np.int64))


def _prefixes6(values: list[bytes], lengths: list[int], lines: list[int]) -> Prefixes:
    if not values:
        return empty_prefixes(6)
    length = np.array(lengths, dtype=np.uint8)
    host = 128 - length.astype(np.int64)
    hi, lo = split_v6(np.array(values, dtype="S16"))
    lo &= ~MASKS[np.minimum(host, 64)]
    hi &= ~MASKS[np.maximum(host - 64, 0)]
    return Prefixes(6, join_v6(hi, lo), length, np.array(lines, dtype=np.int64))


def parse_ip_texts(texts: Sequence[str]) -> ParsedFeed:
    """Addresses and prefixes given as text (tests, `--allow`), line numbers 1..N."""
    found = Candidates(list(texts), list(range(1, len(texts) + 1)))
    return classify(found, FeedContent.IP_SET)


def parse_body(body: str, feed_format: FeedFormat, content: FeedContent) -> ParsedFeed:
    """A fetched body in a text format -> indicators."""
    return classify(candidates(body, feed_format), content)
