"""Datasets of SPEC section 1: raw files, generators, mixtures, storage and the loader.

Raw files are obtained by :func:`fetch_raw`: from the cache (``datasets/raw/<folder>/``), else
from the mirror folder named by ``NN_CLUSTERING_DATA_MIRROR`` (same file names, one sub-folder
per dataset), else downloaded from the canonical location; every file is md5-verified before
it is used. Built datasets are stored as ``datasets/<name>.npz`` with uint8 images in [0, 255],
int64 labels and, for mixtures, boolean ``source`` arrays (True = the row came from B).

Every generator is seeded (default 42) and byte-for-byte deterministic; the ``.npz`` files are
written with fixed zip timestamps so that their sha256 (recorded in ``datasets/MANIFEST``) is
the same on every run.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DatasetError, DatasetUnavailable
from .fileio import atomic_path, file_digest, save_npz, write_text_atomic

MIRROR_ENV = "NN_CLUSTERING_DATA_MIRROR"
DEFAULT_SEED = 42
IMAGE_SIDE = 28
LINE_MAX = 10
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
#: Rec. 709 luma weights, as skimage.color.rgb2gray (what the paper's code used).
LUMA_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])


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


@dataclass
class ImageSet:
    """Train and test splits of 28x28 images with integer labels.

    ``source_*`` is set for mixtures only: True where the row came from the second dataset.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source_train: np.ndarray | None = None
    source_test: np.ndarray | None = None


@dataclass
class Dataset(ImageSet):
    """What :func:`load_dataset` returns: float32 images scaled to [0, 1], int labels, a name."""

    name: str = ""


# --------------------------------------------------------------------------- raw files


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
                from tqdm.auto import tqdm

                with tqdm(total=total, unit="B", unit_scale=True, desc=raw.name, leave=False) as bar:
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


