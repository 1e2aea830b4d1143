"""Every importer reads gzip-compressed logs (S3 delivers VPC flow logs as `.log.gz`, rotated
Calico and Hubble logs are often gzipped), recognised by their magic bytes, not their name:
the same records, rejections and line numbers as the plain file."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from netwarden.flows.importers import importer
from tests.flows.conftest import FIXTURES

SAMPLES = [
    ("hubble", "hubble-observe.json"),
    ("calico", "calico-flows.log"),
    ("calico-dns", "calico-dns.log"),
    ("vpc", "vpc-default-v2.log"),
    ("vpc", "vpc-custom-v5.log"),
]


@pytest.mark.parametrize(("format_name", "sample"), SAMPLES)
@pytest.mark.parametrize("name", ["flows.log.gz", "flows.log"])
def test_a_gzip_file_reads_like_the_plain_one(
    tmp_path: Path, format_name: str, sample: str, name: str
) -> None:
    plain, packed = FIXTURES / sample, tmp_path / name
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    read = importer(format_name).read
    expected, result = read(str(plain)), read(str(packed))
    assert result.rejected == expected.rejected and expected.rejected  # line numbers too
    assert result.records_in == expected.records_in and expected.stored > 0
    assert result.table.equals(expected.table)


def test_a_clean_hubble_file_gzipped_reads_like_the_plain_one(tmp_path: Path) -> None:
    # A clean plain file goes through DuckDB's JSON reader, a gzip one through pyarrow's.
    sample = FIXTURES / "hubble-observe.json"
    bad = {r.line for r in importer("hubble").read(str(sample)).rejected}
    lines = sample.read_text().splitlines(keepends=True)
    clean = "".join(line for number, line in enumerate(lines, 1) if number not in bad)
    plain, packed = tmp_path / "clean.json", tmp_path / "clean.json.gz"
    plain.write_text(clean)
    packed.write_bytes(gzip.compress(clean.encode()))
    expected, result = importer("hubble").read(str(plain)), importer("hubble").read(str(packed))
    assert expected.rejected == () and expected.stored == expected.records_in > 0
    assert (result.records_in, result.rejected) == (expected.records_in, ())
    assert result.table.equals(expected.table)
