"""A small on-disk cache of analysis results, keyed by what determines them.

A key is the SHA-256 of the JSON of its parts (the model file's digest, k, the shuffle method,
the number of shuffles, the seed, ...) and of :data:`CACHE_FORMAT`, which is bumped whenever the
science or the entry layout changes. An entry is a JSON file written atomically that holds its
key, the SHA-256 of its value's JSON, the value, and an HMAC-SHA256 of its format, key and
value made with this installation's secret key. Reading checks all of it, and the keys the
caller needs: an entry that is not exactly what this installation wrote (unreadable, of another
shape, for another key, edited by hand, lacking a field, without a valid MAC) is recomputed,
never trusted. The SHA-256 catches damage; only the MAC tells a result this code computed from
one anybody could write (a SHA-256 can be recomputed by whoever edits the value), so cache
entries pulled from a bucket or copied from another machine are recomputed too.

The secret key is 32 random bytes in ``$NN_CLUSTERING_CONFIG_DIR/cache.key`` (by default
``${XDG_CONFIG_HOME:-~/.config}/nn-clustering/cache.key``), outside every results folder. It is
created on first use with mode 0600 (``O_CREAT | O_EXCL``: of two processes creating it at
once, one writes it and the other reads it). A key file of the wrong size, that is not a
regular file or that others may read or write is refused with one line saying how to fix it,
never silently replaced: deleting it makes a new key, and every cached result is then
recomputed once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import NnClusteringError
from .files import write_text_atomic

CACHE_FORMAT = 4
ENTRY_FIELDS = ("format", "key", "mac", "sha256", "value")
CONFIG_ENV = "NN_CLUSTERING_CONFIG_DIR"
KEY_FILE = "cache.key"
KEY_BYTES = 32


class CacheKeyError(NnClusteringError):
    """This installation's cache key cannot be created, or its file is not trustworthy."""


def config_dir() -> Path:
    """``$NN_CLUSTERING_CONFIG_DIR``, else ``${XDG_CONFIG_HOME:-~/.config}/nn-clustering``."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path("~/.config").expanduser()
    return base / "nn-clustering"


def key_path() -> Path:
    """Where this installation's cache key lives."""
    return config_dir() / KEY_FILE


def _read_key(path: Path, wait_s: float = 0.0) -> bytes:
    """The key in ``path``, once it is a regular file of :data:`KEY_BYTES` bytes that only its
    owner may read or write; waits up to ``wait_s`` for one another process is still writing."""
    deadline = time.monotonic() + wait_s
    while True:
        fd = os.open(path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            data = os.read(fd, KEY_BYTES + 1) if stat.S_ISREG(st.st_mode) else b""
        finally:
            os.close(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CacheKeyError(f"the cache key {path} is not a regular file; remove it (a new key is made and "
                                f"cached results are recomputed once) or set {CONFIG_ENV} to another folder")
        if st.st_mode & 0o077:
            raise CacheKeyError(f"the cache key {path} may be read or written by others (mode "
                                f"{stat.S_IMODE(st.st_mode):04o}), so anyone could forge cache entries; run "
                                f"`chmod 600 {path}`, or delete it if others may have used it")
        if len(data) == KEY_BYTES:
            return data
        if len(data) < KEY_BYTES and time.monotonic() < deadline:
            time.sleep(0.01)  # another process created it and is writing it
            continue
        raise CacheKeyError(f"the cache key {path} holds {len(data)}{'+' if len(data) > KEY_BYTES else ''} "
                            f"bytes, not {KEY_BYTES}; delete it (a new key is made and cached results are "
                            "recomputed once)")


def installation_key(path: Path | None = None) -> bytes:
    """This installation's secret cache key, created (race-free, mode 0600) on first use."""
    path = path or key_path()
    try:
        try:
            return _read_key(path, wait_s=2.0)
        except FileNotFoundError:
            pass
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race: read what it writes
            return _read_key(path, wait_s=2.0)
        key = secrets.token_bytes(KEY_BYTES)
        try:
            os.fchmod(fd, 0o600)
            if os.write(fd, key) != KEY_BYTES:
                raise OSError(0, "short write")
            os.fsync(fd)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return key
    except OSError as exc:
        raise CacheKeyError(f"cannot create or read the cache key {path} ({exc.strerror or exc}); set "
                            f"{CONFIG_ENV} to a private, writable folder outside the results") from None


def cache_key(parts: dict[str, Any]) -> str:
    """A stable hex key for ``parts`` (any JSON-serialisable dict)."""
    text = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _value_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def entry_mac(secret: bytes, key: str, value_text: str, format_: int = CACHE_FORMAT) -> str:
    """The HMAC-SHA256 (hex) of an entry's format, key and value JSON under ``secret``."""
    message = json.dumps([format_, key, value_text]).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


class ResultCache:
    """JSON results under ``folder/<key[:2]>/<key>.json``; ``folder=None`` caches nothing.

    ``hits``, ``misses`` and ``rejected`` (entries found but not trusted) count the lookups.
    The installation's key (:func:`installation_key`) is read on the first lookup or store.
    """

    def __init__(self, folder: str | Path | None, log: Callable[[str], None] | None = None):
        self.folder = Path(folder) if folder is not None else None
        self.hits = 0
        self.misses = 0
        self.rejected = 0
        self.log = log or (lambda line: print(line, file=sys.stderr))
        self._secret: bytes | None = None

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.json"

    @property
    def secret(self) -> bytes:
        """This installation's key (read once per cache object)."""
        if self._secret is None:
            path = key_path()
            assert self.folder is not None
            if path.resolve().is_relative_to(self.folder.resolve()):
                raise CacheKeyError(f"the cache key {path} lies inside the cache {self.folder}, where it would be "
                                    f"shared with the results; set {CONFIG_ENV} to a folder outside it")
            self._secret = installation_key(path)
        return self._secret

    def _problem(self, entry: Any, key: str, required: Sequence[str]) -> str | None:
        """Why ``entry`` is not a trustworthy value for ``key``, or None."""
        if not isinstance(entry, dict) or not set(ENTRY_FIELDS) - {"mac"} <= set(entry) <= set(ENTRY_FIELDS):
            return "not a cache entry"
        if entry["format"] != CACHE_FORMAT or entry["key"] != key:
            return "written for another key or format"
        text = _value_text(entry["value"])
        if _digest(text) != entry["sha256"]:
            return "its content does not match its SHA-256 (edited or damaged)"
        mac = entry.get("mac")
        if not isinstance(mac, str):
            return "it carries no MAC: this installation did not write it"
        if not hmac.compare_digest(mac.encode("utf-8", "replace"), entry_mac(self.secret, key, text).encode()):
            return "its MAC does not match this installation's key (written elsewhere, or forged)"
        if not isinstance(entry["value"], dict) or not set(required) <= set(entry["value"]):
            return f"its value lacks {sorted(set(required) - set(entry['value'] if isinstance(entry['value'], dict) else ()))}"
        return None

    def get(self, key: str, required: Sequence[str] = ()) -> dict | None:
        """The cached value, or None if it is absent or not exactly what this installation
        wrote (then a line says why and the entry is recomputed by :meth:`get_or_compute`)."""
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
            entry = {"format": CACHE_FORMAT, "key": key, "sha256": _digest(text), "value": value,
                     "mac": entry_mac(self.secret, key, text)}
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
