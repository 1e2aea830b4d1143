"""`netwarden diff`: base and head from paths or from git history, every output format,
`--exit-code`, and errors as one diagnostic line with exit code 2."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from netwarden.analysis.diff_render import COLLAPSE_AFTER, CSV_HEADER
from tests.analysis.test_diff import BASE, DENY_OTHER, NAMESPACES, WEB_POD_1, pod, web_policy
from tests.cli.conftest import Run, assert_input_error

WIDER = BASE.replace(web_policy(), web_policy("port: 8080, endPort: 8090"))


def write(folder: Path, text: str) -> Path:
    """`text` split into two files (inventory, policies), as a repository holds them."""
    folder.mkdir(parents=True, exist_ok=True)
    inventory, _, policies = text.partition("\n---\napiVersion: networking.k8s.io/v1")
    (folder / "inventory.yaml").write_text(inventory, encoding="utf-8")
    (folder / "policies.yaml").write_text(
        "apiVersion: networking.k8s.io/v1" + policies, encoding="utf-8"
    )
    return folder


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
        env={
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_CONFIG_SYSTEM": "/dev/null",
            "PATH": "/usr/bin:/bin",
        },
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository whose commit holds BASE under deploy/; the working tree holds WIDER."""
    root = tmp_path / "repo"
    write(root / "deploy", BASE)
    (root / "README.md").write_text("not a manifest\n", encoding="utf-8")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "base")
    write(root / "deploy", WIDER)
    return root


def test_txt_lists_the_added_connection_with_its_explanation(run: Run, tmp_path: Path) -> None:
    result = run(
        "diff", "--base", write(tmp_path / "a", BASE), "--head", write(tmp_path / "b", WIDER)
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "netwarden diff: 1 connection added, 0 removed (by workload)",
        "",
        "Added connections:",
        "+ other/client -> shop/web: TCP 8081-8090",
        "    e.g. other/client-0 -> shop/web-0 TCP 8081",
        "    allowed in head by egress: default/other/client-egress[egress[1]]; "
        "ingress: default/shop/web[ingress[0]]",
        "    denied in base by ingress: default (default deny)",
    ]


def test_exit_code_says_whether_connections_changed(run: Run, tmp_path: Path) -> None:
    base, head = write(tmp_path / "a", BASE), write(tmp_path / "b", WIDER)
    same = write(tmp_path / "c", BASE)
    assert run("diff", "--base", base, "--head", head, "--exit-code").exit_code == 1
    assert run("diff", "--base", base, "--head", head).exit_code == 0
    unchanged = run("diff", "--base", base, "--head", same, "--exit-code")
    assert unchanged.exit_code == 0
    assert unchanged.stdout == "netwarden diff: no connection added or removed\n"
    # an added pod is reported, but it is not a connection change
    more = write(tmp_path / "d", BASE + WEB_POD_1)
    added_pod = run("diff", "--base", base, "--head", more, "--exit-code")
    assert added_pod.exit_code == 0, added_pod.stdout
    assert "1 endpoint only in head" in added_pod.stdout
    assert "Endpoints only in head:\n  shop/web-1\n" in added_pod.stdout


def test_json_and_csv(run: Run, tmp_path: Path) -> None:
    base, head = write(tmp_path / "a", BASE), write(tmp_path / "b", BASE + DENY_OTHER)
    result = run("diff", "--base", base, "--head", head, "-o", "json", "--by", "pod")
    document = json.loads(result.stdout)
    assert document["by"] == "pod"
    assert document["summary"]["added"] == 0
    assert document["summary"]["removed"] == len(document["removed"]) > 0
    first = document["removed"][0]
    assert first["dst"] == "other/client-0"
    assert first["denied_by"] == "ingress: default (default deny)"
    assert first["flow"].startswith(first["src"])
    rows = run("diff", "--base", base, "--head", head, "-o", "csv", "--by", "pod").stdout
    lines = rows.splitlines()
    assert lines[0] == ",".join(CSV_HEADER)
    assert all(line.startswith("removed,") for line in lines[1:])
    assert "removed,shop/web-0,other/client-0,*,,shop/web-0 -> other/client-0 ICMP," in rows


