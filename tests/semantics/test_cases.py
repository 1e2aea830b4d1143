"""Every upstream conformance and e2e scenario, decided by the single-flow engine."""

from __future__ import annotations

import pytest

from netwarden.engine import PolicyEngine
from tests.semantics.cases import CALICO, CONFORMANCE, K8S_E2E, Case, all_cases, flow_of

CASES = all_cases()


def test_corpora_are_present() -> None:
    """The suites must be found (CI has ../shared): an empty parametrization proves nothing."""
    assert len([c for c in CASES if c.path.parent == CONFORMANCE]) == 92
    assert len([c for c in CASES if c.path.parent == K8S_E2E]) >= 48
    assert len([c for c in CASES if c.path.parent == CALICO]) >= 10


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.path.parent.name}/{c.name}")
def test_case(case: Case) -> None:
    cluster = case.cluster()
    engine = PolicyEngine(cluster)
    wrong = []
    for expectation in case.expectations():
        verdict = engine.decide(flow_of(cluster, expectation))
        if verdict.allowed != expectation.allowed:
            wrong.append(
                f"{expectation}: expected {'allow' if expectation.allowed else 'deny'}, "
                f"egress {verdict.egress.deciding}, ingress {verdict.ingress.deciding}"
            )
        staged = verdict.staged.allowed if verdict.staged is not None else None
        if expectation.staged is not None and staged != expectation.staged:
            wrong.append(
                f"{expectation}: staged set should {'allow' if expectation.staged else 'deny'}"
            )
    assert not wrong, "\n".join(wrong)
