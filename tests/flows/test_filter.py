"""The flow filter language: parsing, errors with columns, SQL that never contains user text,
and (property) the SQL of both backends agreeing with the reference evaluator."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netwarden.flows.duckdb_store import DuckDBFlowStore
from netwarden.flows.filter import FilterError, FlowFilter
from netwarden.flows.schema import from_records


@pytest.mark.parametrize(
    ("text", "sql", "params"),
    [
        ('dest_namespace = "pci"', "(dest_namespace IS NOT NULL AND dest_namespace = $1)", ["pci"]),
        ("action != deny", "(NOT (action IS NOT NULL AND action = $1))", ["deny"]),
        ("dest_port >= 1024", "(dest_port IS NOT NULL AND dest_port >= $1)", [1024]),
        (
            'source_name = "web-*"',
            "(source_name IS NOT NULL AND source_name LIKE $1 ESCAPE '\\')",
            ["web-%"],
        ),
        (
            'source_name = "a_b%*"',
            "(source_name IS NOT NULL AND source_name LIKE $1 ESCAPE '\\')",
            ["a\\_b\\%%"],
        ),
        ('dest_labels = "app=db"', "coalesce(list_contains(dest_labels, $1), false)", ["app=db"]),
    ],
)
def test_compiles_to_parametrised_duckdb_sql(text: str, sql: str, params: list[Any]) -> None:
    assert FlowFilter.parse(text).to_sql("duckdb") == (sql, params)


def test_clickhouse_uses_typed_parameters() -> None:
    sql, params = FlowFilter.parse('dest_port IN (80, 443) AND proto = "tcp"').to_sql("clickhouse")
    assert "{p1:Int64}" in sql and "{p3:String}" in sql
    assert params == [80, 443, "tcp"]


def test_precedence_not_and_or() -> None:
    root = FlowFilter.parse("NOT action = deny AND proto = tcp OR dest_port = 53").root
    assert type(root).__name__ == "BoolOp" and root.op == "OR"  # type: ignore[union-attr]


def test_times_compare_as_times() -> None:
    flow_filter = FlowFilter.parse('start_time >= "2026-11-01T10:00:00Z"')
    assert flow_filter.to_sql("duckdb")[1] == [datetime(2026, 11, 1, 10, tzinfo=UTC)]


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ('dest_namspace = "pci"', 1, "unknown column 'dest_namspace'"),
        ('dest_namespace = "pci" AND', 27, "expected a column name, found end of filter"),
        ("dest_port = http", 13, "dest_port takes an integer"),
        ("action < deny", 8, "'<' needs a numeric or time column"),
        ("(action = deny", 15, "expected ')'"),
        ("action = deny; DROP TABLE flows", 14, "unexpected character ';'"),
        ('dest_port IN (1, "x")', 18, "takes an integer"),
        ("source_name > 3", 13, "needs a numeric or time column"),
        ('source_name != "*a" OR', 23, "expected a column name"),
        ("start_time > yesterday", 14, "ISO 8601"),
        ("", 1, "empty filter"),
    ],
)
def test_errors_name_the_column_of_the_bad_token(text: str, column: int, message: str) -> None:
    with pytest.raises(FilterError) as raised:
        FlowFilter.parse(text)
    assert raised.value.column == column
    assert message in str(raised.value)


INJECTIONS = [
    "x' OR '1'='1",
    "'; DROP TABLE flows; --",
    'a"b',
    "back\\slash",
    "tab\tnew\nline",
    "{p1:String}",
    "$1",
    "%_",
    "日本",
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_values_are_parameters_never_sql(value: str) -> None:
    literal = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    flow_filter = FlowFilter.parse(f"source_name = {literal}")
    for dialect in ("duckdb", "clickhouse"):
        sql, params = flow_filter.to_sql(dialect)  # type: ignore[arg-type]
        # The SQL is the same whatever the value: the value only ever travels as a parameter.
        assert sql == FlowFilter.parse('source_name = "plain"').to_sql(dialect)[0]  # type: ignore[arg-type]
        assert params == [value]


# --------------------------------------------------------------------- property tests

_RECORDS = [
    {
        "start_time": datetime(2026, 11, 1, h, tzinfo=UTC),
        "end_time": datetime(2026, 11, 1, h, tzinfo=UTC),
        "source_name": name,
        "dest_namespace": ns,
        "dest_port": port,
        "action": action,
        "dest_labels": labels,
        "bytes_out": h * 100,
    }
    for h, (name, ns, port, action, labels) in enumerate(
        [
            ("web-1", "shop", 5432, "allow", ["app=db"]),
            ("web-2", "pci", 8443, "deny", ["app=card", "pci=true"]),
            ("api%1", None, 53, "allow", []),
            ("a_b", "shop", None, "deny", ["weird=x'y"]),
            (None, "kube-system", 443, "allow", ["k8s-app=kube-dns"]),
            ("x' OR '1'='1", "pci", 22, None, ["app=ssh"]),
            ("back\\slash", "shop", 80, "allow", ["app=web"]),
        ]
    )
]
_STRING_VALUES = st.sampled_from(
    [
        "web-1",
        "web-*",
        "*-2",
        "shop",
        "pci",
        "*",
        "a_b",
        "api%1",
        "x' OR '1'='1",
        "app=db",
        "pci=*",
        "back\\slash",
        "",
        "nope",
        "*sla*",
    ]
)
_INT_VALUES = st.integers(min_value=-1, max_value=9000)


def _literal(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def _comparisons(draw: st.DrawFn) -> str:
    column = draw(
        st.sampled_from(
            ["source_name", "dest_namespace", "action", "dest_labels", "dest_port", "bytes_out"]
        )
    )
    numeric = column in ("dest_port", "bytes_out")
    values = _INT_VALUES.map(str) if numeric else _STRING_VALUES.map(_literal)
    if draw(st.booleans()):
        items = draw(st.lists(values, min_size=1, max_size=3))
        negated = "NOT " if draw(st.booleans()) else ""
        return f"{column} {negated}IN ({', '.join(items)})"
    ops = ["=", "!=", "<", ">", "<=", ">="] if numeric else ["=", "!="]
    return f"{column} {draw(st.sampled_from(ops))} {draw(values)}"


_FILTERS = st.recursive(
    _comparisons(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        inner.map(lambda t: f"NOT {t}"),
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def duck(tmp_path_factory: pytest.TempPathFactory) -> Any:
    store = DuckDBFlowStore(str(tmp_path_factory.mktemp("filter") / "f.duckdb"))
    store.append(from_records(_RECORDS))
    yield store
    store.close()


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from netwarden.flows.clickhouse_store import ClickHouseFlowStore

    store = ClickHouseFlowStore.embedded(str(tmp_path_factory.mktemp("filter-ch") / "ch"))
    store.append(from_records(_RECORDS))
    yield store
    store.close()


def _expected(flow_filter: FlowFilter) -> list[str | None]:
    stored = from_records(_RECORDS).to_pylist()
    return sorted((r["source_name"] or "") for r in stored if flow_filter.matches(r))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=_FILTERS)
def test_duckdb_sql_agrees_with_the_reference_evaluator(duck: Any, text: str) -> None:
    flow_filter = FlowFilter.parse(text)
    got = sorted(
        (n or "") for n in duck.scan(flow_filter, columns=["source_name"]).column(0).to_pylist()
    )
    assert got == _expected(flow_filter), text
    assert duck.count() == len(_RECORDS)  # nothing a filter says can change the table


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=_FILTERS)
def test_clickhouse_sql_agrees_with_the_reference_evaluator(clickhouse: Any, text: str) -> None:
    flow_filter = FlowFilter.parse(text)
    got = sorted(
        (n or "")
        for n in clickhouse.scan(flow_filter, columns=["source_name"]).column(0).to_pylist()
    )
    assert got == _expected(flow_filter), text


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(
        alphabet=st.sampled_from(list("ab_=!<>()\",*\\ 'IN NOT AND OR dest_port source_name 0123")),
        max_size=40,
    )
)
def test_random_text_parses_or_fails_with_a_filter_error(text: str) -> None:
    try:
        flow_filter = FlowFilter.parse(text)
    except FilterError as error:
        assert 1 <= error.column <= len(text) + 1
        return
    for dialect in ("duckdb", "clickhouse"):
        flow_filter.to_sql(dialect)  # type: ignore[arg-type]
