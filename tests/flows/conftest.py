"""Flow store fixtures: every store test runs on DuckDB (a real file) and on chDB (embedded
ClickHouse running the ClickHouse backend's SQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from netwarden.flows.schema import from_records
from netwarden.flows.store import FlowStore, open_store

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(params=["duckdb", "chdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FlowStore]:
    url = (
        f"duckdb:{tmp_path / 'flows.duckdb'}"
        if request.param == "duckdb"
        else f"chdb:{tmp_path / 'ch'}"
    )
    opened = open_store(url)
    try:
        yield opened
    finally:
        opened.close()


def sample_records() -> list[dict[str, Any]]:
    """Three days of a small shop: web -> db allowed, web -> pci denied, DNS, external."""
    records = []
    for day in range(3):
        for i in range(20):
            when = T0 + timedelta(days=day, minutes=i)
            base = {
                "start_time": when,
                "end_time": when + timedelta(seconds=30),
                "source_ip": f"10.244.1.{10 + i % 3}",
                "source_type": "workload",
                "source_namespace": "shop",
                "source_name": f"web-{i % 3}",
                "source_name_aggr": "web-*",
                "source_labels": ["app=web"],
                "proto": "tcp",
                "reporter": "src",
                "host": "node-a",
                "num_flows": 1,
                "num_flows_started": 1,
                "num_flows_completed": 1,
            }
            kind = i % 4
            if kind == 0:
                record = base | {
                    "dest_ip": "10.244.2.7",
                    "dest_port": 5432,
                    "dest_type": "workload",
                    "dest_namespace": "shop",
                    "dest_name": "db-0",
                    "dest_name_aggr": "db-*",
                    "dest_labels": ["app=db", "tier=data"],
                    "action": "allow",
                    "policies_enforced": ["0|default|shop/knp.default.allow-db|allow|0"],
                    "bytes_out": 1000 + i,
                    "bytes_in": 5000,
                    "packets_out": 10,
                    "packets_in": 12,
                }
            elif kind == 1:
                record = base | {
                    "dest_ip": "10.244.3.4",
                    "dest_port": 8443,
                    "dest_type": "workload",
                    "dest_namespace": "pci",
                    "dest_name": "card-0",
                    "dest_name_aggr": "card-*",
                    "dest_labels": ["app=card", "pci=true"],
                    "action": "deny",
                    "policies_enforced": ["0|security|pci/security.pci-isolation|deny|1"],
                    "bytes_out": 60,
                    "packets_out": 1,
                }
            elif kind == 2:
                record = base | {
                    "dest_ip": "10.96.0.10",
                    "dest_port": 53,
                    "proto": "udp",
                    "dest_type": "workload",
                    "dest_namespace": "kube-system",
                    "dest_name": "coredns-1",
                    "dest_name_aggr": "coredns-*",
                    "dest_labels": ["k8s-app=kube-dns"],
                    "action": "allow",
                    "bytes_out": 70,
                    "bytes_in": 120,
                }
            else:
                record = base | {
                    "dest_ip": "93.184.216.34",
                    "dest_port": 443,
                    "dest_type": "external",
                    "action": "allow",
                    "bytes_out": 2000,
                    "bytes_in": 90000,
                }
            records.append(record)
    return records


@pytest.fixture
def sample_table() -> Any:
    return from_records(sample_records())
