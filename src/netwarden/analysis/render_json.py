"""json: one document.

    {"by": "workload",
     "groups": [{"name": "shop/db", "kind": "workload", "namespace": "shop",
                 "members": ["shop/db-0"], "ranges": []}, ...],
     "connections": [{"src": "shop/backend", "dst": "shop/db",
                      "ports": {"all": false, "protocols": {"TCP": "5432"}, "others": false},
                      "rows": [["TCP", "5432"]]}, ...],
     "rules": [{"src": [...group names], "dst": [...], "connection": "TCP 5432"}, ...]}

`groups` are the sources and destinations (an external group's members are its ranges);
`connections` every allowed pair of groups (`rows` as in the CSV contract, `ports` as
`PortSet.to_json`); `rules` the firewall-rule grouping of the txt output.
"""

from __future__ import annotations

import json
from typing import TextIO

from netwarden.analysis.aggregate import fw_rules
from netwarden.analysis.connectivity import ConnectivityMap
from netwarden.analysis.groups import By


def render(cmap: ConnectivityMap, by: By, out: TextIO) -> None:
    groups = [
        {
            "name": g.name,
            "kind": g.kind,
            "namespace": g.namespace,
            "members": [] if g.is_external else [cmap.endpoints[m].key for m in g.members],
            "ranges": [str(r) for r in g.ranges],
        }
        for g in cmap.groups(by)
    ]
    connections = [
        {
            "src": c.src.name,
            "dst": c.dst.name,
            "ports": c.ports.to_json(),
            "rows": [[protocol, ports] for protocol, ports in c.ports.rows()],
        }
        for c in cmap.connections(by)
    ]
    rules = [
        {
            "src": [g.name for g in rule.src],
            "dst": [g.name for g in rule.dst],
            "connection": str(rule.ports),
        }
        for rule in fw_rules(cmap, by)
    ]
    document = {"by": by, "groups": groups, "connections": connections, "rules": rules}
    json.dump(document, out, indent=1)
    out.write("\n")
