"""`netwarden compile`: YAML on stdout or one file per kind, and errors without tracebacks."""

from __future__ import annotations

from pathlib import Path

import yaml

from netwarden.cli.compile import TARGETS, write_by_kind
from netwarden.dataplane.nftables import calico_interface
from netwarden.dialects import load_paths
from netwarden.dialects.calico_writer import write_calico
from netwarden.dialects.k8s_writer import write_k8s
from tests.cli.conftest import SHOP, Run, assert_input_error

REPO = Path(__file__).resolve().parents[2]
CALICO = REPO / "examples" / "calico"


def test_targets_table() -> None:
    """One line per target; more may be added."""
    assert TARGETS["k8s"] is write_k8s
    assert TARGETS["calico"] is write_calico


def test_stdout_is_multi_document_yaml(run: Run) -> None:
    result = run("compile", "-f", SHOP, "--target", "calico")
    assert result.exit_code == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    expected = write_calico(load_paths([SHOP]).cluster)
    assert documents == expected
    kinds = {(d["apiVersion"], d["kind"]) for d in documents}
    assert ("projectcalico.org/v3", "NetworkPolicy") in kinds
    assert all(
        d["metadata"]["name"].startswith("knp.default.")
        for d in documents
        if d["kind"] == "NetworkPolicy"
    )


def test_kubernetes_target(run: Run) -> None:
    result = run("compile", "-f", SHOP, "-t", "k8s")
    assert result.exit_code == 0, result.stderr
    assert list(yaml.safe_load_all(result.stdout)) == write_k8s(load_paths([SHOP]).cluster)


def test_output_dir_one_file_per_kind(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("compile", "-f", SHOP, "-f", CALICO, "--target", "calico", "-o", out)
    assert result.exit_code == 0, result.stderr
    written = write_calico(load_paths([SHOP, CALICO]).cluster)
    files = {path.name: list(yaml.safe_load_all(path.read_text())) for path in out.iterdir()}
    assert set(files) == {f"{d['kind'].lower()}.yaml" for d in written}
    for name, documents in files.items():
        assert {d["kind"].lower() for d in documents} == {name.removesuffix(".yaml")}
        assert f"wrote {out / name} ({len(documents)} resource" in result.stdout
    assert sorted(map(str, (d for docs in files.values() for d in docs))) == sorted(
        map(str, written)
    )


def test_output_dir_reads_back(run: Run, tmp_path: Path) -> None:
    """The directory is a manifest set: read with -f it gives the policies back."""
    out = tmp_path / "out"
    assert run("compile", "-f", SHOP, "--target", "k8s", "-o", out).exit_code == 0
    assert load_paths([out]).cluster.policies == load_paths([SHOP]).cluster.policies


def test_kinds_shared_by_two_groups_get_the_group_in_the_name(tmp_path: Path) -> None:
    documents = [
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "a"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy", "metadata": {"name": "b"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c"}},
    ]
    written = write_by_kind(documents, tmp_path)
    assert sorted(path.name for path, _ in written) == [
        "networkpolicy.networking.k8s.io.yaml",
        "networkpolicy.projectcalico.org.yaml",
        "pod.yaml",
    ]


def test_write_error_exits_2_and_writes_nothing(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("compile", "-f", SHOP, "-f", CALICO, "--target", "k8s", "-o", out)
    assert_input_error(result, "cannot be written for Kubernetes", "(use the calico target)")
    assert str(CALICO) in result.stderr
    assert not out.exists()


def test_unknown_target(run: Run) -> None:
    result = run("compile", "-f", SHOP, "--target", "nftables-next")
    assert_input_error(result, "unknown target 'nftables-next' (choose from k8s, calico, nftables)")


def test_nftables_target_prints_one_nodes_ruleset(run: Run) -> None:
    result = run("compile", "-f", SHOP, "--target", "nftables", "--node", "node-a")
    assert result.exit_code == 0, result.stderr
    script = result.stdout
    assert script.startswith("# netwarden: nftables ruleset for node node-a")
    assert "table inet netwarden {" in script
    # the shop's pods on node-a are dispatched by their Calico-style interface names
    cluster = load_paths([SHOP]).cluster
    local = [e for e in cluster.endpoints if e.node == "node-a"]
    assert local
    for endpoint in local:
        assert calico_interface(endpoint.namespace or "", endpoint.name) in script
    # rules are attributed to tier/policy/rule
    assert 'comment "default/shop/' in script


def test_nftables_target_needs_a_known_node(run: Run) -> None:
    result = run("compile", "-f", SHOP, "--target", "nftables")
    assert_input_error(result, "--target nftables needs --node NODE")
    result = run("compile", "-f", SHOP, "--target", "nftables", "--node", "nowhere")
    assert_input_error(result, "unknown node 'nowhere'")
    result = run("compile", "-f", SHOP, "--target", "calico", "--node", "node-a")
    assert_input_error(result, "--node is for ruleset targets")


def test_bad_input(run: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: [x}\n")
    assert_input_error(run("compile", "-f", bad, "--target", "calico"), f"{bad}:3: invalid YAML")


def test_nothing_to_write(run: Run, tmp_path: Path) -> None:
    empty = tmp_path / "ns.yaml"
    empty.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
    result = run("compile", "-f", empty, "--target", "calico")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "nothing to write" in result.stderr
