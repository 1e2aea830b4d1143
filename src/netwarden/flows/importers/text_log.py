"""A text log's bytes: a file read where it lies, or a gzip file decompressed into memory once
(AWS delivers VPC flow logs to S3 as `.log.gz`; a user should not have to unpack them first).

Recognised by its magic bytes, not its name. Readers ask a `TextLog` for its first line, its
size, its line count, a source for Arrow's multi-threaded readers, and (slow paths only) the
whole text as bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]

from netwarden.errors import InputError
from netwarden.flows.importers.common import (
    count_buffer_lines,
    count_lines,
    read_bytes,
    read_first_line,
)
from netwarden.model.location import Location

GZIP_MAGIC = b"\x1f\x8b"

#: Bytes per numpy comparison looking for the first line: one over the whole text would
#: allocate a mask as large as it.
_BLOCK = 1 << 23


@dataclass(frozen=True)
class TextLog:
    """`path`'s text: read from the file itself, or from `inflated` for a gzip file.
    `first_line` is the text's first line with its newline (everything, if there is none)."""

    path: str
    first_line: bytes
    inflated: Any = None  # pyarrow Buffer holding a gzip file's decompressed text

    @classmethod
    def open(cls, path: str) -> TextLog:
        first_line = read_first_line(path)
        if first_line[:2] != GZIP_MAGIC:
            return cls(path, first_line)
        try:
            with pa.CompressedInputStream(pa.OSFile(path), "gzip") as stream:
                inflated = stream.read_buffer()
        except (OSError, pa.ArrowException) as error:
            raise InputError(Location(path), f"not a readable gzip file: {error}") from None
        return cls(path, _first_line(inflated), inflated)

    def size(self) -> int:
        return int(self.inflated.size) if self.inflated is not None else os.path.getsize(self.path)

    def line_count(self) -> int:
        """Lines, an unterminated last one included."""
        if self.inflated is None:
            return count_lines(self.path)
        return count_buffer_lines(np.frombuffer(self.inflated, dtype=np.uint8))

    def arrow_source(self) -> Any:
        """What `pyarrow.csv.read_csv` reads: the path, or the decompressed buffer."""
        return self.path if self.inflated is None else self.inflated

    def text(self) -> bytes:
        """The whole text (copied into memory)."""
        return read_bytes(self.path) if self.inflated is None else self.inflated.to_pybytes()


def _first_line(text: Any) -> bytes:
    """The first line of a buffer, looked for block by block."""
    raw = np.frombuffer(text, dtype=np.uint8)
    for start in range(0, len(raw), _BLOCK):
        newlines = np.flatnonzero(raw[start : start + _BLOCK] == 10)
        if len(newlines):
            return raw[: start + newlines[0] + 1].tobytes()
    return raw.tobytes()
