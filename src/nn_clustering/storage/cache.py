"""A small on-disk cache of analysis results, keyed by what determines them.

A key is the SHA-256 of the JSON of its parts (the model file's digest, k, the shuffle method,
the number of shuffles, the seed, ...) and of :data:`CACHE_FORMAT`, which is bumped whenever the
science or the entry layout changes. An entry is a JSON file written atomically that holds its
key, the SHA-256 of its value's JSON and the value. Reading checks all of it, and the keys the
caller needs: an entry that is not exactly what this code wrote (unreadable, of another shape,
for another key, edited by hand, lacking a field) is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .files import write_text_atomic

CACHE_FORMAT = 3
ENTRY_FIELDS = ("format", "key", "sha256", "value")


def cache_key(parts: dict[str, Any]) -> str:
    """A stable hex key for ``parts`` (any JSON-serialisable dict)."""
    text = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _value_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ResultCache:
    """JSON results under ``folder/<key[:2]>/<key>.json``; ``folder=None`` caches nothing.

    ``hits``, ``misses`` and ``rejected`` (entries found but not trusted) count the lookups.
    """

    def __init__(self, folder: str | Path | None, log: Callable[[str], None] | None = None):
        self.folder = Path(folder) if folder is not None else None
        self.hits = 0
        self.misses = 0
        self.rejected = 0
        self.log = log or (lambda line: print(line, file=sys.stderr))

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.json"

    def _problem(self, entry: Any, key: str, required: Sequence[str]) -> str | None:
        """Why ``entry`` is not a trustworthy value for ``key``, or None."""
        if not isinstance(entry, dict) or set(entry) != set(ENTRY_FIELDS):
            return "not a cache entry"
        if entry["format"] != CACHE_FORMAT or entry["key"] != key:
            return "written for another key or format"
        if _digest(_value_text(entry["value"])) != entry["sha256"]:
            return "its content does not match its SHA-256 (edited or damaged)"
        if not isinstance(entry["value"], dict) or not set(required) <= set(entry["value"]):
            return f"its value lacks {sorted(set(required) - set(entry['value'] if isinstance(entry['value'], dict) else ()))}"
        return None

    def get(self, key: str, required: Sequence[str] = ()) -> dict | None:
        """The cached value, or None if it is absent or not exactly what this code wrote
        (then a line says why and the entry is recomputed by :meth:`get_or_compute`)."""
        if self.folder is None:
            return None
        path = self._path(key)
        try:
            entry = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            entry = None
        problem = "unreadable JSON" if entry is None else self._problem(entry, key, required)
        if problem is not None:
            self.rejected += 1
            self.log(f"cache: {path} is not trusted ({problem}); recomputing it")
            return None
        return entry["value"]

    def put(self, key: str, value: dict) -> None:
        """Store ``value`` (atomically; a crash never leaves a partial entry)."""
        if self.folder is not None:
            text = _value_text(value)
            entry = {"format": CACHE_FORMAT, "key": key, "sha256": _digest(text), "value": value}
            write_text_atomic(self._path(key), json.dumps(entry, sort_keys=True) + "\n")

    def discard(self, key: str) -> None:
        """Remove an entry if present."""
        if self.folder is not None:
            self._path(key).unlink(missing_ok=True)

    def get_or_compute(self, parts: dict[str, Any], compute: Callable[[], dict],
                       required: Sequence[str] = ()) -> dict:
        """The cached result for ``parts`` (checked to hold the ``required`` keys), computing
        and storing it on a miss."""
        key = cache_key(parts)
        value = self.get(key, required)
        if value is not None:
            self.hits += 1
            return value
        self.misses += 1
        value = compute()
        self.put(key, value)
        return value
