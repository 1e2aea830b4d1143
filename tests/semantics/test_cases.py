"""Every upstream conformance and e2e scenario, decided by the single-flow engine."""

from __future__ import annotations

import pytest

from tests.semantics.cases import CALICO, CONFORMANCE, K8S_E2E, Case, all_cases, wrong_verdicts

CASES = all_cases()


def test_corpora_are_present() -> None:
    """The suites must be found (CI has ../shared): an empty parametrization proves nothing."""
    assert len([c for c in CASES if c.path.parent == CONFORMANCE]) == 92
    assert len([c for c in CASES if c.path.parent == K8S_E2E]) >= 48
    assert len([c for c in CASES if c.path.parent == CALICO]) >= 10


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.path.parent.name}/{c.name}")
def test_case(case: Case) -> None:
    wrong = wrong_verdicts(case, case.cluster())
    assert not wrong, "\n".join(wrong)
