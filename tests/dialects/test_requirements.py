"""The Requirement resource: every type read into the model, errors located, the JSON Schema.

`schemas/requirement.schema.json` is generated from the pydantic models; `UPDATE_GOLDEN=1
pytest tests/dialects/test_requirements.py` rewrites it.
"""

from __future__ import annotations

import json
import os
from ipaddress import ip_network
from pathlib import Path

import jsonschema
import pytest
import yaml

from netwarden.dialects import load_text
from netwarden.dialects.requirements import json_schema, read_requirements
from netwarden.dialects.source import read_paths, read_text
from netwarden.errors import InputError
from netwarden.model import (
    TCP,
    UDP,
    All,
    Direction,
    EndpointSelector,
    Has,
    In,
    Not,
    PortMatch,
    PortRange,
    RequirementKind,
)
from netwarden.model.requirements import (
    DefaultDeny,
    Egress,
    ExternalDestination,
    Isolation,
    Only,
    Reachable,
)

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "schemas" / "requirement.schema.json"
EXAMPLE = REPO / "examples" / "shop" / "requirements.yaml"
DOCS = REPO / "docs" / "requirements.md"

HEAD = "apiVersion: netwarden.io/v1alpha1\nkind: Requirement\nmetadata:\n  name: r\nspec:\n"


def read(spec: str, path: str = "reqs.yaml") -> list:
    return read_requirements(read_text(HEAD + spec, path))


def test_isolation() -> None:
    (req,) = read(
        "  type: isolation\n"
        "  description: tenants apart\n"
        "  controls: [PCI-DSS-4.0:1.3.1, NIST-800-53:SC-7(5)]\n"
        '  from: {namespaces: tenant == "a"}\n'
        "  to: {namespaces: {matchLabels: {tenant: b}}, networks: [10.0.0.0/8]}\n"
        "  except: [{protocol: UDP, port: 53}, {port: 8000, endPort: 8080}]\n"
    )
    assert req.name == "r" and req.kind is RequirementKind.ISOLATION
    assert req.controls == ("PCI-DSS-4.0:1.3.1", "NIST-800-53:SC-7(5)")
    assert req.description == "tenants apart"
    assert str(req.source) == "reqs.yaml:1"
    tenant = lambda name: EndpointSelector(All(), In("tenant", frozenset({name})))  # noqa: E731
    assert isinstance(req.check, Isolation)
    assert req.check.src.pods == tenant("a") and req.check.src.networks == ()
    assert req.check.dst.pods == tenant("b")
    assert req.check.dst.networks == (ip_network("10.0.0.0/8"),)
    assert req.check.excepted == (
        PortMatch(UDP, PortRange(53, 53)),
        PortMatch(TCP, PortRange(8000, 8080)),
    )
    assert req.check.dst.text == 'namespaces: tenant == "b"; networks: 10.0.0.0/8'


def test_only_default_deny_egress_reachable() -> None:
    (only,) = read(
        '  type: only\n  from: {pods: app == "api"}\n  to: {pods: "!has(public)"}\n'
        "  ports: [{protocol: TCP, port: 5432}]\n"
    )
    assert only.check == Only(
        only.check.src, only.check.dst, (PortMatch(TCP, PortRange(5432, 5432)),)
    )
    assert only.check.dst.pods == EndpointSelector(Not(Has("public")), All())
    (deny,) = read("  type: defaultDeny\n  workloads: {pods: all()}\n  directions: [Egress]\n")
    assert isinstance(deny.check, DefaultDeny)
    assert deny.check.directions == frozenset({Direction.EGRESS})
    (both,) = read("  type: defaultDeny\n  workloads: {namespaces: has(tenant)}\n")
    assert isinstance(both.check, DefaultDeny) and both.check.directions == frozenset(Direction)
    (egress,) = read(
        "  type: egress\n  workloads: {pods: all()}\n  allowed:\n"
        "    - networks: [198.51.100.0/24]\n      except: [198.51.100.128/25]\n"
        "      ports: [{port: 443}]\n    - networks: [10.0.0.0/8]\n"
    )
    assert isinstance(egress.check, Egress)
    assert egress.check.allowed == (
        ExternalDestination(
            (ip_network("198.51.100.0/24"),),
            (ip_network("198.51.100.128/25"),),
            (PortMatch(TCP, PortRange(443, 443)),),
        ),
        ExternalDestination((ip_network("10.0.0.0/8"),)),
    )
    (reach,) = read(
        "  type: reachable\n  from: {pods: app == 'a'}\n  to: {pods: app == 'b'}\n"
        "  ports: [{protocol: UDP, port: 53}, {protocol: TCP}]\n"
    )
    assert isinstance(reach.check, Reachable)
    assert reach.check.ports == (PortMatch(UDP, PortRange(53, 53)), PortMatch(TCP, None))


def test_the_example_reads_and_the_loader_keeps_quiet() -> None:
    requirements = read_requirements(read_paths([EXAMPLE]))
    assert {r.kind for r in requirements} == set(RequirementKind)
    # Mixed into -f inputs, a Requirement is read (and validated), not skipped as unknown.
    result = load_text(EXAMPLE.read_text(), str(EXAMPLE))
    assert result.skipped == () and result.notices == ()