def test_md_is_a_pull_request_comment(run: Run, tmp_path: Path) -> None:
    result = run(
        "diff",
        "--base",
        write(tmp_path / "a", BASE),
        "--head",
        write(tmp_path / "b", WIDER),
        "-o",
        "md",
    )
    assert result.stdout.splitlines()[:8] == [
        "### netwarden diff",
        "",
        "**1 connection added, 0 removed (by workload)**",
        "",
        "#### Added connections (1)",
        "",
        "| source | destination | connection | example flow | allowed in head by "
        "| denied in base by |",
        "|---|---|---|---|---|---|",
    ]
    assert "| `other/client` | `shop/web` | `TCP 8081-8090` |" in result.stdout
    assert "<details>" not in result.stdout


def test_md_folds_long_tables(run: Run, tmp_path: Path) -> None:
    clients = "".join(
        pod("other", f"client-{i}", "client", f"10.0.2.{10 + i}") for i in range(1, 12)
    )
    base = write(tmp_path / "a", BASE + clients)
    head = write(tmp_path / "b", WIDER + clients)
    result = run("diff", "--base", base, "--head", head, "-o", "md", "--by", "pod")
    assert "**12 connections added, 0 removed (by pod)**" in result.stdout
    assert "<details><summary>12 connections added</summary>" in result.stdout
    assert result.stdout.count("\n| `other/client-") == 12 > COLLAPSE_AFTER
    assert result.stdout.rstrip().endswith("</details>")


def test_base_ref_reads_the_same_paths_from_git(run: Run, repo: Path) -> None:
    deploy = repo / "deploy"
    for head in (deploy, deploy / "policies.yaml"):
        args = ["diff", "--base-ref", "HEAD", "--head", head, "--exit-code"]
        if head.is_file():
            args += ["--head", deploy / "inventory.yaml"]
        result = run(*args)
        assert result.exit_code == 1, result.stdout + result.stderr
        assert "+ other/client -> shop/web: TCP 8081-8090" in result.stdout
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "wider")
    assert run("diff", "--base-ref", "HEAD", "--head", deploy, "--exit-code").exit_code == 0
    moved_back = run("diff", "--base-ref", "HEAD~1", "--head", deploy, "--exit-code")
    assert moved_back.exit_code == 1
    relative = run("diff", "--base-ref", "HEAD~1", "--head", repo, "--exit-code")  # repo root
    assert relative.stdout == moved_back.stdout


def test_base_ref_errors_are_one_line(run: Run, repo: Path, tmp_path: Path) -> None:
    deploy = repo / "deploy"
    assert_input_error(
        run("diff", "--base-ref", "no-such-ref", "--head", deploy),
        "no-such-ref",
        "unknown revision",
    )
    new = write(repo / "new", BASE)
    assert_input_error(
        run("diff", "--base-ref", "HEAD", "--head", new), "no such file or directory at HEAD"
    )
    outside = write(tmp_path / "outside", BASE)
    assert_input_error(
        run("diff", "--base-ref", "HEAD", "--head", outside), "not in a git repository"
    )


def test_base_errors_name_the_file_and_line(run: Run, repo: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(NAMESPACES + "\n---\nkind: [\n", encoding="utf-8")
    head = write(tmp_path / "b", BASE)
    assert_input_error(run("diff", "--base", broken, "--head", head), f"{broken}:", "invalid YAML")
    (repo / "deploy" / "policies.yaml").write_text("kind: Pod\napiVersion: v1\nmetadata: 3\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "broken")
    (repo / "deploy" / "policies.yaml").write_text("")
    result = run("diff", "--base-ref", "HEAD", "--head", repo / "deploy")
    assert_input_error(result, "HEAD:deploy/policies.yaml:")


def test_usage_errors(run: Run, tmp_path: Path) -> None:
    head = write(tmp_path / "b", BASE)
    assert_input_error(run("diff", "--head", head), "no base")
    assert_input_error(
        run("diff", "--head", head, "--base", head, "--base-ref", "HEAD"), "not both"
    )


def test_output_writes_the_report_to_a_file(run: Run, tmp_path: Path) -> None:
    base, head = write(tmp_path / "a", BASE), write(tmp_path / "b", WIDER)
    report = tmp_path / "comment.md"
    result = run("diff", "--base", base, "--head", head, "-o", "md", "--output", report)
    assert result.exit_code == 0 and result.stdout == ""
    assert report.read_text().startswith("### netwarden diff\n\n**1 connection added, 0 removed")
    assert not (tmp_path / "comment.md.partial").exists()
    missing = run("diff", "--base", base, "--head", head, "--output", tmp_path / "no" / "x.md")
    assert_input_error(missing, "cannot write")
