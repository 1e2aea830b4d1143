"""Partitions and packed bit sets: the numpy building blocks of the connectivity tables.

`refine` splits dense class ids by boolean masks or integer keys (exactly: rows of packed bits
are compared, never hashed); `small_classes` does the same for a few columns over few rows;
`pack` / `unpack` hold per-atom booleans 64 to a uint64 word.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from netwarden.engine.endpoint_vectors import Ints, Mask

Words = npt.NDArray[np.uint64]
_CHUNK = 512  # mask columns folded into the classes at once


def pack(matrix: Mask) -> Words:
    """[rows, atoms] booleans -> [rows, words] uint64, atom i at bit i % 64 of word i // 64."""
    rows, atoms = matrix.shape
    width = (atoms + 63) // 64
    padded = np.zeros((rows, width * 64), dtype=np.bool_)
    padded[:, :atoms] = matrix
    packed = np.packbits(padded, axis=1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64)


def unpack(words: Words, atoms: int) -> Mask:
    """The inverse of `pack`: [rows, words] -> [rows, atoms] booleans."""
    rows = words.shape[0]
    as_bytes = np.ascontiguousarray(words.astype("<u8")).view(np.uint8)
    bits = np.unpackbits(as_bytes.reshape(rows, -1), axis=1, bitorder="little")
    found: Mask = bits[:, :atoms].astype(np.bool_)
    return found


def refine(classes: Ints, columns: Iterable[Mask | Ints]) -> Ints:
    """Split `classes` (dense ids per endpoint) by every column: boolean masks or small
    integer keys. Equal masks are folded once."""
    seen: set[int] = set()
    # Rules repeat each other's peers (the same selector in many policies): equal masks
    # split nothing more, so each content is folded once (hashes only pick candidates).
    by_content: dict[int, list[Mask]] = {}
    block: list[Mask] = []
    for column in columns:
        if id(column) in seen:
            continue
        seen.add(id(column))
        if column.dtype != np.bool_:
            classes = _split(classes, np.asarray(column, dtype=np.int64))
            continue
        mask = column.astype(np.bool_, copy=False)
        alike = by_content.setdefault(hash(np.packbits(mask).tobytes()), [])
        if any(np.array_equal(mask, other) for other in alike):
            continue
        alike.append(mask)
        block.append(mask)
        if len(block) == _CHUNK:
            classes = _split_bits(classes, block)
            block = []
    if block:
        classes = _split_bits(classes, block)
    return classes


def _split_bits(classes: Ints, block: list[Mask]) -> Ints:
    # Columns stacked as rows (contiguous copies), packed across them, then read as one
    # uint64 word per 64 masks: each word splits the classes with an integer sort.
    rows = len(block)
    padded = np.zeros(((rows + 63) // 64 * 64, classes.shape[0]), dtype=np.bool_)
    padded[:rows] = np.stack(block)
    packed = np.packbits(padded, axis=0, bitorder="little")  # [words * 8, n]
    words = np.ascontiguousarray(packed.T).view("<u8")  # [n, words]
    for k in range(words.shape[1]):
        classes = _split(classes, words[:, k].view(np.int64))
    return classes


def _split(classes: Ints, key: Ints) -> Ints:
    """Dense ids, by first appearance, of the (class, key) pairs: one integer sort."""
    size = classes.shape[0]
    if size == 0:
        return classes
    order = np.lexsort((key, classes))
    ordered_classes, ordered_keys = classes[order], key[order]
    starts = np.empty(size, dtype=np.bool_)
    starts[0] = True
    starts[1:] = (ordered_classes[1:] != ordered_classes[:-1]) | (
        ordered_keys[1:] != ordered_keys[:-1]
    )
    group = np.empty(size, dtype=np.int64)
    group[order] = np.cumsum(starts) - 1
    first = np.full(int(group.max()) + 1, size, dtype=np.int64)
    np.minimum.at(first, group, np.arange(size))
    rank = np.empty(first.shape[0], dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.shape[0])
    dense: Ints = rank[group]
    return dense


def _dense(rows: npt.NDArray[np.uint8]) -> Ints:
    """Dense ids (0..k-1, in order of first appearance) of identical byte rows."""
    if rows.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if rows.shape[1] == 8:  # one big-endian integer per row: sort as integers, faster
        as_int = np.ascontiguousarray(rows).view(">i8").reshape(-1)
        _, first, inverse = np.unique(as_int, return_index=True, return_inverse=True)
        rank = np.empty(first.shape[0], dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(first.shape[0])
        dense: Ints = rank[inverse.reshape(-1)]
        return dense
    as_void = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(as_void, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    rank = np.empty(first.shape[0], dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.shape[0])
    found: Ints = rank[inverse]
    return found


def small_classes(columns: Sequence[Mask | Ints], size: int) -> Ints:
    """Dense classes (by first appearance) of `size` rows by a few columns: boolean columns
    are packed 8 to a byte, integer columns densified to 8 bytes, and the rows of bytes are
    sorted once (exact: bytes are compared, never hashed)."""
    masks: list[Mask] = []
    keys: list[npt.NDArray[np.uint8]] = []
    seen: set[int] = set()
    for column in columns:
        if id(column) in seen:
            continue
        seen.add(id(column))
        if column.dtype == np.bool_:
            masks.append(column.astype(np.bool_, copy=False))
        else:
            values = _dense(np.asarray(column, dtype=">i8").view(np.uint8).reshape(size, 8))
            keys.append(values.astype(">i8").view(np.uint8).reshape(size, 8))
    if masks:
        keys.append(np.packbits(np.stack(masks, axis=1), axis=1))
    if not keys:
        return np.zeros(size, dtype=np.int64)
    rows = keys[0] if len(keys) == 1 else np.concatenate(keys, axis=1)
    return _dense(rows)


def first_members(classes: Ints) -> Ints:
    """One endpoint of each class (classes are dense, numbered by first appearance)."""
    _, first = np.unique(classes, return_index=True)
    found: Ints = first.astype(np.int64)
    return found
