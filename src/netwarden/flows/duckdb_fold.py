"""`FlowStore.fold` for DuckDB: stored records folded into their distinct key combinations.

A replay needs, per distinct (identity columns, port, protocol, action, reporter), how many
records there are and their counter totals: ten million records of a week fold into a few
hundred thousand rows, and only those leave the database. Measured on 10M records with 13
text keys (2 cores): DuckDB's hash aggregate on the text itself hashes and compares every
record's strings, 2.4-3.2 s of CPU; on one 64-bit `hash()` per text column, 1.4 s; on one
hash per *bundle* of columns, 1.0 s. So the fold first reads each text column's distinct
values (DuckDB keeps text dictionary-compressed: `DISTINCT` over one column is ~30 ms of CPU),
bundles the columns so that a bundle's value combinations stay few (`_BUNDLE_LIMIT`), and has
DuckDB hash every combination of each bundle's values: when those hashes are all distinct,
grouping on the bundle hashes is grouping on the values, exactly, and the combinations turn
the hashes back into values. Should two combinations ever share a hash, the fold groups on
the text itself. The queries run in one transaction, so all of them see the same records
even while a collector appends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from netwarden.flows.duckdb_schema import transaction
from netwarden.flows.schema import FLOW_SCHEMA
from netwarden.flows.store import FOLD_FIRST, FOLD_RECORDS
from netwarden.flows.store_common import check_fold_columns, fold_schema

#: Text keys are hashed in bundles; every combination of a bundle's values (at most this
#: many) is checked for a hash of its own.
_BUNDLE_LIMIT = 1 << 18


def fold_duckdb(
    connection: duckdb.DuckDBPyConnection,
    keys: Sequence[str],
    sums: Sequence[str],
    clause: str,
    params: list[Any],
) -> Any:
    """The fold of `flows{clause}` (see the module docstring), one transaction."""
    check_fold_columns(keys, sums)
    with transaction(connection):
        folded = fold_by_hash(connection, keys, sums, clause, params)
        if folded is None:
            folded = fold_by_value(connection, keys, sums, clause, params)
    return folded


def _aggregates(sums: Sequence[str]) -> str:
    totals = "".join(f", sum({s})::BIGINT AS {s}" for s in sums)
    return f"count(*) AS {FOLD_RECORDS}, min(start_time) AS {FOLD_FIRST}{totals}"


def _text(key: str) -> bool:
    return bool(pa.types.is_string(FLOW_SCHEMA.field(key).type))


def fold_by_value(
    connection: duckdb.DuckDBPyConnection,
    keys: Sequence[str],
    sums: Sequence[str],
    clause: str,
    params: list[Any],
) -> Any:
    """The fold grouped on the key columns themselves."""
    sql = f"SELECT {', '.join(keys)}, {_aggregates(sums)} FROM flows{clause} GROUP BY ALL"
    return connection.sql(sql, params=params).to_arrow_table().cast(fold_schema(keys, sums))


def fold_by_hash(
    connection: duckdb.DuckDBPyConnection,
    keys: Sequence[str],
    sums: Sequence[str],
    clause: str,
    params: list[Any],
) -> Any | None:
    """The fold grouped on hashes of bundles of text keys, text keys dictionary-encoded;
    None when two combinations of one bundle's values share a hash (then only
    `fold_by_value` is exact)."""
    distinct = {
        key: connection.sql(f"SELECT DISTINCT {key} AS value FROM flows{clause}", params=params)
        .to_arrow_table()
        .column("value")
        .combine_chunks()
        for key in keys
        if _text(key)
    }
    bundles = _bundles({key: len(values) for key, values in distinct.items()})
    combinations = []
    for bundle in bundles:
        found = _combinations(connection, [distinct[key] for key in bundle])
        if found is None:
            return None
        combinations.append(found)
    hashed = [f"hash({', '.join(bundle)}) AS __bundle_{i}" for i, bundle in enumerate(bundles)]
    plain = [key for key in keys if key not in distinct]
    sql = (
        f"SELECT {', '.join([*hashed, *plain])}, {_aggregates(sums)}"
        f" FROM flows{clause} GROUP BY ALL"
    )
    folded = connection.sql(sql, params=params).to_arrow_table()
    decoded: dict[str, Any] = {}
    for i, (bundle, (hashes, codes)) in enumerate(zip(bundles, combinations, strict=True)):
        at = pc.index_in(folded.column(f"__bundle_{i}"), value_set=hashes)
        if at.null_count:
            return None  # a hash of no combination: not one snapshot (cannot happen in one)
        rows = at.to_numpy()
        for j, key in enumerate(bundle):
            decoded[key] = _dictionary(distinct[key], codes[rows, j])
    schema = fold_schema(keys, sums)
    columns = [
        decoded[f.name] if f.name in decoded else folded.column(f.name).cast(f.type) for f in schema
    ]
    return pa.table(columns, names=schema.names)


def _bundles(sizes: dict[str, int]) -> list[list[str]]:
    """Text keys in bundles of at most `_BUNDLE_LIMIT` value combinations (first fit,
    biggest first): fewer, wider hashes make a cheaper group key than one per column."""
    bundles: list[list[str]] = []
    products: list[int] = []
    for key in sorted(sizes, key=lambda k: -sizes[k]):
        size = max(sizes[key], 1)
        for i, product in enumerate(products):
            if product * size <= _BUNDLE_LIMIT:
                bundles[i].append(key)
                products[i] *= size
                break
        else:
            bundles.append([key])
            products.append(size)
    return bundles


def _combinations(connection: duckdb.DuckDBPyConnection, columns: list[Any]) -> Any | None:
    """DuckDB's hash of every combination of the columns' distinct values, and per
    combination the position of each value; None if two combinations share a hash."""
    names = [f"__fold_values_{i}" for i in range(len(columns))]
    for name, column in zip(names, columns, strict=True):
        positions = pa.array(np.arange(len(column), dtype=np.int32))
        connection.register(name, pa.table({"value": column, "code": positions}))
    try:
        hashed = ", ".join(f"t{i}.value" for i in range(len(names)))
        coded = ", ".join(f"t{i}.code AS code_{i}" for i in range(len(names)))
        tables = " CROSS JOIN ".join(f"{name} AS t{i}" for i, name in enumerate(names))
        found = connection.sql(
            f"SELECT hash({hashed}) AS hash, {coded} FROM {tables}"
        ).to_arrow_table()
    finally:
        for name in names:
            connection.unregister(name)
    hashes = found.column("hash").combine_chunks()
    if len(pc.unique(hashes)) < len(hashes):
        return None
    codes = np.column_stack([found.column(f"code_{i}").to_numpy() for i in range(len(names))])
    return hashes, codes.astype(np.int64)


def _dictionary(values: Any, position: Any) -> Any:
    """Positions into `values` as a dictionary array (nulls as null indices)."""
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    renumber = np.cumsum(valid) - 1  # index among the non-null values
    indices = pa.array(renumber[position].astype(np.int32), mask=~valid[position])
    return pa.DictionaryArray.from_arrays(indices, values.drop_null())
