"""The two sides of a diff as files: from the working tree, or from git history.

`working_tree_files(paths)` reads what `-f` reads (files, and YAML/JSON files under
directories); `git_files(paths, ref)` reads the same paths as they were at `ref`
(`git ls-tree -r` lists a directory's files at the ref, `git cat-file --batch` reads them),
named `REF:relative/path` in diagnostics. `load_sides` parses a text that both sides share
once (a pull request changes a few files of many, and YAML parsing dominates loading), then
reads each side's documents into its cluster.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from netwarden.dialects import LoadResult, load_documents
from netwarden.dialects.source import SUFFIXES, Document, expand_paths, read_text
from netwarden.errors import InputError, UsageError
from netwarden.model import Location


@dataclass(frozen=True)
class SourceFile:
    """One input file's text and the name diagnostics give it."""

    name: str
    text: str


def working_tree_files(paths: Sequence[str | Path]) -> list[SourceFile]:
    """The files `-f PATH...` reads, in the same order (`-` is standard input)."""
    found = []
    for path in expand_paths(paths):
        if str(path) == "-":
            found.append(SourceFile("<stdin>", sys.stdin.read()))
            continue
        try:
            found.append(SourceFile(str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(Location(str(path)), f"cannot read: {error}") from None
    return found


def git_files(paths: Sequence[str | Path], ref: str) -> list[SourceFile]:
    """The files under each of `paths` as they were at git revision `ref` of the repository
    holding the path (YAML/JSON files of a directory, by path)."""
    found = []
    for raw in paths:
        if str(raw) == "-":
            raise UsageError("--base-ref: standard input ('-') has no git history")
        found += _files_at(Path(raw), ref)
    return found


def _files_at(path: Path, ref: str) -> list[SourceFile]:
    absolute = path.absolute()
    where = absolute if absolute.is_dir() else absolute.parent
    while not where.is_dir():  # the path may be gone from the working tree
        where = where.parent
    top_text = _git(where, "rev-parse", "--show-toplevel", error=f"{path}: not in a git repository")
    top = Path(top_text.strip())
    try:
        relative = absolute.resolve().relative_to(top.resolve()).as_posix()
    except ValueError:
        raise UsageError(f"{path}: not inside the git repository at {top}") from None
    commit = _git(
        top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", error=""
    ).strip() or _unknown(ref, top)
    spec = [] if relative == "." else ["--", relative]
    listing = _git(top, "ls-tree", "-r", "-z", "--full-tree", commit, *spec, error="")
    blobs: list[tuple[str, str]] = []  # (path in the repository, object id)
    for entry in filter(None, listing.split("\0")):
        meta, _, name = entry.partition("\t")
        mode, kind, object_id = meta.split()
        if kind != "blob" or mode == "120000":  # submodules and symlinks hold no manifest
            continue
        inside = relative == "." or name == relative or name.startswith(relative + "/")
        if inside and (name == relative or Path(name).suffix in SUFFIXES):
            blobs.append((name, object_id))
    if not blobs:
        raise UsageError(f"{path}: no such file or directory at {ref} (in {top})")
    blobs.sort()
    texts = _read_blobs(top, [object_id for _, object_id in blobs])
    return [SourceFile(f"{ref}:{name}", text) for (name, _), text in zip(blobs, texts, strict=True)]


def _unknown(ref: str, top: Path) -> str:
    raise UsageError(f"--base-ref {ref}: unknown revision in the git repository at {top}")


def _git(where: Path, *args: str, error: str) -> str:
    """Run git in `where`; a failure raises UsageError(`error`) (or returns '' without one)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(where), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise UsageError("--base-ref needs git, and git is not installed") from None
    if done.returncode != 0:
        if error:
            raise UsageError(error)
        return ""
    return done.stdout


def _read_blobs(top: Path, object_ids: list[str]) -> list[str]:
    """Every blob's text, through one `git cat-file --batch`."""
    request = "".join(f"{object_id}\n" for object_id in object_ids).encode()
    done = subprocess.run(
        ["git", "-C", str(top), "cat-file", "--batch"], input=request, capture_output=True
    )
    if done.returncode != 0:
        raise UsageError(f"git cat-file failed in {top}: {done.stderr.decode(errors='replace')}")
    data, at, texts = done.stdout, 0, []
    for object_id in object_ids:
        end = data.index(b"\n", at)
        header = data[at:end].split()
        if len(header) != 3:
            raise UsageError(f"git cat-file: cannot read object {object_id} in {top}")
        size = int(header[2])
        body = data[end + 1 : end + 1 + size]
        at = end + 1 + size + 1  # the content is followed by a newline
        try:
            texts.append(body.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise InputError(Location(object_id), f"cannot read: {error}") from None
    return texts


def load_sides(
    base: Sequence[SourceFile], head: Sequence[SourceFile]
) -> tuple[LoadResult, LoadResult]:
    """Both sides' clusters; a text both sides hold is parsed once."""
    parsed: dict[str, list[Document]] = {}

    def documents(files: Sequence[SourceFile]) -> list[Document]:
        found: list[Document] = []
        for file in files:
            known = parsed.get(file.text)
            if known is None:
                known = read_text(file.text, file.name)
                parsed[file.text] = known
            found += [Document(d.data, d.node, file.name) for d in known]
        return found

    return load_documents(documents(base)), load_documents(documents(head))
