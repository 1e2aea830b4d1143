"""The output formats of the connectivity map: one module per format, registered here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from netwarden.analysis import (
    render_csv,
    render_dot,
    render_html,
    render_json,
    render_md,
    render_txt,
)
from netwarden.analysis.connectivity import ConnectivityMap
from netwarden.analysis.groups import By

Renderer = Callable[[ConnectivityMap, By, TextIO], None]

RENDERERS: dict[str, Renderer] = {
    "txt": render_txt.render,
    "csv": render_csv.render,
    "json": render_json.render,
    "md": render_md.render,
    "dot": render_dot.render,
    "html": render_html.render,
}
