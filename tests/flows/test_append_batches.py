"""DuckDB appends in whole row groups: a table whose chunks straddle row groups (CSV blocks,
concatenated files) is stored without leaving partial groups for the checkpoint to rewrite,
and in input order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from netwarden.flows.duckdb_store import DuckDBFlowStore
from netwarden.flows.schema import conform

ROWS = 400_000
CHUNK = 153_000  # more than a row group (122,880 rows), as a 4 MB CSV block of VPC logs


def _chunked_flows() -> pa.Table:
    index = np.arange(ROWS, dtype=np.int64)
    start = pa.array(index * 1_000_000 + 1_800_000_000_000_000, pa.timestamp("us", tz="UTC"))
    table = conform(
        pa.table(
            {
                "start_time": start,
                "end_time": start,
                "source_ip": pa.array(np.char.add("10.0.0.", (index % 251).astype(str))),
                "bytes_out": pa.array(index),
            }
        )
    )
    return pa.Table.from_batches(table.to_batches(max_chunksize=CHUNK))


def test_a_checkpoint_after_an_append_rewrites_nothing(tmp_path: Path) -> None:
    table = _chunked_flows()
    assert table.column("bytes_out").num_chunks == 3
    with DuckDBFlowStore(str(tmp_path / "flows.duckdb")) as store:
        assert store.append(table) == ROWS
        store.connection.execute("CHECKPOINT")
        ((free_blocks, row_groups),) = store.connection.execute(
            "SELECT (SELECT free_blocks FROM pragma_database_size()),"
            " (SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('flows'))"
        ).fetchall()
        assert free_blocks == 0  # a rewrite at the checkpoint frees the blocks it replaces
        assert row_groups == -(-ROWS // 122_880)
        stored = store.connection.sql("SELECT bytes_out FROM flows").to_arrow_table()
        assert stored.column(0).to_numpy().tolist() == list(range(ROWS))
