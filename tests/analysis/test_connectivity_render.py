"""The graph formats for real: DOT through Graphviz's `dot -Tsvg`, the HTML page in headless
Chromium (Playwright), loaded from a file with the network cut off."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from netwarden.analysis import compute_connectivity
from netwarden.analysis.render import RENDERERS
from netwarden.dialects import load_paths

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def rendered(fmt: str, by: str = "workload") -> str:
    out = io.StringIO()
    cmap = compute_connectivity(load_paths([SHOP]).cluster)
    RENDERERS[fmt](cmap, by, out)  # type: ignore[arg-type]
    return out.getvalue()


def test_dot_renders_with_graphviz() -> None:
    text = rendered("dot")
    svg = subprocess.run(
        ["dot", "-Tsvg"], input=text, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    titles = re.findall(r"<title>(.*?)</title>", svg)
    edges = [t for t in titles if "&#45;&gt;" in t or "->" in t]
    assert len(edges) == text.count(" -> ")
    assert "shop/backend" in svg and "TCP 5432" in svg


@pytest.mark.slow
def test_html_page_draws_the_graph_and_focuses_a_node_offline(tmp_path: Path) -> None:
    page_file = tmp_path / "map.html"
    page_file.write_text(rendered("html"))
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(offline=True)
            page = context.new_page()
            page.on("request", lambda request: requests.append(request.url))
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_file.as_uri())
            nodes = page.locator("svg .node")
            edges = page.locator("svg .edge")
            assert nodes.count() >= 7 and edges.count() >= 10
            db = page.locator("svg .node", has_text="shop/db")
            assert db.count() == 1
            db.locator("circle").click()
            details = page.locator("#details li").all_text_contents()
            assert "shop/backend \u2192 shop/db: TCP 5432" in details
            assert all("shop/db" in line for line in details)
            visible = [e for e in edges.all() if e.is_visible()]
            assert len(visible) == len(details)
            page.fill("#filter", "kube-system")
            shown = [n.text_content() for n in nodes.all() if n.is_visible()]
            assert shown == ["kube-system/coredns"]
            assert errors == []
        finally:
            browser.close()
    assert all(url.startswith("file://") for url in requests)


@pytest.mark.parametrize("fmt", ["md", "txt"])
def test_text_formats_list_the_rules(fmt: str) -> None:
    text = rendered(fmt)
    assert "app=backend" in text and "TCP 5432" in text
    if fmt == "md":
        rows = [line for line in text.splitlines() if line.startswith("|")]
        assert all(row.count("|") - row.count("\\|") == 6 for row in rows)
