"""Formats: newline-delimited, CSV (column, header, delimiters, record size), JSONPath, and the
classification of values; a bad value never stops the parse and is reported with its line."""

from __future__ import annotations

import pytest

from netwarden.model import FeedContent
from netwarden.model.feeds import CsvFormat, JsonFormat, NewlineFormat
from netwarden.threatintel.parse import (
    KEPT_BAD,
    FormatError,
    normalize_domain,
    parse_body,
    select_json,
)


def test_newline_comments_blank_lines_and_bad_entries() -> None:
    body = "# header\n\n 198.51.100.7 \n300.1.1.1\n2001:db8::1 # inline\n010.1.1.1\n1.2.3.4/33\n"
    parsed = parse_body(body, NewlineFormat(), FeedContent.IP_SET)
    assert parsed.v4.cidrs() == ["198.51.100.7/32"]
    assert parsed.v6.cidrs() == ["2001:db8::1/128"]
    assert [(b.where, b.text) for b in parsed.bad] == [
        ("line 4", "300.1.1.1"),
        ("line 6", "010.1.1.1"),
        ("line 7", "1.2.3.4/33"),
    ]
    assert parsed.values == 5 and parsed.bad_count == 3


def test_host_bits_are_cleared() -> None:
    parsed = parse_body("10.1.2.3/8\n2001:db8::ff/120\n", NewlineFormat(), FeedContent.IP_SET)
    assert parsed.v4.cidrs() == ["10.0.0.0/8"]
    assert parsed.v6.cidrs() == ["2001:db8::/120"]


def test_every_bad_entry_is_counted_but_only_some_kept() -> None:
    body = "bad\n" * (KEPT_BAD + 25) + "192.0.2.1\n"
    parsed = parse_body(body, NewlineFormat(), FeedContent.IP_SET)
    assert parsed.bad_count == KEPT_BAD + 25 and len(parsed.bad) == KEPT_BAD
    assert parsed.v4.cidrs() == ["192.0.2.1/32"]


@pytest.mark.parametrize(
    ("body", "spec", "expected", "bad"),
    [
        (
            "a,198.51.100.1\nb,198.51.100.2\n",
            CsvFormat(field_num=1),
            ["198.51.100.1/32", "198.51.100.2/32"],
            [],
        ),
        (
            "ip|x\n198.51.100.1|1\n",
            CsvFormat(field_name="ip", column_delimiter="|"),
            ["198.51.100.1/32"],
            [],
        ),
        ("h\n198.51.100.1\n", CsvFormat(field_num=0, header=True), ["198.51.100.1/32"], []),
        (
            "; note\n198.51.100.1,1\n198.51.100.2\n",
            CsvFormat(field_num=0, comment_delimiter=";", record_size=2),
            ["198.51.100.1/32"],
            ["line 3"],
        ),
        (
            "198.51.100.1,1\n198.51.100.2\n",
            CsvFormat(field_num=0, record_size=2, validate_record_size=False),
            ["198.51.100.1/32", "198.51.100.2/32"],
            [],
        ),
        ("x\n198.51.100.1\n", CsvFormat(field_num=1), [], ["line 1", "line 2"]),
        ('"198.51.100.1",z\n', CsvFormat(field_num=0), ["198.51.100.1/32"], []),
    ],
)
def test_csv(body: str, spec: CsvFormat, expected: list[str], bad: list[str]) -> None:
    parsed = parse_body(body, spec, FeedContent.IP_SET)
    assert parsed.v4.cidrs() == expected
    assert [b.where for b in parsed.bad] == bad


def test_csv_missing_header_column_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="no column named 'ip'"):
        parse_body("addr\n1.2.3.4\n", CsvFormat(field_name="ip"), FeedContent.IP_SET)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", [{"a": [{"ip": "1"}, {"ip": "2"}], "b": {"ip": "3"}}]),
        ("$.a[*].ip", ["1", "2"]),
        ("$.a[1].ip", ["2"]),
        ("$['b']['ip']", ["3"]),
        ("$..ip", ["1", "2", "3"]),
        ("$.*.ip", ["3"]),
        ("$.missing", []),
    ],
)
def test_json_path(path: str, expected: list[object]) -> None:
    document = {"a": [{"ip": "1"}, {"ip": "2"}], "b": {"ip": "3"}}
    assert select_json(document, path) == expected


def test_json_errors() -> None:
    with pytest.raises(FormatError, match="line 1: invalid JSON"):
        parse_body("{", JsonFormat("$"), FeedContent.IP_SET)
    with pytest.raises(FormatError, match="must start with"):
        select_json({}, "a.b")
    with pytest.raises(FormatError, match="column 2"):
        select_json({}, "$.(")


def test_json_array_of_addresses() -> None:
    parsed = parse_body(
        '["192.0.2.1", "2001:db8::1", null]', JsonFormat("$[*]"), FeedContent.IP_SET
    )
    assert parsed.v4.cidrs() == ["192.0.2.1/32"] and parsed.v6.cidrs() == ["2001:db8::1/128"]
    assert [str(b) for b in parsed.bad] == ["item 3: 'null': not a string"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Evil.Example.", "evil.example"),
        ("*.evil.example", "evil.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("192.0.2.1", None),
        ("no_tld", None),
        ("-bad.example", None),
        ("a" * 64 + ".example", None),
    ],
)
def test_domains(text: str, expected: str | None) -> None:
    assert normalize_domain(text) == expected
