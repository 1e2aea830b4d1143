"""Calico selector expressions <-> model selectors.

The language of `selector`, `namespaceSelector` and `serviceAccountSelector` in
`projectcalico.org/v3` resources, as Calico's own tokenizer and parser accept it
(libcalico-go/lib/selector). Lowest precedence first:

    expression := and ("||" and)*
    and        := operation ("&&" operation)*
    operation  := "!"* ( "has(" LABEL ")" | "all()" | "global()" | "(" expression ")"
                       | LABEL ("==" | "!=" | "contains" | "starts with" | "ends with") STRING
                       | LABEL ("in" | "not in") "{" [STRING ("," STRING)* [","]] "}" )

`!` binds to one operation (`!a == "x" && b == "y"` negates only the first comparison), and
a run of `!` collapses (`!!has(a)` is `has(a)`). Labels are `[A-Za-z0-9_./-]+`; strings are
single- or double-quoted with no escapes, so a value can hold one kind of quote but not both.
Whitespace is spaces and tabs only. The empty selector is `all()`. `startswith`, `endswith`
and `notin` are accepted (the operator words may touch: `a notin{"x"}`), as is a trailing
comma in a set. Columns in errors are 1-based characters.

    >>> format_selector(parse_selector("! (has( b)||! has(a ))"))
    '!(has(b) || !has(a))'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import yaml
from pydantic import ValidationError

from netwarden.dialects.k8s_labels import LabelSelector
from netwarden.errors import InputError, SelectorError
from netwarden.model.selector import (
    All,
    And,
    Contains,
    EndsWith,
    Global,
    Has,
    In,
    Not,
    Nothing,
    NotIn,
    Or,
    Selector,
    StartsWith,
)

_WHITESPACE = " \t"
_LABEL = re.compile(r"[A-Za-z0-9_./-]+")


class TokenKind(Enum):
    LABEL = "label"
    STRING = "string"
    LBRACE = "'{'"
    RBRACE = "'}'"
    COMMA = "','"
    EQ = "'=='"
    NE = "'!='"
    IN = "'in'"
    NOT_IN = "'not in'"
    NOT = "'!'"
    CONTAINS = "'contains'"
    STARTS_WITH = "'starts with'"
    ENDS_WITH = "'ends with'"
    ALL = "'all()'"
    GLOBAL = "'global()'"
    HAS = "'has()'"
    LPAREN = "'('"
    RPAREN = "')'"
    AND = "'&&'"
    OR = "'||'"
    EOF = "end of selector"


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    value: str  # the label, the string's content or has()'s label; empty otherwise
    column: int  # 1-based, where the token starts


_PUNCTUATION = {
    "(": TokenKind.LPAREN,
    ")": TokenKind.RPAREN,
    "{": TokenKind.LBRACE,
    "}": TokenKind.RBRACE,
    ",": TokenKind.COMMA,
}
_PAIRS = {"==": TokenKind.EQ, "!=": TokenKind.NE, "&&": TokenKind.AND, "||": TokenKind.OR}
# Operator words, tried in this order only right after a label (so a label may be named
# `contains` or `in`). A first word without its second (`starts` without `with`) is an error.
_OPERATOR_WORDS = (
    ("contains", "", TokenKind.CONTAINS),
    ("starts", "with", TokenKind.STARTS_WITH),
    ("ends", "with", TokenKind.ENDS_WITH),
    ("not", "in", TokenKind.NOT_IN),
    ("in", "", TokenKind.IN),
)
_COMPARISONS: dict[TokenKind, Callable[[str, str], Selector]] = {
    TokenKind.EQ: lambda key, value: In(key, frozenset({value})),
    TokenKind.NE: lambda key, value: NotIn(key, frozenset({value})),
    TokenKind.CONTAINS: Contains,
    TokenKind.STARTS_WITH: StartsWith,
    TokenKind.ENDS_WITH: EndsWith,
}


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in _WHITESPACE:
        index += 1
    return index


def tokenize(text: str) -> list[Token]:
    """Split a selector into tokens, ending with an EOF token; raises SelectorError."""
    tokens: list[Token] = []
    index = _skip_space(text, 0)
    while index < len(text):
        char, pair = text[index], text[index : index + 2]
        after_label = bool(tokens) and tokens[-1].kind is TokenKind.LABEL
        if char in _PUNCTUATION:
            token, end = Token(_PUNCTUATION[char], "", index + 1), index + 1
        elif char in "\"'":
            close = text.find(char, index + 1)
            if close < 0:
                raise SelectorError(text, index + 1, "unterminated string")
            token, end = Token(TokenKind.STRING, text[index + 1 : close], index + 1), close + 1
        elif pair in _PAIRS:
            token, end = Token(_PAIRS[pair], "", index + 1), index + 2
        elif char == "!":
            token, end = Token(TokenKind.NOT, "", index + 1), index + 1
        elif char in "=&|":
            raise SelectorError(text, index + 1, f"expected {char * 2!r}, found {char!r}")
        elif after_label:
            token, end = _operator(text, index, tokens[-1].value)
        else:
            token, end = _word(text, index)
        tokens.append(token)
        index = _skip_space(text, end)
    tokens.append(Token(TokenKind.EOF, "", len(text) + 1))
    return tokens


def _operator(text: str, index: int, label: str) -> tuple[Token, int]:
    """The operator after `label`: `contains`, `starts with`, `ends with`, `not in`, `in`."""
    for first, second, kind in _OPERATOR_WORDS:
        if not text.startswith(first, index):
            continue
        end = index + len(first)
        if second:
            end = _skip_space(text, end)
            if not text.startswith(second, end):
                message = f"expected '{first} {second}' after label {label!r}"
                raise SelectorError(text, end + 1, message)
            end += len(second)
        return Token(kind, "", index + 1), end
    raise SelectorError(text, index + 1, f"expected an operator after label {label!r}")


def _word(text: str, index: int) -> tuple[Token, int]:
    """`has(label)`, `all()`, `global()` or a label."""
    if text.startswith("has(", index):
        start = _skip_space(text, index + 4)
        label = _LABEL.match(text, start)
        if label is None:
            raise SelectorError(text, start + 1, "expected a label name in has(...)")
        close = _skip_space(text, label.end())
        if not text.startswith(")", close):
            raise SelectorError(text, close + 1, "expected ')' to close has(")
        return Token(TokenKind.HAS, label.group(), index + 1), close + 1
    for name, kind in (("all(", TokenKind.ALL), ("global(", TokenKind.GLOBAL)):
        if text.startswith(name, index):
            close = _skip_space(text, index + len(name))
            if not text.startswith(")", close):
                raise SelectorError(text, close + 1, f"expected ')' after {name}")
            return Token(kind, "", index + 1), close + 1
    label = _LABEL.match(text, index)
    if label is None:
        raise SelectorError(text, index + 1, f"unexpected character {text[index]!r}")
    return Token(TokenKind.LABEL, label.group(), index + 1), label.end()


def parse_selector(text: str) -> Selector:
    """Parse a Calico selector expression; raises SelectorError with the column at fault.

    >>> parse_selector('app == "web" && !has(canary)').matches({"app": "web"})
    True
    """
    return _Parser(text, tokenize(text)).parse()


class _Parser:
    """Recursive descent over the token list; `||` binds loosest, then `&&`, then `!`."""

    def __init__(self, text: str, tokens: list[Token]) -> None:
        self._text = text
        self._tokens = tokens
        self._position = 0

    def parse(self) -> Selector:
        if self._peek().kind is TokenKind.EOF:
            return All()
        selector = self._or()
        self._expect(TokenKind.EOF, "'&&', '||' or end of selector")
        return selector

    def _peek(self) -> Token:
        return self._tokens[self._position]

    def _next(self) -> Token:
        token = self._tokens[self._position]
        if token.kind is not TokenKind.EOF:  # EOF stays put so errors can point at it
            self._position += 1
        return token

    def _fail(self, token: Token, expected: str) -> SelectorError:
        message = f"expected {expected}, found {_describe(token)}"
        return SelectorError(self._text, token.column, message)

    def _expect(self, kind: TokenKind, expected: str) -> Token:
        token = self._next()
        if token.kind is not kind:
            raise self._fail(token, expected)
        return token

    def _or(self) -> Selector:
        terms = [self._and()]
        while self._peek().kind is TokenKind.OR:
            self._next()
            terms.append(self._and())
        return terms[0] if len(terms) == 1 else Or(tuple(terms))

    def _and(self) -> Selector:
        terms = [self._operation()]
        while self._peek().kind is TokenKind.AND:
            self._next()
            terms.append(self._operation())
        return terms[0] if len(terms) == 1 else And(tuple(terms))

    def _operation(self) -> Selector:
        negated = False
        while self._peek().kind is TokenKind.NOT:
            self._next()
            negated = not negated
        token = self._next()
        selector: Selector
        match token.kind:
            case TokenKind.HAS:
                selector = Has(token.value)
            case TokenKind.ALL:
                selector = All()
            case TokenKind.GLOBAL:
                selector = Global()
            case TokenKind.LABEL:
                selector = self._comparison(token.value)
            case TokenKind.LPAREN:
                selector = self._or()
                self._expect(TokenKind.RPAREN, "')'")
            case _:
                raise self._fail(token, "a label, has(...), all(), global(), '!' or '('")
        return Not(selector) if negated else selector

    def _comparison(self, key: str) -> Selector:
        operator = self._next()
        if operator.kind in _COMPARISONS:
            value = self._expect(TokenKind.STRING, "a quoted string").value
            return _COMPARISONS[operator.kind](key, value)
        if operator.kind in (TokenKind.IN, TokenKind.NOT_IN):
            values = frozenset(self._set_literal())
            return In(key, values) if operator.kind is TokenKind.IN else NotIn(key, values)
        raise self._fail(operator, f"an operator after label {key!r}")

    def _set_literal(self) -> list[str]:
        self._expect(TokenKind.LBRACE, "a set literal {...}")
        values: list[str] = []
        while self._peek().kind is TokenKind.STRING:
            values.append(self._next().value)
            if self._peek().kind is not TokenKind.COMMA:
                break
            self._next()  # a trailing comma before '}' is allowed, as in Calico
        self._expect(TokenKind.RBRACE, "a quoted string or '}'")
        return values


def _describe(token: Token) -> str:
    if token.kind is TokenKind.LABEL:
        return f"label {token.value!r}"
    if token.kind is TokenKind.STRING:
        return f"string {token.value!r}"
    return str(token.kind.value)


def format_selector(selector: Selector) -> str:
    """Calico's canonical text for a selector; `parse_selector` reads it back.

    The form is Calico's `String()`: every `&&` / `||` group is parenthesized (even at the top),
    `!` is written straight before its operand, set values are sorted and de-duplicated, and a
    value is double-quoted unless it contains `"`. An `In` with one value is written
    `k == "v"` and a `NotIn` with one value `k != "v"` (the two spellings mean the same, so
    `a in {"d"}` comes back as `a == "d"`, where Calico keeps the set). Nodes Calico has no
    word for: `Nothing` is `!all()`; an empty `And` is `all()`, an empty `Or` is `!all()`, a
    one-term `And` / `Or` is its term. Raises ValueError for what the syntax cannot hold: a
    value with both quote characters, or a key that is not a Calico label.

    >>> format_selector(And((In("app", frozenset({"web"})), NotIn("tier", frozenset({"b", "a"})))))
    '(app == "web" && tier not in {"a", "b"})'
    """
    match selector:
        case All():
            return "all()"
        case Nothing():
            return "!all()"
        case Global():
            return "global()"
        case Has(key=key):
            return f"has({_label(key)})"
        case In(key=key, values=values):
            return _membership(key, values, "==", "in")
        case NotIn(key=key, values=values):
            return _membership(key, values, "!=", "not in")
        case Contains(key=key, value=value):
            return f"{_label(key)} contains {_quote(value)}"
        case StartsWith(key=key, value=value):
            return f"{_label(key)} starts with {_quote(value)}"
        case EndsWith(key=key, value=value):
            return f"{_label(key)} ends with {_quote(value)}"
        case Not(term=term):
            return "!" + format_selector(term)
        case And(terms=terms):
            return _group(terms, " && ", empty="all()")
        case Or(terms=terms):
            return _group(terms, " || ", empty="!all()")
    raise TypeError(f"no Calico form for selector node {type(selector).__name__}")


def _membership(key: str, values: frozenset[str], single: str, multiple: str) -> str:
    if len(values) == 1:
        (value,) = values
        return f"{_label(key)} {single} {_quote(value)}"
    # Python orders str by code point, which is the UTF-8 byte order Go's sort uses.
    listed = ", ".join(_quote(value) for value in sorted(values))
    return f"{_label(key)} {multiple} {{{listed}}}"


def _group(terms: Iterable[Selector], operator: str, empty: str) -> str:
    parts = [format_selector(term) for term in terms]
    if not parts:
        return empty
    return parts[0] if len(parts) == 1 else "(" + operator.join(parts) + ")"


def _label(key: str) -> str:
    if not _LABEL.fullmatch(key):
        raise ValueError(f"label key {key!r} cannot be written in a Calico selector")
    return key


def _quote(value: str) -> str:
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    raise ValueError(f"value {value!r} has both quote characters; Calico strings have no escapes")


_K8S_FIELDS = frozenset({"matchLabels", "matchExpressions"})
# A YAML/JSON mapping written inline; a Calico selector never starts like this.
_LOOKS_LIKE_MAPPING = re.compile(r"\s*(\{|match(Labels|Expressions)\s*:)")


def selector_from_any(value: str | Mapping[str, Any]) -> Selector:
    """A Calico selector string, or a Kubernetes label selector (matchLabels /
    matchExpressions) given as a mapping or as YAML/JSON text, as a model selector.

    >>> selector_from_any("{matchLabels: {app: web}}") == selector_from_any('app == "web"')
    True
    """
    if isinstance(value, str):
        if not _LOOKS_LIKE_MAPPING.match(value):
            return parse_selector(value)
        try:
            loaded = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise InputError(None, f"invalid YAML label selector: {_yaml_problem(error)}") from None
        if not isinstance(loaded, Mapping):
            raise InputError(None, "a Kubernetes label selector must be a mapping")
        value = loaded
    return _label_selector(value)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line: the problem and where, without PyYAML's multi-line source excerpt."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"{error.problem} at line {mark.line + 1} column {mark.column + 1}"
    return str(error).splitlines()[0]


def _label_selector(value: Mapping[str, Any]) -> Selector:
    # LabelSelector ignores unknown fields, as the API server does for whole resources; here a
    # stray field is far more likely a mistake (`{app: web}` for `{matchLabels: {app: web}}`)
    # that would otherwise select everything.
    unknown = sorted(str(key) for key in value if key not in _K8S_FIELDS)
    if unknown:
        fields = ", ".join(unknown)
        message = f"not a label selector field: {fields} (use matchLabels / matchExpressions)"
        raise InputError(None, message)
    try:
        return LabelSelector.model_validate(value).to_selector()
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"] if "[" not in str(part))
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InputError(None, message, where) from None
