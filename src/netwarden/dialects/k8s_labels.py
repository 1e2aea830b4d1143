"""Kubernetes label selectors (`matchLabels` / `matchExpressions`) -> model selectors."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from netwarden.dialects.validation import Schema
from netwarden.model import All, Has, In, Not, Nothing, NotIn, Selector, all_of


class LabelSelectorRequirement(Schema):
    key: str = Field(min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = []

    @model_validator(mode="after")
    def _values_match_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self


class LabelSelector(Schema):
    match_labels: dict[str, str] = {}
    match_expressions: list[LabelSelectorRequirement] = []

    def to_selector(self) -> Selector:
        """Every label and expression must hold; an empty selector matches everything."""
        terms: list[Selector] = [In(k, frozenset({v})) for k, v in self.match_labels.items()]
        for requirement in self.match_expressions:
            values = frozenset(requirement.values)
            match requirement.operator:
                case "In":
                    terms.append(In(requirement.key, values) if values else Nothing())
                case "NotIn":
                    terms.append(NotIn(requirement.key, values))
                case "Exists":
                    terms.append(Has(requirement.key))
                case "DoesNotExist":
                    terms.append(Not(Has(requirement.key)))
        return all_of(terms) if terms else All()
