"""The one rule for turning names from outside (S3 keys, manifest entries) into local paths.

A safe name is a relative POSIX path of plain segments, at most 1024 bytes of UTF-8: no
absolute path, no empty, ``.`` or ``..`` segment, no backslash, no control character (C0,
DEL, C1), no segment longer than 200 bytes (room for the temporary file's name) and no
hidden segment (one starting with ``.``). Hidden names are the one kind that is not an
attack: :mod:`.s3` never transfers them, either way (push skips hidden files, pull skips
hidden keys, each with a line saying how many), so :func:`check_relative` takes
``allow_hidden`` for the manifest check and leaves the skipping to its caller.

A manifest is checked as a whole before anything is written: every key is safe, no key is
the manifest's own name, no two keys are the same file once Unicode-normalised (NFC), and no
key is a file where another key needs a folder (``a`` next to ``a/b``). Its sizes are
non-negative integers and its SHA-256s 64 lowercase hex digits.

On disk, :func:`resolve_inside` joins a safe name to its target folder only if no existing
component under the target is a symlink (nothing is written through a link) and the real
path stays inside the real target. This protects against a tampered bucket; a local user who
swaps folders for links while a pull runs is outside its scope, although the check is
repeated just before each file is renamed into place.

Messages print names with ``repr`` escaping (shortened when long), so a key cannot send
control characters or terminal escapes to the screen.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import NnClusteringError, quoted

MANIFEST = "MANIFEST.json"
MAX_SEGMENT_BYTES = 200
MAX_PATH_BYTES = 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TAMPERED = ("it was written by something other than `nn-clustering s3 push`, or tampered with: "
             "do not pull it; ask its owner to push it again")


class StorageError(NnClusteringError):
    """The bucket cannot be reached or used (bad URI, credentials, endpoint, checksum)."""


class UnsafePathError(StorageError):
    """A name from outside (an S3 key, a manifest entry) would not stay a plain file inside the
    target folder; ``name`` and ``problem`` say which and why."""

    def __init__(self, message: str, name: object = None, problem: str = ""):
        super().__init__(message)
        self.name = name
        self.problem = problem


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F


def path_problem(name: object, allow_hidden: bool = False) -> str | None:
    """Why ``name`` is not a safe relative path (see the module docstring), or None."""
    if not isinstance(name, str):
        return "not a string"
    if name == "":
        return "an empty name"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8"
    if any(_is_control(c) for c in name):
        return "a control character"
    if "\\" in name:
        return "a backslash"
    if name.startswith("/"):
        return "an absolute path"
    if len(encoded) > MAX_PATH_BYTES:
        return f"longer than {MAX_PATH_BYTES} bytes"
    for segment in name.split("/"):
        if segment == "":
            return "an empty segment ('//' or a trailing '/')"
        if segment in (".", ".."):
            return f"a {segment!r} segment"
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            return f"a segment longer than {MAX_SEGMENT_BYTES} bytes"
        if segment.startswith(".") and not allow_hidden:
            return "a hidden segment (starting with '.')"
    return None


def is_hidden(name: str) -> bool:
    """Whether a segment of ``name`` starts with ``.`` (a hidden file or folder)."""
    return any(segment.startswith(".") for segment in name.split("/"))


def unsafe_key(where: str, name: object, problem: str) -> UnsafePathError:
    """The one-line error for a bad key ``name`` listed by ``where`` (e.g. a manifest's URI)."""
    return UnsafePathError(f"{where} lists the unsafe key {quoted(name)} ({problem}); {_TAMPERED}", name, problem)


def check_relative(name: object, where: str = "the manifest", allow_hidden: bool = False) -> PurePosixPath:
    """``name`` as a PurePosixPath if it is a safe relative path, else an :class:`UnsafePathError`
    naming it and what to do."""
    problem = path_problem(name, allow_hidden)
    if problem is not None:
        raise unsafe_key(where, name, problem)
    return PurePosixPath(name)  # type: ignore[arg-type]


class KeySet:
    """Names that can live side by side in one folder: :meth:`clash` says why a new one cannot
    (the same file once NFC-normalised, a file where another name needs a folder, or the
    other way round)."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}  # normalised name -> name
        self.folders: dict[str, str] = {}  # normalised folder -> a name that needs it

    def clash(self, name: str) -> str | None:
        """Why ``name`` cannot be added (naming the other key), or None."""
        norm = unicodedata.normalize("NFC", name)
        if norm in self.files:
            return f"the same file as {quoted(self.files[norm])} once Unicode-normalised (NFC)"
        if norm in self.folders:
            return f"a file where {quoted(self.folders[norm])} needs a folder"
        parts = norm.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in self.files:
                return f"it needs a folder where {quoted(self.files[folder])} is a file"
        return None

    def add(self, name: str) -> str | None:
        """Add ``name`` unless it clashes; returns the clash, or None when added."""
        problem = self.clash(name)
        if problem is None:
            norm = unicodedata.normalize("NFC", name)
            self.files[norm] = name
            parts = norm.split("/")
            for i in range(1, len(parts)):
                self.folders.setdefault("/".join(parts[:i]), name)
        return problem


def entry_problem(meta: object) -> str | None:
    """Why a manifest entry is not ``{"sha256": <64 lowercase hex>, "size": <int >= 0>}``, or None."""
    if not isinstance(meta, dict):
        return "its entry is not an object"
    sha, size = meta.get("sha256"), meta.get("size")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        return "its sha256 is not 64 lowercase hex digits"
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return "its size is not a non-negative integer"
    return None


def check_manifest(pairs: Iterable[tuple[Any, Any]], where: str) -> dict[str, dict]:
    """The manifest entries ``pairs`` (``(key, entry)`` in file order, duplicates kept) as a
    dict, once the whole manifest keeps the rule (hidden keys allowed; the caller skips them).

    The first bad key is an :class:`UnsafePathError` naming it; a bad size or SHA-256 a
    :class:`ValueError` (the manifest is corrupt)."""
    files: dict[str, dict] = {}
    taken = KeySet()
    for name, meta in pairs:
        check_relative(name, where, allow_hidden=True)
        if name == MANIFEST:
            raise unsafe_key(where, name, "the manifest's own name")
        if name in files:
            raise unsafe_key(where, name, "listed twice")
        clash = taken.add(name)
        if clash is not None:
            raise unsafe_key(where, name, clash)
        problem = entry_problem(meta)
        if problem is not None:
            raise ValueError(f"entry {quoted(name)}: {problem}")
        files[name] = meta
    return files


def under(name: str, prefixes: Iterable[str]) -> bool:
    """Whether ``name`` is one of ``prefixes`` or inside one of them (``cache``, ``cache/x``)."""
    return any(name == p or name.startswith(f"{p}/") for p in prefixes)


def check_excludes(names: Iterable[str]) -> tuple[str, ...]:
    """``--exclude`` names: safe relative paths inside the synced folder (e.g. ``cache``)."""
    out = []
    for name in names:
        problem = path_problem(name, allow_hidden=True)
        if problem is not None:
            raise StorageError(f"--exclude {quoted(name)} is not a name inside the synced folder ({problem}); "
                               "give a top-level folder name, e.g. --exclude cache")
        out.append(name)
    return tuple(out)


def resolve_inside(target: Path, name: str) -> Path:
    """``target / name`` for the safe name ``name``, once it is known that writing there stays
    inside ``target``: no existing component under ``target`` is a symlink or (above the last
    one) a file, the last one is not a folder, and the real path is inside the real target.
    A :class:`StorageError` naming the local fix otherwise."""
    path = target
    parts = PurePosixPath(name).parts
    for i, part in enumerate(parts):
        path = path / part
        if os.path.islink(path):
            raise StorageError(f"{path} is a symlink; a pull never writes through a link: remove it, or pull "
                               "into another folder")
        if not os.path.lexists(path):
            break
        if i < len(parts) - 1 and not path.is_dir():
            raise StorageError(f"{path} is a file where the bucket has a folder; move it away and pull again")
        if i == len(parts) - 1 and path.is_dir():
            raise StorageError(f"{path} is a folder where the bucket has a file; move it away and pull again")
    final = target.joinpath(*parts)
    if not Path(os.path.realpath(final)).is_relative_to(os.path.realpath(target)):
        raise StorageError(f"{final} resolves outside {target}; remove the links in the way, or pull into "
                           "another folder")
    return final