# --------------------------------------------------------------------------- parsers

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse an (uncompressed) IDX file: magic 0x0000, dtype code, ndim, big-endian dims."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(f"{name}: not an IDX file (bad magic number); replace it with the canonical file")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{name}: IDX header is truncated; replace it with the canonical file")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetError(
            f"{name}: IDX payload has {len(data) - header} bytes, header says {expected} "
            "(truncated or corrupt); replace it with the canonical file"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx_gz(path: Path) -> np.ndarray:
    """Read a gzip-compressed IDX file, with a clear error when the gzip stream is damaged."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise DatasetError(
            f"{path}: gzip stream is truncated or corrupt ({exc}); delete it and re-run "
            "`make datasets` to fetch it again"
        ) from exc
    return parse_idx(data, str(path))


def load_idx_dataset(folder: Path) -> ImageSet:
    """Read the four canonical IDX files of MNIST or Fashion-MNIST from ``folder``."""
    parts = {
        key: read_idx_gz(folder / f"{prefix}-{kind}-idx{nd}-ubyte.gz")
        for key, prefix, kind, nd in (
            ("x_train", "train", "images", 3),
            ("y_train", "train", "labels", 1),
            ("x_test", "t10k", "images", 3),
            ("y_test", "t10k", "labels", 1),
        )
    }
    for split in ("train", "test"):
        if len(parts[f"x_{split}"]) != len(parts[f"y_{split}"]):
            raise DatasetError(
                f"{folder}: {split} images and labels differ in count; replace the files with the canonical ones"
            )
    return ImageSet(
        parts["x_train"],
        parts["y_train"].astype(np.int64),
        parts["x_test"],
        parts["y_test"].astype(np.int64),
    )


def cifar_to_grey28(batch: np.ndarray, chunk: int = 2000) -> np.ndarray:
    """CIFAR rows (N, 3072; R, G, B planes of 32x32) to 28x28 grey uint8 images.

    Each RGB image is resized to 28x28 with anti-aliasing (skimage ``resize``), converted to
    grey with the Rec. 709 luma weights and rounded to uint8, as SPEC section 1 says.
    """
    from skimage.transform import resize

    rgb = batch.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    out = np.empty((len(rgb), IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    for start in range(0, len(rgb), chunk):
        part = rgb[start : start + chunk].astype(np.float64) / 255.0
        small = resize(
            part,
            (len(part), IMAGE_SIDE, IMAGE_SIDE, 3),
            order=1,
            mode="reflect",
            anti_aliasing=True,
        )
        grey = small @ LUMA_WEIGHTS
        out[start : start + chunk] = np.clip(np.rint(grey * 255.0), 0, 255).astype(np.uint8)
    return out


def _unpickle_member(tar: tarfile.TarFile, member: str, archive: Path) -> dict:
    try:
        f = tar.extractfile(member)
        if f is None:
            raise KeyError(member)
        return pickle.load(io.BytesIO(f.read()), encoding="bytes")
    except (KeyError, pickle.UnpicklingError, EOFError) as exc:
        raise DatasetError(
            f"{archive}: member {member} is missing or unreadable; replace the archive with the canonical {CIFAR_ARCHIVE}"
        ) from exc


def load_cifar10_archive(archive: Path) -> ImageSet:
    """Read ``cifar-10-python.tar.gz`` (5 train batches + test batch) as 28x28 grey images."""
    try:
        tar = tarfile.open(archive, "r:gz")  # noqa: SIM115 - closed by the `with tar:` below
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DatasetError(
            f"{archive}: not a readable tar.gz ({exc}); delete it and fetch {CIFAR_ARCHIVE} again"
        ) from exc
    with tar:
        splits = {}
        for split, members in (
            ("train", [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]),
            ("test", ["cifar-10-batches-py/test_batch"]),
        ):
            batches = [_unpickle_member(tar, m, archive) for m in members]
            data = np.concatenate([np.asarray(b[b"data"], np.uint8) for b in batches])
            labels = np.concatenate([np.asarray(b[b"labels"], np.int64) for b in batches])
            splits[split] = (cifar_to_grey28(data), labels)
    return ImageSet(splits["train"][0], splits["train"][1], splits["test"][0], splits["test"][1])


# --------------------------------------------------------------------------- generators


def _rng(seed: int, name: str) -> np.random.Generator:
    """An independent, reproducible stream per (seed, dataset name)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def make_line_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` black images with k ~ U{1..10} distinct full-height white columns; label k - 1."""
    counts = rng.integers(1, LINE_MAX + 1, size=n)
    ranks = np.argsort(rng.random((n, IMAGE_SIDE)), axis=1).argsort(axis=1)
    columns = ranks < counts[:, None]  # exactly counts[i] distinct columns, uniformly chosen
    images = np.repeat(columns[:, None, :], IMAGE_SIDE, axis=1).astype(np.uint8) * np.uint8(255)
    return images, (counts - 1).astype(np.int64)


def make_line(seed: int = DEFAULT_SEED, n_train: int = 60000, n_test: int = 10000) -> ImageSet:
    """The LINE dataset of SPEC section 1."""
    rng = _rng(seed, "line")
    x_train, y_train = make_line_images(n_train, rng)
    x_test, y_test = make_line_images(n_test, rng)
    return ImageSet(x_train, y_train, x_test, y_test)


def make_random(seed: int = DEFAULT_SEED, n_train: int = 60000, n_test: int = 10000) -> ImageSet:
    """The RANDOM dataset: uniform pixels in [0, 255] and uniform labels in 0..9."""
    rng = _rng(seed, "random")
    shape = (IMAGE_SIDE, IMAGE_SIDE)
    x_train = rng.integers(0, 256, size=(n_train, *shape), dtype=np.uint8)
    y_train = rng.integers(0, 10, size=n_train).astype(np.int64)
    x_test = rng.integers(0, 256, size=(n_test, *shape), dtype=np.uint8)
    y_test = rng.integers(0, 10, size=n_test).astype(np.int64)
    return ImageSet(x_train, y_train, x_test, y_test)


def mix(a: ImageSet, b: ImageSet, rng: np.random.Generator, separated: bool = False) -> ImageSet:
    """Stack A and B (optionally A's labels < 5 with B's labels >= 5), then permute each split."""
    out = {}
    for split in ("train", "test"):
        xa, ya = getattr(a, f"x_{split}"), getattr(a, f"y_{split}")
        xb, yb = getattr(b, f"x_{split}"), getattr(b, f"y_{split}")
        if separated:
            keep_a, keep_b = ya < 5, yb >= 5
            xa, ya, xb, yb = xa[keep_a], ya[keep_a], xb[keep_b], yb[keep_b]
        x = np.concatenate([xa, xb])
        y = np.concatenate([ya, yb])
        source = np.concatenate([np.zeros(len(xa), bool), np.ones(len(xb), bool)])
        perm = rng.permutation(len(x))
        out[split] = (x[perm], y[perm], source[perm])
    return ImageSet(
        out["train"][0], out["train"][1], out["test"][0], out["test"][1],
        source_train=out["train"][2], source_test=out["test"][2],
    )


# --------------------------------------------------------------------------- registry

BASE_DATASETS = ("mnist", "fashion", "cifar10", "line", "random")
MIXTURES = ("line-mnist", "line-cifar10", "mnist-cifar10")
ALL_DATASETS = BASE_DATASETS + MIXTURES + tuple(m + "-separated" for m in MIXTURES)


def parse_name(name: str) -> tuple[str, ...]:
    """Split a dataset name into its base parts: ``'line-mnist-separated'`` -> ``('line', 'mnist')``.

    Raises :class:`DatasetError` naming the valid names for anything unknown.
    """
    stem = name.removesuffix("-separated")
    parts = tuple(stem.split("-"))
    valid = (
        (len(parts) == 1 and parts[0] in BASE_DATASETS and stem == name)
        or (len(parts) == 2 and all(p in BASE_DATASETS for p in parts) and parts[0] != parts[1])
    )
    if not valid:
        raise DatasetError(
            f"unknown dataset name {name!r}; use one of {', '.join(ALL_DATASETS)} "
            "(or any A-B / A-B-separated mixture of the base names)"
        )
    return parts


def raw_requirements(name: str) -> tuple[str, ...]:
    """The raw sources (keys of :data:`RAW_FILES`) a dataset needs."""
    return tuple(p for p in parse_name(name) if p in RAW_FILES)


def build_base(name: str, seed: int = DEFAULT_SEED, cache_dir: Path | None = None) -> ImageSet:
    """Build one of :data:`BASE_DATASETS` in memory."""
    parse_name(name)
    if name == "line":
        return make_line(seed)
    if name == "random":
        return make_random(seed)
    paths = {fname: fetch_raw(raw, cache_dir) for fname, raw in RAW_FILES[name].items()}
    if name == "cifar10":
        return load_cifar10_archive(paths[CIFAR_ARCHIVE])
    return load_idx_dataset(next(iter(paths.values())).parent)


def build(
    name: str,
    seed: int = DEFAULT_SEED,
    cache_dir: Path | None = None,
    base_cache: dict[str, ImageSet] | None = None,
) -> ImageSet:
    """Build any dataset (base or mixture) in memory; ``base_cache`` reuses built bases."""
    parts = parse_name(name)
    base_cache = {} if base_cache is None else base_cache

    def base(part: str) -> ImageSet:
        if part not in base_cache:
            base_cache[part] = build_base(part, seed, cache_dir)
        return base_cache[part]

    if len(parts) == 1:
        return base(parts[0])
    return mix(base(parts[0]), base(parts[1]), _rng(seed, name), name.endswith("-separated"))


# --------------------------------------------------------------------------- storage

def save_imageset(path: Path, data: ImageSet) -> None:
    """Store an :class:`ImageSet` as ``.npz`` (uint8 images, int64 labels, bool sources)."""
    arrays = {
        "x_train": data.x_train.astype(np.uint8),
        "y_train": data.y_train.astype(np.int64),
        "x_test": data.x_test.astype(np.uint8),
        "y_test": data.y_test.astype(np.int64),
    }
    if data.source_train is not None and data.source_test is not None:
        arrays["source_train"] = data.source_train.astype(bool)
        arrays["source_test"] = data.source_test.astype(bool)
    save_npz(path, arrays)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz``, with a clear error for a missing or corrupt file."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError as exc:
        raise DatasetError(f"{path} not found; run `make datasets` to build it") from exc
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error) as exc:
        raise DatasetError(
            f"{path} is corrupt ({exc}); delete it and run `make datasets` again"
        ) from exc


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """Load ``datasets/<name>.npz`` with images as float32 in [0, 1] and int64 labels."""
    parse_name(name)
    path = Path(data_dir if data_dir is not None else default_data_dir()) / f"{name}.npz"
    arrays = read_npz(path)
    missing = {"x_train", "y_train", "x_test", "y_test"} - set(arrays)
    if missing:
        raise DatasetError(f"{path} lacks {sorted(missing)}; delete it and run `make datasets` again")
    return Dataset(
        name=name,
        x_train=arrays["x_train"].astype(np.float32) / 255.0,
        y_train=arrays["y_train"].astype(np.int64),
        x_test=arrays["x_test"].astype(np.float32) / 255.0,
        y_test=arrays["y_test"].astype(np.int64),
        source_train=arrays.get("source_train"),
        source_test=arrays.get("source_test"),
    )


def write_manifest(data_dir: Path) -> Path:
    """Write ``MANIFEST``: one ``<sha256>  <file>`` line per ``.npz`` in ``data_dir``, sorted."""
    lines = [f"{file_digest(p, 'sha256')}  {p.name}" for p in sorted(data_dir.glob("*.npz"))]
    manifest = data_dir / "MANIFEST"
    write_text_atomic(manifest, "".join(line + "\n" for line in lines))
    return manifest


@dataclass
class BuildReport:
    """What :func:`build_all` did: built, already present, and skipped (with the reason)."""

    built: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def build_all(
    names: tuple[str, ...] = ALL_DATASETS,
    data_dir: Path | None = None,
    seed: int = DEFAULT_SEED,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> BuildReport:
    """Build each named dataset into ``data_dir/<name>.npz`` and rewrite the MANIFEST.

    Existing files are kept unless ``force``. Datasets whose raw source is unavailable here
    (CIFAR-10 offline) are skipped with one line each; every other error propagates.
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    for name in names:
        parse_name(name)  # fail on a bad name before doing any work
    report = BuildReport()
    base_cache: dict[str, ImageSet] = {}
    unavailable: dict[str, str] = {}
    for name in names:
        path = data_dir / f"{name}.npz"
        if path.exists() and not force:
            report.kept.append(name)
            continue
        missing = [r for r in raw_requirements(name) if r in unavailable]
        if missing:
            report.skipped[name] = unavailable[missing[0]]
            log(f"skipped {name}: {missing[0]} is not available ({unavailable[missing[0]]})")
            continue
        try:
            data = build(name, seed, data_dir / "raw", base_cache)
        except DatasetUnavailable as exc:
            source = next(r for r in raw_requirements(name) if r not in base_cache)
            unavailable[source] = str(exc)
            report.skipped[name] = str(exc)
            log(f"skipped {name}: {exc}")
            continue
        save_imageset(path, data)
        report.built.append(name)
        log(f"built {path} ({len(data.y_train)} train / {len(data.y_test)} test)")
    write_manifest(data_dir)
    return report


def ensure_dataset(name: str, data_dir: Path) -> None:
    """Build ``data_dir/<name>.npz`` if it is missing; DatasetUnavailable if it cannot be."""
    if (Path(data_dir) / f"{name}.npz").exists():
        return
    report = build_all((name,), Path(data_dir), log=lambda _: None)
    if name in report.skipped:
        raise DatasetUnavailable(report.skipped[name])
