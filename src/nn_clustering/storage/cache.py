"""A small on-disk cache of analysis results, keyed by what determines them.

A key is the SHA-256 of the JSON of its parts (the model file's digest, k, the shuffle method,
the number of shuffles, the seed, ...) and of :data:`CACHE_FORMAT`, which is bumped whenever the
science changes what a result means. Entries are JSON files written atomically; an unreadable
entry is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .files import write_json_atomic

CACHE_FORMAT = 1


def cache_key(parts: dict[str, Any]) -> str:
    """A stable hex key for ``parts`` (any JSON-serialisable dict)."""
    text = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class ResultCache:
    """JSON results under ``folder/<key[:2]>/<key>.json``; ``folder=None`` caches nothing."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder is not None else None
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The cached value, or None if absent or unreadable."""
        if self.folder is None:
            return None
        try:
            return json.loads(self._path(key).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def put(self, key: str, value: dict) -> None:
        """Store ``value`` (atomically; a crash never leaves a partial entry)."""
        if self.folder is not None:
            write_json_atomic(self._path(key), value)

    def discard(self, key: str) -> None:
        """Remove an entry if present."""
        if self.folder is not None:
            self._path(key).unlink(missing_ok=True)

    def get_or_compute(self, parts: dict[str, Any], compute: Callable[[], dict]) -> dict:
        """The cached result for ``parts``, computing and storing it on a miss."""
        key = cache_key(parts)
        value = self.get(key)
        if value is not None:
            self.hits += 1
            return value
        self.misses += 1
        value = compute()
        self.put(key, value)
        return value
