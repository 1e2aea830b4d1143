"""Inventories and labs for the collector's and `apply`'s tests: the objects they all need as
YAML documents (a namespace, nodes, pods with labels and addresses, a Kubernetes policy
letting one app in on some ports, a staged egress deny) and a lab brought up from such
inputs under a test module's own prefix, torn down even when the test fails.

Pods and policies are in namespace `shop`. Every builder returns one document starting with
`---`, so a test's inventory reads as the sum of what it holds:

    namespace_yaml("shop") + node_yaml("n1") + pod_yaml("web-0", "app: web", "n1", "10.7.1.10")
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netwarden.cli.main import app
from netwarden.dataplane.lab import destroy_lab


def namespace_yaml(name: str, labels: str = "") -> str:
    """A Namespace; `labels` as YAML flow mapping content (`team: shop`)."""
    metadata = f"name: {name}, labels: {{{labels}}}" if labels else f"name: {name}"
    return f"---\napiVersion: v1\nkind: Namespace\nmetadata: {{{metadata}}}\n"


def node_yaml(name: str, internal_ip: str | None = None) -> str:
    """A Node, with an InternalIP when the test needs the host's own address."""
    text = f"---\napiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n"
    if internal_ip is not None:
        text += f"status: {{addresses: [{{type: InternalIP, address: {internal_ip}}}]}}\n"
    return text


def pod_yaml(
    name: str,
    labels: str,
    node: str,
    ip: str | None = None,
    *,
    container: str | None = None,
) -> str:
    """A Pod on `node`; without `ip` a lab gives it an address. `labels` as YAML flow mapping
    content (`app: api, version: v2`)."""
    spec = f"nodeName: {node}" + (f", containers: [{{name: {container}}}]" if container else "")
    text = (
        "---\napiVersion: v1\nkind: Pod\n"
        f"metadata: {{name: {name}, namespace: shop, labels: {{{labels}}}}}\n"
        f"spec: {{{spec}}}\n"
    )
    if ip is not None:
        text += f"status: {{podIP: {ip}}}\n"
    return text


def allow_ingress_yaml(app: str, from_app: str, *ports: int | str) -> str:
    """A Kubernetes NetworkPolicy named `app`: pods `app=<app>` take ingress from pods
    `app=<from_app>` on `ports` only: `8080` (TCP by default) or `"5353/UDP"`."""
    listed = ", ".join(_port(port) for port in ports)
    return (
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
        f"metadata: {{name: {app}, namespace: shop}}\n"
        "spec:\n"
        f"  podSelector: {{matchLabels: {{app: {app}}}}}\n"
        f"  ingress: [{{from: [{{podSelector: {{matchLabels: {{app: {from_app}}}}}}}], "
        f"ports: [{listed}]}}]\n"
    )


def _port(port: int | str) -> str:
    number, _, protocol = str(port).partition("/")
    return f"{{port: {number}, protocol: {protocol}}}" if protocol else f"{{port: {number}}}"


def staged_egress_deny_yaml(name: str, selector: str) -> str:
    """A Calico StagedNetworkPolicy denying all egress of the pods `selector` selects."""
    return (
        "---\napiVersion: projectcalico.org/v3\nkind: StagedNetworkPolicy\n"
        f"metadata: {{name: {name}, namespace: shop}}\n"
        "spec:\n"
        f"  selector: {selector}\n"
        "  types: [Egress]\n"
        "  egress: [{action: Deny}]\n"
    )


def require_root(*tools: str) -> None:
    """Fail (never skip: CI runs these as root) without root or one of `tools`."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces): run the suite as root, as CI does")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.fail(f"this test needs `{tool}` (make system-deps)")


@contextmanager
def lab_up(
    name: str, inputs: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Lab `name` enforcing `inputs`, brought up with `netwarden lab up` under `prefix`; yields
    its state folder (`tmp_path/labs`). NETWARDEN_LAB_DIR and NETWARDEN_LAB_PREFIX are set for
    the test, so CLI processes it starts find the lab too. Destroyed on exit, also when the
    test fails or `lab up` does."""
    require_root("ip", "nft", "ulogd", "conntrack")
    state = tmp_path / "labs"
    monkeypatch.setenv("NETWARDEN_LAB_DIR", str(state))
    monkeypatch.setenv("NETWARDEN_LAB_PREFIX", prefix)
    path = tmp_path / f"{name}.yaml"
    path.write_text(inputs)
    destroy_lab(name, prefix, state)  # what a killed earlier run left
    try:
        result = CliRunner().invoke(
            app, ["lab", "up", "-f", str(path), "--name", name, "--enforce"]
        )
        assert result.exit_code == 0, result.output
        yield state
    finally:
        destroy_lab(name, prefix, state)
