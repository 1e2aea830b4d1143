"""Dialects: read each input format into the model, and write the model back out.

Each format is one module with a `READERS` table keyed by (API group, kind); `registry.py`
lists the modules. Readers validate once, at reading, and every error names file, line and
field. To add a format, add a module, one line in `registry.DIALECTS`, and its tests.

The writers, `k8s_writer` and `calico_writer`, are built from modules named after the
reader each inverts (`k8s_netpol_writer`, `admin_netpol_writer`, `k8s_inventory_writer`,
`k8s_label_writer`, `calico_rule_writer`; `calico_conversion` is Calico's own conversion of a
NetworkPolicy); `writer_common` holds what every writer shares, `calico_syntax` how Calico
manifests spell selectors, protocols and ports.
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
