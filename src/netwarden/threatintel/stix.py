"""STIX 2.1 indicators -> candidate values, read with `stix2` (objects and patterns).

An indicator counts while it is in force: not revoked, `valid_from` passed, `valid_until` not
yet. Its pattern is parsed by stix2's pattern parser; the comparisons it may hold are
`[ipv4-addr:value = '…']`, `[ipv6-addr:value = '…']` (also `ISSUBSET` a prefix) and
`[domain-name:value = '…']`, joined by OR inside or between observations. Anything else (AND,
FOLLOWEDBY, qualifiers, other object types) cannot be a block list entry: the indicator is
reported as bad with the reason, never half-read. A newer version of an indicator (same id,
later `modified`) replaces the older one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stix2  # type: ignore[import-untyped]
from stix2.pattern_visitor import create_pattern_object  # type: ignore[import-untyped]

from netwarden.model.feeds import FeedContent
from netwarden.threatintel.parse import KEPT_BAD, BadEntry, Candidates, FormatError

_TYPES = {
    "ipv4-addr": FeedContent.IP_SET,
    "ipv6-addr": FeedContent.IP_SET,
    "domain-name": FeedContent.DOMAIN_SET,
}


class UnsupportedPattern(ValueError):
    pass


@dataclass(frozen=True)
class IndicatorValue:
    content: FeedContent
    value: str


def bundle_objects(body: str) -> list[Any]:
    """The objects of a STIX bundle (or a TAXII envelope) as JSON mappings."""
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:
        raise FormatError(f"line {error.lineno}: invalid JSON: {error.msg}") from None
    if not isinstance(document, dict) or not isinstance(document.get("objects", []), list):
        raise FormatError("not a STIX bundle: expected an object with an `objects` list")
    objects: list[Any] = document.get("objects", [])
    return objects


def latest_versions(objects: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """One object per id: the one modified last (TAXII may return several versions)."""
    latest: dict[str, Mapping[str, Any]] = {}
    for item in objects:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            continue
        known = latest.get(item["id"])
        if known is None or str(item.get("modified", "")) >= str(known.get("modified", "")):
            latest[item["id"]] = item
    return latest


def indicator_candidates(
    objects: Iterable[Mapping[str, Any]], content: FeedContent, now: datetime | None = None
) -> Candidates:
    """Values of the indicators in force that match `content`; each bad one reported."""
    moment = now or datetime.now(UTC)
    values: list[str] = []
    lines: list[int] = []
    bad: list[BadEntry] = []
    bad_count = 0
    for number, (object_id, raw) in enumerate(latest_versions(objects).items(), start=1):
        if raw.get("type") != "indicator":
            continue
        try:
            indicator = stix2.parse(dict(raw), allow_custom=True, version="2.1")
            if not _in_force(indicator, moment):
                continue
            found = pattern_values(indicator.pattern) if indicator.pattern_type == "stix" else None
            if found is None:
                raise UnsupportedPattern(f"pattern_type {indicator.pattern_type!r} is not stix")
        except Exception as error:  # stix2 raises many kinds; each is about this object only
            bad_count += 1
            if len(bad) < KEPT_BAD:
                reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
                bad.append(BadEntry(object_id, str(raw.get("pattern", ""))[:120], reason))
            continue
        for item in found:
            if item.content is content:
                values.append(item.value)
                lines.append(number)
                continue
            # Another feed on the same collection may want it; this one reports, not drops.
            bad_count += 1
            if len(bad) < KEPT_BAD:
                bad.append(BadEntry(object_id, item.value, f"an {item.content.value} indicator"))
    return Candidates(values, lines, "indicator", bad, bad_count)


def _in_force(indicator: Any, now: datetime) -> bool:
    if getattr(indicator, "revoked", False):
        return False
    if indicator.valid_from > now:
        return False
    until = getattr(indicator, "valid_until", None)
    return until is None or until > now


def pattern_values(pattern: str) -> list[IndicatorValue]:
    """The addresses and domains a STIX pattern lists (OR of equality / ISSUBSET tests).

    >>> [v.value for v in pattern_values("[ipv4-addr:value = '198.51.100.7']")]
    ['198.51.100.7']
    """
    tree = create_pattern_object(pattern, version="2.1")
    out: list[IndicatorValue] = []
    _collect(tree, out)
    return out


def _collect(node: Any, out: list[IndicatorValue]) -> None:
    name = type(node).__name__
    if name in ("OrObservationExpression", "OrBooleanExpression"):
        for operand in node.operands:
            _collect(operand, out)
    elif name == "ObservationExpression":
        _collect(node.operand, out)
    elif name in ("EqualityComparisonExpression", "IsSubsetComparisonExpression"):
        if node.negated:
            raise UnsupportedPattern("a negated comparison lists no indicator")
        object_type = node.lhs.object_type_name
        path = [getattr(part, "property_name", None) for part in node.lhs.property_path]
        if object_type not in _TYPES or path != ["value"]:
            raise UnsupportedPattern(f"{object_type}:{'.'.join(map(str, path))} is not blockable")
        if name == "IsSubsetComparisonExpression" and object_type == "domain-name":
            raise UnsupportedPattern("ISSUBSET applies to addresses only")
        out.append(IndicatorValue(_TYPES[object_type], str(node.rhs.value)))
    else:
        operator = getattr(node, "operator", name)
        raise UnsupportedPattern(f"{operator} cannot be read as a list of indicators")
