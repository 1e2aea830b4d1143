"""html: one self-contained page (no network access): the groups on a circle as inline SVG,
an arrow per allowed connection, and a little inline JavaScript: click a node to show only its
connections (listed beside the graph), type in the filter box to keep matching nodes."""

from __future__ import annotations

import html
import json
import math
from typing import TextIO

from netwarden.analysis.connectivity import ConnectivityMap
from netwarden.analysis.groups import By
from netwarden.analysis.render_dot import nodes

_SIZE = 900
_SCRIPT = """
const data = JSON.parse(document.getElementById('data').textContent);
const svg = document.getElementById('graph');
const list = document.getElementById('details');
let focused = null;
function show() {
  const text = document.getElementById('filter').value.toLowerCase();
  const shown = data.nodes.filter(n => n.name.toLowerCase().includes(text));
  const visible = new Set(shown.map(n => n.id));
  for (const node of svg.querySelectorAll('.node')) {
    const id = Number(node.dataset.id);
    const linked = focused === null || id === focused || data.edges.some(e =>
      (e.src === focused && e.dst === id) || (e.dst === focused && e.src === id));
    node.style.display = visible.has(id) ? '' : 'none';
    node.classList.toggle('dim', !linked);
    node.classList.toggle('focused', id === focused);
  }
  for (const edge of svg.querySelectorAll('.edge')) {
    const s = Number(edge.dataset.src), d = Number(edge.dataset.dst);
    const near = focused === null || s === focused || d === focused;
    const on = visible.has(s) && visible.has(d) && near;
    edge.style.display = on ? '' : 'none';
  }
  list.innerHTML = '';
  if (focused !== null) {
    for (const e of data.edges.filter(e => e.src === focused || e.dst === focused)) {
      const item = document.createElement('li');
      const names = data.nodes[e.src].name + ' \\u2192 ' + data.nodes[e.dst].name;
      item.textContent = names + ': ' + e.ports;
      list.appendChild(item);
    }
  }
}
for (const node of svg.querySelectorAll('.node')) {
  node.addEventListener('click', () => {
    const id = Number(node.dataset.id);
    focused = focused === id ? null : id;
    show();
  });
}
document.getElementById('filter').addEventListener('input', show);
"""
_STYLE = """
body { font-family: sans-serif; margin: 1em; display: flex; gap: 1em; }
.node circle { fill: #4a90d9; stroke: #234; cursor: pointer; }
.node.external circle { fill: #d9a44a; }
.node.focused circle { fill: #d94a4a; }
.node.dim { opacity: 0.2; }
.node text { font-size: 10px; pointer-events: none; }
.edge { stroke: #888; stroke-width: 1; marker-end: url(#arrow); }
#side { min-width: 22em; }
"""


def render(cmap: ConnectivityMap, by: By, out: TextIO) -> None:
    connections = list(cmap.connections(by))
    groups = nodes(cmap, by, connections)
    ids = {g.name: i for i, g in enumerate(groups)}
    edges = [
        {"src": ids[c.src.name], "dst": ids[c.dst.name], "ports": str(c.ports)} for c in connections
    ]
    points = [{"id": i, "name": g.name, "kind": g.kind} for i, g in enumerate(groups)]
    center, radius = _SIZE / 2, _SIZE / 2 - 120
    places = []
    for i in range(len(groups)):
        angle = 2 * math.pi * i / max(1, len(groups))
        places.append((center + radius * math.cos(angle), center + radius * math.sin(angle)))
    parts = [
        f'<svg id="graph" width="{_SIZE}" height="{_SIZE}" xmlns="http://www.w3.org/2000/svg">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="18" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0L10,5L0,10z" fill="#888"/></marker></defs>',
    ]
    for edge in edges:
        (x1, y1), (x2, y2) = places[int(str(edge["src"]))], places[int(str(edge["dst"]))]
        title = html.escape(
            f"{groups[int(str(edge['src']))].name} -> "
            f"{groups[int(str(edge['dst']))].name}: {edge['ports']}"
        )
        parts.append(
            f'<line class="edge" data-src="{edge["src"]}" data-dst="{edge["dst"]}" '
            f'x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"><title>{title}</title></line>'
        )
    for i, group in enumerate(groups):
        x, y = places[i]
        kind = " external" if group.is_external else ""
        parts.append(
            f'<g class="node{kind}" data-id="{i}"><circle cx="{x:.1f}" cy="{y:.1f}" r="7"/>'
            f'<text x="{x + 9:.1f}" y="{y + 3:.1f}">{html.escape(group.name)}</text></g>'
        )
    parts.append("</svg>")
    payload = json.dumps({"nodes": points, "edges": edges}).replace("</", "<\\/")
    out.write(
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        "<title>netwarden connectivity</title>"
        f"<style>{_STYLE}</style></head><body>\n"
        f"<div>{''.join(parts)}</div>\n"
        '<div id="side"><h3>Connectivity</h3>'
        '<input id="filter" placeholder="filter nodes" size="30">'
        f"<p>{len(points)} nodes, {len(edges)} connections. Click a node to focus it.</p>"
        '<ul id="details"></ul></div>\n'
        f'<script id="data" type="application/json">{payload}</script>\n'
        f"<script>{_SCRIPT}</script>\n</body></html>\n"
    )
