"""Dialects: read each input format into the model (and, later, write it back out).

Each format is one module with a `READERS` table keyed by (API group, kind); `registry.py`
lists the modules. Readers validate once, at reading, and every error names file, line and
field. To add a format, add a module, one line in `registry.DIALECTS`, and its tests.
"""

from netwarden.dialects.loader import (
    LoadResult,
    Notice,
    Skipped,
    load_documents,
    load_paths,
    load_text,
)

__all__ = ["LoadResult", "Notice", "Skipped", "load_documents", "load_paths", "load_text"]
