"""Model selectors back out as Kubernetes label selectors (`matchLabels` /
`matchExpressions`), the inverse of `k8s_labels`; what no label selector can say (`||`,
`contains`, `global()`, ...) raises Inexpressible.
"""

from __future__ import annotations

from collections.abc import Iterator

from netwarden.dialects.calico_selector import format_selector
from netwarden.dialects.writer_common import Inexpressible, Manifest
from netwarden.model import All, And, Has, In, Not, Nothing, NotIn, Selector

#: No label selector matches nothing by itself: a key that must both exist and not exist does.
NOTHING_KEY = "netwarden.io/match-nothing"


def label_selector(selector: Selector) -> Manifest:
    """A model selector as matchLabels / matchExpressions. An `In` with one value goes to
    matchLabels (unless the key is already there); `Nothing` becomes a key that must both
    exist and not exist. Raises Inexpressible for `Or`, `contains`, `global()` and the like.

    >>> label_selector(And((In("app", frozenset({"web"})), Not(Has("canary")))))["matchLabels"]
    {'app': 'web'}
    """
    labels: dict[str, str] = {}
    expressions: list[Manifest] = []
    for key, operator, values in _requirements(selector):
        if operator == "In" and len(values) == 1 and key not in labels:
            labels[key] = values[0]
            continue
        expression: Manifest = {"key": key, "operator": operator}
        if operator in ("In", "NotIn"):
            expression["values"] = values
        expressions.append(expression)
    written: Manifest = {}
    if labels:
        written["matchLabels"] = labels
    if expressions:
        written["matchExpressions"] = expressions
    return written


def _requirements(
    selector: Selector, negated: bool = False
) -> Iterator[tuple[str, str, list[str]]]:
    """(key, operator, sorted values) triples whose conjunction is `selector` (negated)."""
    match selector:
        case All() | Nothing():
            if isinstance(selector, Nothing) != negated:
                yield NOTHING_KEY, "Exists", []
                yield NOTHING_KEY, "DoesNotExist", []
        case Not(term=term):
            yield from _requirements(term, not negated)
        case And(terms=terms) if not negated:
            for term in terms:
                yield from _requirements(term)
        case Has(key=key):
            yield key, "DoesNotExist" if negated else "Exists", []
        case In(key=key, values=values) | NotIn(key=key, values=values):
            inside = isinstance(selector, In) != negated
            if not values:  # `in {}` holds for nothing, `not in {}` for everything
                yield from _requirements(Nothing() if inside else All())
            else:
                yield key, "In" if inside else "NotIn", sorted(values)
        case _:
            raise Inexpressible(
                f"selector {describe_selector(selector)} has no label-selector form"
            )


def describe_selector(selector: Selector) -> str:
    """The selector in Calico syntax when it has one, for messages."""
    try:
        return repr(format_selector(selector))
    except (TypeError, ValueError):
        return repr(selector)
