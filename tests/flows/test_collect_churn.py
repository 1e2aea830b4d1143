"""The collector in a lab that changes while it collects, and `policies_pending` against what
the dataplane logs (root; CI runs them).

- `lab pod label/add/del` while a collection runs keep the flow logs on (the lab state's
  `flow_logs` flag), so a connection to a pod added meanwhile is collected, and every record
  names its endpoints (and decides its pending hits) as they were when it started.
- Property: in a lab enforcing tiered policies (an admin Pass, a security tier that logs,
  passes and denies, default-tier policies) and staging an identical copy of each, every
  record's `policies_pending` is its `policies_enforced` with the copies' `staged:` names:
  what the reference engine's trace gives is what the dataplane logs, hit for hit.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from netwarden.cli.main import app
from netwarden.dataplane.apply import list_table
from netwarden.dataplane.lab_state import load_state
from netwarden.flows.collect_lab import lab_flow_logs
from netwarden.model import TCP
from tests.flows.lab_inputs import (
    allow_ingress_yaml,
    lab_up,
    namespace_yaml,
    node_yaml,
    pod_yaml,
    staged_egress_deny_yaml,
)
from tests.flows.lab_traffic import Conversation, addresses, run

pytestmark = pytest.mark.root

PREFIX = "nwhfv"  # this module's labs: nwhfv-churn-*, nwhfv-tiered-*

HEADER = namespace_yaml("shop", "team: shop") + node_yaml("n1") + node_yaml("n2")
PODS = (
    pod_yaml("web-0", "app: web", "n1", "10.7.1.10")
    + pod_yaml("api-0", "app: api", "n2", "10.7.2.10")
    + pod_yaml("db-0", "app: db", "n2", "10.7.2.11")
)

CHURN = (
    HEADER
    + PODS
    + allow_ingress_yaml("api", "web", 8080)
    + staged_egress_deny_yaml("no-canary-out", "release == 'canary'")
)


def _tiered() -> str:
    """Enforced policies, then a staged copy (stagedAction Set) of each Calico and Kubernetes
    one: the staged set decides as the enforced one does."""
    calico = {
        "GlobalNetworkPolicy": """
metadata: {name: security.triage}
spec:
  tier: security
  order: 10
  selector: all()
  types: [Ingress]
  ingress:
    - action: Log
    - action: Pass
      source: {selector: app == 'web'}
    - action: Deny
      protocol: TCP
      source: {selector: app == 'db'}
      destination: {ports: [8080]}
""",
        "NetworkPolicy": """
metadata: {name: api, namespace: shop}
spec:
  selector: app == 'api'
  types: [Ingress]
  ingress:
    - action: Deny
      protocol: TCP
      source: {selector: app == 'web'}
      destination: {ports: [9090]}
    - action: Allow
      protocol: TCP
      source: {selector: app == 'web'}
""",
    }
    kubernetes = """
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]
"""
    text = (
        HEADER
        + PODS
        + """---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 5000}  # after the admin tier (1,000), before default (1,000,000)
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: guard}
spec:
  priority: 10
  subject: {namespaces: {matchLabels: {team: shop}}}
  ingress:
    - action: Pass
      from: [{namespaces: {matchLabels: {team: shop}}}]
      ports: [{portNumber: {port: 8080, protocol: TCP}}]
