"""Small file helpers: atomic writes, output checks and checksums.

Nothing half-written is ever left under a final name: data goes to a temporary file in the
same folder and is renamed over the target only once it is complete. :func:`check_output`
refuses, before any work starts, an output that is a folder or a device, one of the command's
own inputs, or in a place where no file can be created. Temporary names carry the writing
process's id, so :func:`remove_stale_parts` can clean up after a killed run without touching the
files of one still running.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NnClusteringError

PART_SUFFIX = ".part"  # the suffix of atomic_path's temporary files


class OutputError(NnClusteringError):
    """An output path cannot receive a result (a folder, a device, an input, not writable)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    On any exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=PART_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; final files follow the umask
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def check_output(path: str | os.PathLike[str], inputs: tuple = (), what: str = "--output") -> Path:
    """``path`` as a Path once it is known that a result can be written there: it is a regular
    file or does not exist yet, it is none of ``inputs`` (the command's own input files), and a
    file can be created in its folder (tried, not assumed: root may write anywhere that is not
    read-only). A clear :class:`OutputError` otherwise, before any work is done."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; give a file name inside it, e.g. {path / 'result.json'}")
    if path.exists() and not path.is_file():
        raise OutputError(f"{what} {path} is not a regular file (a device, pipe or socket); give a file path")
    for source in inputs:
        if Path(source).exists() and path.exists() and os.path.samefile(source, path):
            raise OutputError(f"{what} {path} is the command's input {source}; writing there would replace "
                              "it: choose another file")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"{what} {path} cannot be created: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=PART_SUFFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{what} {path}: cannot write in {folder} ({exc.strerror}); choose a writable "
                          "place") from None
    return path


def remove_stale_parts(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that killed runs left in ``folder`` (those whose writing
    process no longer exists); returns what was removed."""
    removed = []
    for part in Path(folder).glob(f".*{PART_SUFFIX}"):
        fields = part.name[:-len(PART_SUFFIX)].rsplit(".", 2)
        pid = int(fields[-2]) if len(fields) == 3 and fields[-2].isdigit() else None
        if pid is not None and _alive(pid):
            continue
        part.unlink(missing_ok=True)
        removed.append(part)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json_atomic(target: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``target`` atomically."""
    write_text_atomic(target, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def file_digest(path: str | os.PathLike[str], algorithm: str = "md5") -> str:
    """Hex digest of a file's bytes (``md5`` or ``sha256``), read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays as a compressed ``.npz`` with fixed timestamps (deterministic bytes), atomically."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            zf.writestr(info, buf.getvalue(), compresslevel=6)
