"""The JSON Schema documents exactly the Arrow schema, and stored records validate against it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa

from netwarden.flows.importers import calico, calico_dns, hubble, vpc
from netwarden.flows.schema import FLOW_SCHEMA, LIST_COLUMNS, SCHEMA_VERSION
from tests.flows.conftest import FIXTURES, sample_records

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "flow-record.schema.json").read_text())


def _as_json(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in record.items()}


def test_json_schema_names_every_column_in_order() -> None:
    assert list(SCHEMA["properties"]) == FLOW_SCHEMA.names
    assert SCHEMA["x-schema-version"] == SCHEMA_VERSION
    required = [f.name for f in FLOW_SCHEMA if not f.nullable]
    assert SCHEMA["required"] == required
    for field in FLOW_SCHEMA:
        declared = SCHEMA["properties"][field.name]
        assert declared["description"]
        if pa.types.is_list(field.type):
            assert declared["type"] == "array"
        elif pa.types.is_integer(field.type):
            assert "integer" in declared["type"]


def test_imported_records_validate() -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    tables = [
        calico.read(str(FIXTURES / "calico-flows.log")).table,
        hubble.read(str(FIXTURES / "hubble-observe.json")).table,
        calico_dns.read(str(FIXTURES / "calico-dns.log")).table,
        vpc.read(str(FIXTURES / "vpc-custom-v5.log")).table,
    ]
    for table in tables:
        for record in table.to_pylist():
            validator.validate(_as_json(record))
    for record in sample_records():
        full = {name: None for name in FLOW_SCHEMA.names} | record
        full |= {k: [] for k in LIST_COLUMNS if full[k] is None}
        full |= {k: 0 for k in SCHEMA["required"] if full[k] is None}
        validator.validate(_as_json(full))


def test_schema_rejects_a_bad_policy_hit() -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    record = _as_json(calico.read(str(FIXTURES / "calico-flows.log")).table.to_pylist()[0])
    record["policies_enforced"] = ["allow-db"]
    assert list(validator.iter_errors(record))
