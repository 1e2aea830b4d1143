"""Label selectors as a small expression tree.

Kubernetes label selectors (matchLabels / matchExpressions) and Calico selector expressions
both compile to these nodes, so the engine has one thing to evaluate. A missing label makes
`In` false and `NotIn` true, which is the rule in both Kubernetes and Calico.

    >>> And((In("app", frozenset({"web"})), Not(Has("canary")))).matches({"app": "web"})
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

Labels = Mapping[str, str]


class Selector:
    """Base of all selector nodes: a pure predicate over a label mapping."""

    def matches(self, labels: Labels) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class All(Selector):
    """Matches every label set (an empty Kubernetes selector, Calico `all()`)."""

    def matches(self, labels: Labels) -> bool:
        return True


@dataclass(frozen=True)
class Nothing(Selector):
    """Matches no label set (a Kubernetes `In` with no values can never hold)."""

    def matches(self, labels: Labels) -> bool:
        return False


@dataclass(frozen=True)
class Has(Selector):
    key: str

    def matches(self, labels: Labels) -> bool:
        return self.key in labels


@dataclass(frozen=True)
class In(Selector):
    key: str
    values: frozenset[str]

    def matches(self, labels: Labels) -> bool:
        value = labels.get(self.key)
        return value is not None and value in self.values


@dataclass(frozen=True)
class NotIn(Selector):
    """True when the label is missing or its value is not listed."""

    key: str
    values: frozenset[str]

    def matches(self, labels: Labels) -> bool:
        value = labels.get(self.key)
        return value is None or value not in self.values


@dataclass(frozen=True)
class Not(Selector):
    term: Selector

    def matches(self, labels: Labels) -> bool:
        return not self.term.matches(labels)


@dataclass(frozen=True)
class And(Selector):
    terms: tuple[Selector, ...]

    def matches(self, labels: Labels) -> bool:
        return all(term.matches(labels) for term in self.terms)


@dataclass(frozen=True)
class Or(Selector):
    terms: tuple[Selector, ...]

    def matches(self, labels: Labels) -> bool:
        return any(term.matches(labels) for term in self.terms)


def all_of(terms: list[Selector]) -> Selector:
    """The conjunction of `terms`, simplified: no terms is `All()`, one term is itself."""
    kept = [term for term in terms if not isinstance(term, All)]
    if not kept:
        return All()
    if len(kept) == 1:
        return kept[0]
    return And(tuple(kept))


# Calico-only predicates. Like `In`, each is false when the label is missing: a missing label
# has no value to contain, start or end with anything.


@dataclass(frozen=True)
class Contains(Selector):
    """Calico `key contains "value"`: the label's value has `value` as a substring."""

    key: str
    value: str

    def matches(self, labels: Labels) -> bool:
        actual = labels.get(self.key)
        return actual is not None and self.value in actual


@dataclass(frozen=True)
class StartsWith(Selector):
    """Calico `key starts with "value"`."""

    key: str
    value: str

    def matches(self, labels: Labels) -> bool:
        actual = labels.get(self.key)
        return actual is not None and actual.startswith(self.value)


@dataclass(frozen=True)
class EndsWith(Selector):
    """Calico `key ends with "value"`."""

    key: str
    value: str

    def matches(self, labels: Labels) -> bool:
        actual = labels.get(self.key)
        return actual is not None and actual.endswith(self.value)


@dataclass(frozen=True)
class Global(Selector):
    """Calico `global()`: not a predicate on labels but a statement about scope.

    In a rule's `namespaceSelector` it means "non-namespaced resources" (host endpoints,
    global network sets) instead of "endpoints in namespaces whose labels match". The engine
    gives it that meaning where it resolves a namespace selector; here, evaluated against a
    label set, it matches nothing, so code that does not know the context selects no namespace
    rather than every one (fail closed). Calico's own parser evaluates the bare node as true.
    """

    def matches(self, labels: Labels) -> bool:
        return False