def test_requirement_list_and_duplicates() -> None:
    items = [
        {
            "apiVersion": "netwarden.io/v1alpha1",
            "kind": "Requirement",
            "metadata": {"name": name},
            "spec": {"type": "defaultDeny", "workloads": {"pods": "all()"}},
        }
        for name in ("a", "b")
    ]
    text = yaml.safe_dump(
        {"apiVersion": "netwarden.io/v1alpha1", "kind": "RequirementList", "items": items}
    )
    assert [r.name for r in read_requirements(read_text(text, "list.yaml"))] == ["a", "b"]
    twice = yaml.safe_dump_all([items[0], items[0]])
    with pytest.raises(
        InputError,
        match=r"twice.yaml:\d+: duplicate Requirement a \(first defined at twice.yaml:1\)",
    ):
        read_requirements(read_text(twice, "twice.yaml"))


BASE = """\
apiVersion: netwarden.io/v1alpha1
kind: Requirement
metadata:
  name: db-only
spec:
  type: only
  controls: [PCI-DSS-4.0:1.3.1]
  from:
    pods: app == "backend"
  to:
    pods: {matchLabels: {app: db}}
  ports:
    - {protocol: TCP, port: 5432}
"""


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        (
            "type: only",
            "type: zoned",
            6,
            "spec.type: type must be one of isolation, only, defaultDeny, egress, reachable",
        ),
        ("  type: only\n", "", 6, "spec.type: type must be one of"),
        (
            'app == "backend"',
            'app == "backend" &&',
            9,
            "spec.from.pods: expected a label, has(...), all(), global(), '!' or '(', found end of selector at column 20",
        ),
        (
            "{matchLabels: {app: db}}",
            "{app: db}",
            11,
            "spec.to.pods.app: Extra inputs are not permitted",
        ),
        (
            "{matchLabels: {app: db}}",
            "{matchExpressions: [{key: app, operator: Is}]}",
            11,
            "spec.to.pods.matchExpressions[0].operator: Input should be 'In', 'NotIn', 'Exists' or 'DoesNotExist'",
        ),
        (
            "port: 5432}",
            "port: 70000}",
            13,
            "spec.ports[0].port: Input should be less than or equal to 65535",
        ),
        (
            "port: 5432}",
            "port: 5432, endPort: 80}",
            13,
            "spec.ports[0]: endPort 80 is below port 5432",
        ),
        (
            "protocol: TCP, port: 5432",
            "protocol: ICMP, port: 8",
            13,
            "spec.ports[0]: ICMP has no ports",
        ),
        ("PCI-DSS-4.0:1.3.1", "PCI DSS 1.3.1", 7, "spec.controls[0]: String should match pattern"),
        (
            '  from:\n    pods: app == "backend"\n',
            "  from: {}\n",
            8,
            "spec.from: an endpoint set needs pods, namespaces or networks",
        ),
        (
            '    pods: app == "backend"\n',
            '    pods: app == "backend"\n    networks: [10.0.0.0/33]\n',
            10,
            "spec.from.networks[0]: invalid CIDR '10.0.0.0/33'",
        ),
        ("  ports:\n", "  exept: []\n  ports:\n", 12, "spec.exept: Extra inputs are not permitted"),
        (
            "netwarden.io/v1alpha1",
            "netwarden.io/v1",
            1,
            "apiVersion: Input should be 'netwarden.io/v1alpha1'",
        ),
        (
            "  name: db-only\n",
            "  name: db-only\n  namespace: shop\n",
            5,
            "metadata.namespace: a Requirement is cluster-scoped",
        ),
    ],
)
def test_errors_are_located(old: str, new: str, line: int, message: str) -> None:
    assert old in BASE
    text = BASE.replace(old, new, 1)
    with pytest.raises(InputError) as caught:
        read_requirements(read_text(text, "reqs.yaml"))
    name = "shop/db-only" if "namespace" in new else "db-only"
    error = str(caught.value)
    assert error.startswith(f"reqs.yaml:{line}: Requirement {name}: "), error
    assert message in error
    # The JSON Schema rejects the same document, but for what only the reader can tell
    # (selector and CIDR syntax, port order, ICMP without ports, the cluster scope).
    reader_only = ("cluster-scoped", "column", "CIDR", "below port", "has no ports")
    if not any(fragment in message for fragment in reader_only):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(yaml.safe_load(text), json_schema())


def test_loader_reports_requirement_errors_for_every_command() -> None:
    with pytest.raises(InputError, match=r"^bad.yaml:6: Requirement db-only: spec.type"):
        load_text(BASE.replace("type: only", "type: nope"), "bad.yaml")


def test_schema_file_is_generated() -> None:
    text = json.dumps(json_schema(), indent=2) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        SCHEMA_FILE.parent.mkdir(exist_ok=True)
        SCHEMA_FILE.write_text(text)
    assert SCHEMA_FILE.exists(), f"{SCHEMA_FILE} is missing: run with UPDATE_GOLDEN=1"
    assert SCHEMA_FILE.read_text() == text, f"{SCHEMA_FILE} is stale: run with UPDATE_GOLDEN=1"


def _documented() -> list[dict]:
    """Every Requirement in the example and in the docs' YAML blocks."""
    found = list(yaml.safe_load_all(EXAMPLE.read_text()))
    blocks = DOCS.read_text().split("```yaml\n")[1:]
    for block in blocks:
        found += [
            d
            for d in yaml.safe_load_all(block.split("```")[0])
            if d and d.get("kind") == "Requirement"
        ]
    return found


def test_schema_accepts_the_example_and_the_docs() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    documented = _documented()
    assert len(documented) >= 10
    for document in documented:
        jsonschema.validate(document, schema)
        read_requirements(read_text(yaml.safe_dump(document), "doc.yaml"))
