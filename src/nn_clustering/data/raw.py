"""The canonical raw files of method.md §1 and how a verified copy is obtained.

:func:`fetch_raw` looks in the cache (``datasets/raw/<folder>/``), then in the mirror folder
named by ``NN_CLUSTERING_DATA_MIRROR`` (same file names, one sub-folder per dataset), then
downloads from the canonical location; every file is md5-verified before it is used.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..core.progress import progress_bar
from ..errors import DatasetError, DatasetUnavailable
from ..storage.files import atomic_path, file_digest

MIRROR_ENV = "NN_CLUSTERING_DATA_MIRROR"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"


@dataclass(frozen=True)
class RawFile:
    """One canonical raw file: where it lives and its md5."""

    folder: str
    name: str
    md5: str
    urls: tuple[str, ...]


def _idx_files(folder: str, bases: tuple[str, ...], md5s: dict[str, str]) -> dict[str, RawFile]:
    return {
        name: RawFile(folder, name, md5, tuple(base + name for base in bases))
        for name, md5 in md5s.items()
    }


RAW_FILES: dict[str, dict[str, RawFile]] = {
    "mnist": _idx_files(
        "mnist",
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion": _idx_files(
        "fashion-mnist",
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "cifar10": {
        CIFAR_ARCHIVE: RawFile(
            "cifar-10",
            CIFAR_ARCHIVE,
            "c58f30108f718f92721af3b95e74349a",
            ("https://www.cs.toronto.edu/~kriz/" + CIFAR_ARCHIVE,),
        )
    },
}


def default_data_dir() -> Path:
    """The datasets folder: ``$NN_CLUSTERING_DATA_DIR`` or ``./datasets``."""
    return Path(os.environ.get("NN_CLUSTERING_DATA_DIR", "datasets"))


def mirror_dir() -> Path | None:
    """The mirror folder named by ``NN_CLUSTERING_DATA_MIRROR``, checked to be readable."""
    value = os.environ.get(MIRROR_ENV)
    if not value:
        return None
    path = Path(value)
    if not path.is_dir() or not os.access(path, os.R_OK | os.X_OK):
        raise DatasetError(
            f"{MIRROR_ENV}={value} is not a readable folder; point it at a folder holding "
            "mnist/, fashion-mnist/ and cifar-10/ sub-folders (as an absolute path) or unset it"
        )
    return path


def _verify_md5(path: Path, raw: RawFile, origin: str, fix: str) -> None:
    digest = file_digest(path, "md5")
    if digest != raw.md5:
        size = path.stat().st_size
        raise DatasetError(
            f"{origin}: md5 {digest} != expected {raw.md5} ({size} bytes; the file is corrupt "
            f"or truncated); {fix}"
        )


def _download(raw: RawFile, tmp: Path, timeout: float) -> None:
    errors = []
    for url in raw.urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with progress_bar(total=total, unit="B", unit_scale=True, desc=raw.name) as bar:
                    for chunk in iter(lambda r=resp: r.read(1 << 20), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
            return
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
    raise DatasetUnavailable(
        f"{raw.folder}/{raw.name} could not be downloaded ({'; '.join(errors)}); put the file in "
        f"${MIRROR_ENV}/{raw.folder}/ or run where the canonical source is reachable"
    )


def fetch_raw(raw: RawFile, cache_dir: Path | None = None, timeout: float = 60.0) -> Path:
    """Return the path of a verified copy of ``raw`` in the cache, obtaining it if needed.

    Order: a cached copy with the right md5; the mirror folder; the canonical URLs. A cached
    copy with the wrong md5 is deleted and obtained again. Raises :class:`DatasetError` for a
    mirror copy with a wrong checksum and :class:`DatasetUnavailable` when nothing works.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_data_dir() / "raw"
    target = cache_dir / raw.folder / raw.name
    if target.exists():
        if file_digest(target, "md5") == raw.md5:
            return target
        target.unlink()  # stale or corrupt cache entry: obtain it again
    mirror = mirror_dir()
    if mirror is not None and (mirror / raw.folder / raw.name).is_file():
        source = mirror / raw.folder / raw.name
        with atomic_path(target) as tmp:
            try:
                shutil.copyfile(source, tmp)
            except OSError as exc:
                raise DatasetError(
                    f"{source}: cannot be read ({exc.strerror}); fix its permissions or "
                    f"unset {MIRROR_ENV}"
                ) from exc
            _verify_md5(
                tmp, raw, str(source), f"replace it in the mirror with the canonical {raw.name}"
            )
        return target
    with atomic_path(target) as tmp:
        _download(raw, tmp, timeout)
        _verify_md5(tmp, raw, f"download of {raw.name}", "re-run to download it again")
    return target