"""
    )
    for kind, body in calico.items():
        text += f"---\napiVersion: projectcalico.org/v3\nkind: {kind}{body}"
        text += f"---\napiVersion: projectcalico.org/v3\nkind: Staged{kind}{body}"
    text += f"---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy{kubernetes}"
    text += (
        f"---\napiVersion: projectcalico.org/v3\nkind: StagedKubernetesNetworkPolicy{kubernetes}"
    )
    return text


#: The policies with a staged copy, as flow logs name them.
STAGED_COPIES = {"security.triage", "shop/api", "shop/knp.default.db"}


def as_staged(hit: str) -> str:
    """`<index>|<tier>|<policy>|...` with the policy named as its staged copy is."""
    index, tier, policy, rest = hit.split("|", 3)
    if policy in STAGED_COPIES:
        namespace, slash, name = policy.rpartition("/")
        policy = f"{namespace}{slash}staged:{name}"
    return f"{index}|{tier}|{policy}|{rest}"


@pytest.fixture
def churn_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with lab_up("churn", CHURN, PREFIX, tmp_path, monkeypatch) as state:
        yield state


@pytest.fixture
def tiered_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with lab_up("tiered", _tiered(), PREFIX, tmp_path, monkeypatch) as state:
        yield state


def _pod(*arguments: str) -> None:
    result = CliRunner().invoke(app, ["lab", "pod", *arguments, "--name", "churn"])
    assert result.exit_code == 0, result.output
    assert "a collection is running" in result.output


def _addresses(directory: Path, lab: str) -> tuple[dict[str, str], dict[str, str]]:
    return addresses(load_state(lab, directory).plan)


def _flow_logs_on(directory: Path, lab: str) -> bool:
    state = load_state(lab, directory)
    logging = ["log prefix" in list_table(node.netns) for node in state.plan.nodes]
    assert state.flow_logs == all(logging) and (all(logging) or not any(logging)), logging
    return state.flow_logs


def test_collection_sees_pods_changed_while_it_runs(churn_lab: Path) -> None:
    netns, ips = _addresses(churn_lab, "churn")
    to_api = Conversation("shop/web-0", "shop/api-0", 8080, TCP, 3000, 300, True)
    with lab_flow_logs("churn", churn_lab) as collector:
        assert _flow_logs_on(churn_lab, "churn")
        before = run(to_api, netns, ips)
        to_db = run(Conversation("shop/web-0", "shop/db-0", 5432, TCP, 2000, 200, True), netns, ips)
        _pod("label", "shop/web-0", "release=canary")
        assert _flow_logs_on(churn_lab, "churn")
        relabelled = run(to_api, netns, ips)
        _pod("add", "shop/web-9", "--labels", "app=web", "--node", "n1")
        assert _flow_logs_on(churn_lab, "churn")
        netns, ips = _addresses(churn_lab, "churn")
        added = run(
            Conversation("shop/web-9", "shop/api-0", 8080, TCP, 4000, 400, True), netns, ips
        )
        _pod("del", "shop/db-0")
        assert _flow_logs_on(churn_lab, "churn")
        result = collector.stop()
    assert not _flow_logs_on(churn_lab, "churn")
    assert [c.key for c in load_state("churn", churn_lab).changes] == [
        "shop/web-0",
        "shop/web-9",
        "shop/db-0",
    ]
    assert not result.unreadable and result.inventories >= 3, result

    def records(client: tuple[str, int]) -> dict[str, dict[str, Any]]:
        found = [
            r for r in result.table.to_pylist() if (r["source_ip"], r["source_port"]) == client
        ]
        by_reporter = {r["reporter"]: r for r in found}
        assert len(by_reporter) == len(found) == 2, found  # once per reporter
        return by_reporter

    canary = ["0|default|shop/staged:no-canary-out|deny|0"]
    profile = ["0|__PROFILE__|__PROFILE__.kns.shop|allow|0"]
    for client, labels, pending in (
        (before, ["app=web"], profile),
        (relabelled, ["app=web", "release=canary"], canary),
    ):
        for reporter, record in records(client).items():
            assert (record["source_name"], record["source_labels"]) == ("web-0", labels), record
            assert (record["dest_name"], record["action"]) == ("api-0", "allow"), record
            if reporter == "src":  # the staged policy selects a canary's egress
                assert record["policies_pending"] == pending, record
    # Added while collecting: logged (the rulesets kept their flow logs), named as web-9.
    for reporter, record in records(added).items():
        assert (record["source_type"], record["source_namespace"]) == ("workload", "shop")
        assert (record["source_name"], record["source_labels"]) == ("web-9", ["app=web"])
        assert record["source_name_aggr"] == "web-*" and record["action"] == "allow"
        if reporter == "dst":
            assert record["policies_enforced"] == ["0|default|shop/knp.default.api|allow|0"]
    # Deleted before collection stopped: still named as it was when the connection started.
    for record in records(to_db).values():
        assert (record["dest_type"], record["dest_name"]) == ("workload", "db-0"), record
        assert record["dest_labels"] == ["app=db"]


TIERED_CONVERSATIONS = [
    Conversation("shop/web-0", "shop/api-0", 8080, TCP, 2000, 200, True),  # admin & security Pass
    Conversation("shop/web-0", "shop/db-0", 5432, TCP, 2000, 200, True),  # security Pass, knp
    Conversation("shop/web-0", "shop/api-0", 9090, TCP, 1000, 0, False),  # Pass, then Deny
    Conversation("shop/db-0", "shop/api-0", 8080, TCP, 1000, 0, False),  # admin Pass, then Deny
    Conversation("shop/db-0", "shop/web-0", 7070, TCP, 1000, 0, False),  # security's default
]


def test_pending_hits_are_the_hits_the_dataplane_logs(tiered_lab: Path) -> None:
    netns, ips = _addresses(tiered_lab, "tiered")
    allowed = [c for c in TIERED_CONVERSATIONS if c.allowed]
    denied = [c for c in TIERED_CONVERSATIONS if not c.allowed]
    with lab_flow_logs("tiered", tiered_lab) as collector:
        clients = [run(c, netns, ips) for c in allowed]
        with ThreadPoolExecutor(len(denied)) as pool:  # each waits for its timeout
            clients += pool.map(lambda c: run(c, netns, ips), denied)
        result = collector.stop()
    ours = set(clients)
    records = [r for r in result.table.to_pylist() if (r["source_ip"], r["source_port"]) in ours]
    # Every connection at its source; the allowed ones (and the denied ones that got past
    # the source, all here) at their destination too.
    assert {(r["source_ip"], r["source_port"], r["reporter"]) for r in records} == {
        (ip, port, reporter) for ip, port in ours for reporter in ("src", "dst")
    }
    enforced = {tuple(r["policies_enforced"]) for r in records if r["reporter"] == "dst"}
    assert enforced >= {  # the lab logged every kind of hit the property is about
        (
            "0|adminnetworkpolicy|kanp.adminnetworkpolicy.guard|pass|0",
            "1|security|security.triage|pass|1",
            "2|default|shop/api|allow|1",
        ),
        ("0|security|security.triage|pass|1", "1|default|shop/knp.default.db|allow|0"),
        ("0|security|security.triage|pass|1", "1|default|shop/api|deny|0"),
        (
            "0|adminnetworkpolicy|kanp.adminnetworkpolicy.guard|pass|0",
            "1|security|security.triage|deny|2",
        ),
        ("0|security|security.triage|deny|-1",),
    }, enforced
    for record in records:
        assert record["policies_pending"] == [as_staged(h) for h in record["policies_enforced"]], (
            record
        )
