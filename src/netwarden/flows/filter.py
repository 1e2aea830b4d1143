"""The flow filter language: Calico GlobalAlert-style queries, compiled to parametrised SQL.

    dest_namespace = "pci" AND action = "deny"
    source_name_aggr IN ("web-*", "api-*") AND NOT dest_port IN (80, 443)
    (proto = tcp OR proto = udp) AND bytes_out > 1000000
    source_labels = "app=web"          # list columns: does any element match

Grammar (keywords case-insensitive):

    expr       := or
    or         := and ("OR" and)*
    and        := unary ("AND" unary)*
    unary      := "NOT" unary | "(" expr ")" | comparison
    comparison := COLUMN op value | COLUMN ["NOT"] "IN" "(" value ("," value)* ")"
    op         := "=" | "==" | "!=" | "<" | "<=" | ">" | ">="
    value      := "string" | 'string' | number | bare-word

Only FLOW_SCHEMA columns are accepted and every value becomes a bound parameter: user text
never reaches SQL. `*` in a string value is a wildcard (compiled to LIKE with `%`/`_`/`\\`
escaped). Comparisons are two-valued: a null column is unequal to everything (so `!=` matches
it and `=` does not), the same in SQL and in `FlowFilter.matches`, the reference evaluator the
property tests check the SQL against.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any, Literal

from netwarden.errors import InputError
from netwarden.flows.schema import COUNTER_COLUMNS, FLOW_COLUMNS, LIST_COLUMNS

Dialect = Literal["duckdb", "clickhouse"]

_INT_COLUMNS = frozenset({"source_port", "dest_port", *COUNTER_COLUMNS})
_TIME_COLUMNS = frozenset({"start_time", "end_time"})
_ORDERED_OPS = frozenset({"<", "<=", ">", ">="})


class FilterError(InputError):
    """An invalid filter; `column` is the 1-based position of the offending token."""

    def __init__(self, expression: str, column: int, message: str) -> None:
        self.expression = expression
        self.column = column
        super().__init__(None, f"{message} at column {column} in filter {expression!r}")


# ---------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Compare:
    """`column op value`; `value` is already typed (int, str or datetime)."""

    column: str
    op: str
    value: int | str | datetime


@dataclass(frozen=True)
class InList:
    column: str
    values: tuple[int | str | datetime, ...]
    negated: bool


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class BoolOp:
    op: Literal["AND", "OR"]
    operands: tuple[Node, ...]


Node = Compare | InList | Not | BoolOp

# ---------------------------------------------------------------------------- tokenizer

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>==|!=|<=|>=|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z0-9_.:/*@+-]+)""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # string | op | punct | word | end
    text: str
    column: int  # 1-based


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise FilterError(text, position + 1, f"unexpected character {text[position]!r}")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Token(kind, match.group(), position + 1))
        position = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _unquote(token: _Token) -> str:
    body = token.text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


# ------------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0

    def error(self, token: _Token, message: str) -> FilterError:
        return FilterError(self.text, token.column, message)

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def next(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token.kind == "word" and token.text.upper() == word:
            self.index += 1
            return True
        return False

    def expect(self, text: str) -> _Token:
        token = self.next()
        if token.text != text or token.kind not in ("punct", "op"):
            shown = repr(token.text) if token.text else "end of filter"
            raise self.error(token, f"expected {text!r}, found {shown}")
        return token

    def parse(self) -> Node:
        node = self.parse_or()
        token = self.peek()
        if token.kind != "end":
            raise self.error(token, f"unexpected {token.text!r}")
        return node

    def parse_or(self) -> Node:
        operands = [self.parse_and()]
        while self.keyword("OR"):
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else BoolOp("OR", tuple(operands))

    def parse_and(self) -> Node:
        operands = [self.parse_unary()]
        while self.keyword("AND"):
            operands.append(self.parse_unary())
        return operands[0] if len(operands) == 1 else BoolOp("AND", tuple(operands))

    def parse_unary(self) -> Node:
        if self.keyword("NOT"):
            return Not(self.parse_unary())
        token = self.peek()
        if token.kind == "punct" and token.text == "(":
            self.next()
            node = self.parse_or()
            self.expect(")")
            return node
        return self.parse_comparison()

    def parse_comparison(self) -> Node:
        token = self.next()
        if token.kind != "word":
            shown = repr(token.text) if token.text else "end of filter"
            raise self.error(token, f"expected a column name, found {shown}")
        column = token.text.lower()
        if column not in FLOW_COLUMNS:
            raise self.error(token, f"unknown column {token.text!r}")
        negated = self.keyword("NOT")
        if self.keyword("IN"):
            self.expect("(")
            values = [self.parse_value(column, "=")]
            while self.peek().text == "," and self.peek().kind == "punct":
                self.next()
                values.append(self.parse_value(column, "="))
            self.expect(")")
            return InList(column, tuple(values), negated)
        if negated:
            raise self.error(self.peek(), "expected IN after NOT")
        op_token = self.next()
        if op_token.kind != "op":
            shown = repr(op_token.text) if op_token.text else "end of filter"
            raise self.error(op_token, f"expected a comparison operator, found {shown}")
        op = "=" if op_token.text == "==" else op_token.text
        if op in _ORDERED_OPS and column not in _INT_COLUMNS | _TIME_COLUMNS:
            raise self.error(op_token, f"{op!r} needs a numeric or time column, not {column}")
        return Compare(column, op, self.parse_value(column, op))

    def parse_value(self, column: str, op: str) -> int | str | datetime:
        token = self.next()
        if token.kind == "string":
            text = _unquote(token)
        elif token.kind == "word" and token.text.upper() not in ("AND", "OR", "NOT", "IN"):
            text = token.text
        else:
            shown = repr(token.text) if token.text else "end of filter"
            raise self.error(token, f"expected a value, found {shown}")
        if column in _INT_COLUMNS:
            if not re.fullmatch(r"-?[0-9]{1,18}", text):
                raise self.error(token, f"{column} takes an integer, not {text!r}")
            return int(text)
        if column in _TIME_COLUMNS:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise self.error(token, f"{column} takes an ISO 8601 time, not {text!r}") from None
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        if "*" in text and op not in ("=", "!="):
            raise self.error(token, f"wildcards work with = and !=, not {op!r}")
        return text


# ----------------------------------------------------------------------------- compiler

Placeholder = Callable[[int | str | datetime], str]


def to_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch (naive times are UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    delta = aware - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _like_pattern(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


class _SqlCompiler:
    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.params: list[Any] = []

    def bind(self, value: int | str | datetime) -> str:
        if self.dialect == "duckdb":
            self.params.append(value)
            return f"${len(self.params)}"
        if isinstance(value, datetime):
            # ClickHouse parses a DateTime64 parameter's text loosely (chDB sends a datetime
            # as seconds); microseconds since the epoch are exact on every client.
            self.params.append(to_micros(value))
            return f"fromUnixTimestamp64Micro({{p{len(self.params)}:Int64}}, 'UTC')"
        self.params.append(value)
        kind = "Int64" if isinstance(value, int) else "String"
        return f"{{p{len(self.params)}:{kind}}}"

    def compile(self, node: Node) -> str:
        if isinstance(node, BoolOp):
            return "(" + f" {node.op} ".join(self.compile(n) for n in node.operands) + ")"
        if isinstance(node, Not):
            return f"(NOT {self.compile(node.operand)})"
        if isinstance(node, InList):
            alternatives = [self.equals(node.column, value) for value in node.values]
            joined = "(" + " OR ".join(alternatives) + ")"
            return f"(NOT {joined})" if node.negated else joined
        if node.op == "=":
            return self.equals(node.column, node.value)
        if node.op == "!=":
            return f"(NOT {self.equals(node.column, node.value)})"
        return f"({node.column} IS NOT NULL AND {node.column} {node.op} {self.bind(node.value)})"

    def equals(self, column: str, value: int | str | datetime) -> str:
        """Null-safe, two-valued equality (or wildcard match, or list membership)."""
        wildcard = isinstance(value, str) and "*" in value
        if column in LIST_COLUMNS:
            if wildcard:
                pattern = self.bind(_like_pattern(str(value)))
                if self.dialect == "duckdb":
                    test = f"len(list_filter({column}, lambda x: x LIKE {pattern} ESCAPE '\\')) > 0"
                else:
                    test = f"arrayExists(x -> x LIKE {pattern}, {column})"
            else:
                member = self.bind(value)
                test = (
                    f"list_contains({column}, {member})"
                    if self.dialect == "duckdb"
                    else f"has({column}, {member})"
                )
            return f"coalesce({test}, false)"
        if wildcard:
            pattern = self.bind(_like_pattern(str(value)))
            # ClickHouse's LIKE always treats backslash as the escape character.
            escape = " ESCAPE '\\'" if self.dialect == "duckdb" else ""
            return f"({column} IS NOT NULL AND {column} LIKE {pattern}{escape})"
        return f"({column} IS NOT NULL AND {column} = {self.bind(value)})"


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class FlowFilter:
    """A parsed filter. `FlowFilter.parse(text)` validates; `to_sql` compiles for a backend.

    >>> FlowFilter.parse('dest_namespace = "pci" AND action = deny').to_sql("duckdb")
    ('((dest_namespace IS NOT NULL AND dest_namespace = $1) AND (action IS NOT NULL AND action = $2))', ['pci', 'deny'])
    """  # noqa: E501

    text: str
    root: Node

    @classmethod
    def parse(cls, text: str) -> FlowFilter:
        if not text.strip():
            raise FilterError(text, 1, "empty filter")
        return cls(text, _Parser(text).parse())

    def to_sql(self, dialect: Dialect, first_param: int = 1) -> tuple[str, list[Any]]:
        """SQL for a WHERE clause and its parameters (`$n` for DuckDB, `{pN:Type}` for
        ClickHouse), numbered from `first_param`."""
        compiler = _SqlCompiler(dialect)
        compiler.params = [None] * (first_param - 1)
        sql = compiler.compile(self.root)
        return sql, compiler.params[first_param - 1 :]

    def matches(self, record: Mapping[str, Any]) -> bool:
        """The reference semantics on one record (a dict of column -> Python value)."""
        return _evaluate(self.root, record)


def _equals(actual: Any, value: int | str | datetime) -> bool:
    if actual is None:
        return False
    if isinstance(actual, list):
        return any(_equals(item, value) for item in actual)
    if isinstance(value, str) and "*" in value:
        # fnmatch treats [ and ? specially; the filter language only knows `*`.
        escaped = re.sub(r"([\[\]?])", r"[\1]", value)
        return fnmatchcase(str(actual), escaped)
    return bool(actual == value)


def _evaluate(node: Node, record: Mapping[str, Any]) -> bool:
    if isinstance(node, BoolOp):
        results = (_evaluate(n, record) for n in node.operands)
        return all(results) if node.op == "AND" else any(results)
    if isinstance(node, Not):
        return not _evaluate(node.operand, record)
    actual = record.get(node.column)
    if isinstance(node, InList):
        found = any(_equals(actual, value) for value in node.values)
        return found != node.negated
    if node.op == "=":
        return _equals(actual, node.value)
    if node.op == "!=":
        return not _equals(actual, node.value)
    if actual is None:
        return False
    ordered: dict[str, Callable[[Any, Any], bool]] = {
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    return ordered[node.op](actual, node.value)
