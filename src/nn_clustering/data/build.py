"""Building, storing and loading the datasets of method.md §1.

Built datasets are stored as ``datasets/<name>.npz`` with uint8 images in [0, 255], int64
labels and, for mixtures, boolean ``source`` arrays (True = the row came from B). The files are
written with fixed zip timestamps, so their sha256 (recorded in ``datasets/MANIFEST``) is the
same on every build.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError, DatasetUnavailable
from ..storage.files import file_digest, remove_stale_parts, save_npz, write_text_atomic
from .imageset import Dataset, ImageSet
from .parsers import load_cifar10_archive, load_idx_dataset
from .raw import CIFAR_ARCHIVE, RAW_FILES, default_data_dir, fetch_raw
from .synthetic import (
    DEFAULT_SEED,
    dataset_rng,
    halves,
    make_line,
    make_poly,
    make_random,
    mix,
    stacked,
)

BASE_DATASETS = ("mnist", "fashion", "cifar10", "line", "random")
MIXTURES = ("line-mnist", "line-cifar10", "mnist-cifar10")
#: The successor paper's paired datasets (method.md §1): ``halves-<base>`` (two images side by
#: side, label their sum mod 10), ``halves-same-<base>`` (two images of one class), and their
#: two-channel CNN forms ``stacked-<base>`` and ``stacked-same-<base>``.
PAIRED = ("halves-", "halves-same-", "stacked-", "stacked-same-")
PAIRED_BASES = ("mnist", "fashion", "cifar10")
#: Regression datasets, float inputs and float targets (method.md §1), by name: each one's
#: generator of the seed.
REGRESSION: dict[str, Callable[[int], ImageSet]] = {"poly": make_poly}
ALL_DATASETS = (BASE_DATASETS + MIXTURES + tuple(m + "-separated" for m in MIXTURES)
                + tuple(h + b for h in PAIRED for b in ("mnist", "fashion")) + tuple(REGRESSION))


def paired_of(name: str) -> tuple[str, bool, bool] | None:
    """(base, same, stacked) of a paired dataset's name, else None."""
    for prefix in sorted(PAIRED, key=len, reverse=True):
        base = name.removeprefix(prefix)
        if base != name and base in PAIRED_BASES:
            return base, "same" in prefix, prefix.startswith("stacked")
    return None


def parse_name(name: str) -> tuple[str, ...]:
    """Split a dataset name into its base parts: ``'line-mnist-separated'`` -> ``('line', 'mnist')``.

    Raises :class:`DatasetError` naming the valid names for anything unknown.
    """
    paired = paired_of(name)
    if paired is not None:
        return (paired[0],)
    if name in REGRESSION:
        return (name,)
    stem = name.removesuffix("-separated")
    parts = tuple(stem.split("-"))
    valid = (
        (len(parts) == 1 and parts[0] in BASE_DATASETS and stem == name)
        or (len(parts) == 2 and all(p in BASE_DATASETS for p in parts) and parts[0] != parts[1])
    )
    if not valid:
        raise DatasetError(
            f"unknown dataset name {name!r}; use one of {', '.join(ALL_DATASETS)} "
            "(or any A-B / A-B-separated mixture of the base names, or halves-[same-]cifar10, stacked-[same-]cifar10)"
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

    if name in REGRESSION:
        return REGRESSION[name](seed)
    paired = paired_of(name)
    if paired is not None:
        base_name, same, as_channels = paired
        return (stacked if as_channels else halves)(base(base_name), dataset_rng(seed, name), same)
    if len(parts) == 1:
        return base(parts[0])
    return mix(base(parts[0]), base(parts[1]), dataset_rng(seed, name), name.endswith("-separated"))


def save_imageset(path: Path, data: ImageSet) -> None:
    """Store an :class:`ImageSet` as ``.npz``: uint8 images and int64 labels (float32 inputs and
    targets as they are, for a regression dataset), bool sources."""

    def inputs(x):
        return x if x.dtype == np.float32 else x.astype(np.uint8)

    def targets(y):
        return y if y.dtype == np.float32 else y.astype(np.int64)

    arrays = {"x_train": inputs(data.x_train), "y_train": targets(data.y_train),
              "x_test": inputs(data.x_test), "y_test": targets(data.y_test)}
    if data.source_train is not None and data.source_test is not None:
        arrays["source_train"] = data.source_train.astype(bool)
        arrays["source_test"] = data.source_test.astype(bool)
    save_npz(path, arrays)


MANIFEST_FILE = "MANIFEST"
REQUIRED_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def rebuild_hint(name: str) -> str:
    """How to rebuild one dataset file (``make datasets`` alone does nothing once MANIFEST is
    newer than the code)."""
    return f"rebuild it with `.venv/bin/nn-clustering datasets {name}` (or `make -B datasets`)"


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz``, with a clear error for a missing or corrupt file."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError as exc:
        raise DatasetError(f"{path} not found; run `make datasets` to build it") from exc
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path} is corrupt ({exc}); {rebuild_hint(path.stem)}") from exc


def read_manifest(data_dir: Path) -> dict[str, str]:
    """``{file name: SHA-256}`` from ``data_dir/MANIFEST`` (empty if there is none or it is unreadable)."""
    try:
        lines = (Path(data_dir) / MANIFEST_FILE).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    out = {}
    for line in lines:
        digest, _, name = line.partition("  ")
        if len(digest) == 64 and name:
            out[name] = digest
    return out


def dataset_problem(path: Path, manifest: dict[str, str]) -> str | None:
    """Why the dataset file ``path`` cannot be trusted, or None: it must match its MANIFEST line,
    or, when it has none, be a readable ``.npz`` with the four arrays."""
    expected = manifest.get(path.name)
    if expected is not None:
        actual = file_digest(path, "sha256")
        return None if actual == expected else f"its SHA-256 {actual[:12]}... is not MANIFEST's {expected[:12]}..."
    try:
        missing = set(REQUIRED_ARRAYS) - set(read_npz(path))
    except DatasetError as exc:
        return str(exc).split("; ")[0]
    return f"it lacks {sorted(missing)}" if missing else None


def _scaled(x: np.ndarray) -> np.ndarray:
    """uint8 images as float32 in [0, 1]; float inputs as float32."""
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


def _labels(y: np.ndarray) -> np.ndarray:
    """Class labels as int64; float regression targets as float32."""
    return y.astype(np.float32) if np.issubdtype(y.dtype, np.floating) else y.astype(np.int64)


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """Load ``datasets/<name>.npz`` with images as float32 in [0, 1] and int64 labels (a
    regression dataset's float inputs and targets as float32), once it matches its line in
    ``datasets/MANIFEST``."""
    parse_name(name)
    folder = Path(data_dir if data_dir is not None else default_data_dir())
    path = folder / f"{name}.npz"
    expected = read_manifest(folder).get(path.name)
    if expected is not None and path.is_file() and file_digest(path, "sha256") != expected:
        raise DatasetError(f"{path} does not match {folder / MANIFEST_FILE} (damaged or replaced); {rebuild_hint(name)}")
    arrays = read_npz(path)
    missing = set(REQUIRED_ARRAYS) - set(arrays)
    if missing:
        raise DatasetError(f"{path} lacks {sorted(missing)}; {rebuild_hint(name)}")
    return Dataset(
        name=name,
        x_train=_scaled(arrays["x_train"]),
        y_train=_labels(arrays["y_train"]),
        x_test=_scaled(arrays["x_test"]),
        y_test=_labels(arrays["y_test"]),
        source_train=arrays.get("source_train"),
        source_test=arrays.get("source_test"),
    )


def write_manifest(data_dir: Path, fresh: dict[str, str] | None = None) -> Path:
    """Write ``MANIFEST``: one ``<sha256>  <file>`` line per ``.npz`` in ``data_dir``, sorted.

    ``fresh`` holds the digests of the files this run built or verified; any other file keeps
    its old line, and one without a line is added only if it reads as a dataset, so a damaged
    file never gets its digest written down as the right one."""
    data_dir = Path(data_dir)
    old, fresh = read_manifest(data_dir), dict(fresh or {})
    entries = {}
    for path in sorted(data_dir.glob("*.npz")):
        if path.name in fresh:
            entries[path.name] = fresh[path.name]
        elif path.name in old:
            entries[path.name] = old[path.name]
        elif dataset_problem(path, {}) is None:
            entries[path.name] = file_digest(path, "sha256")
    manifest = data_dir / MANIFEST_FILE
    write_text_atomic(manifest, "".join(f"{digest}  {name}\n" for name, digest in sorted(entries.items())))
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

    Existing files are kept unless ``force``, once they match MANIFEST (or, without a line
    there, read as a dataset); any other is rebuilt, with a line saying why. Datasets whose raw
    source is unavailable here (CIFAR-10 offline) are skipped with one line each; every other
    error propagates. Temporary files that a killed build left behind are removed first.
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    for name in names:
        parse_name(name)  # fail on a bad name before doing any work
    for folder in [data_dir, *(p for p in (data_dir / "raw").glob("*") if p.is_dir())]:
        if folder.is_dir():
            for part in remove_stale_parts(folder):
                log(f"removed {part}, left by an interrupted build")
    report = BuildReport()
    base_cache: dict[str, ImageSet] = {}
    unavailable: dict[str, str] = {}
    manifest = read_manifest(data_dir)
    fresh: dict[str, str] = {}
    for name in names:
        path = data_dir / f"{name}.npz"
        if path.exists() and not force:
            problem = dataset_problem(path, manifest)
            if problem is None:
                report.kept.append(name)
                fresh[path.name] = manifest.get(path.name) or file_digest(path, "sha256")
                continue
            log(f"rebuilding {path}: {problem}")
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
        fresh[path.name] = file_digest(path, "sha256")
        report.built.append(name)
        log(f"built {path} ({len(data.y_train)} train / {len(data.y_test)} test)")
    write_manifest(data_dir, fresh)
    return report


def ensure_dataset(name: str, data_dir: Path) -> None:
    """Build ``data_dir/<name>.npz`` if it is missing; DatasetUnavailable if it cannot be."""
    if (Path(data_dir) / f"{name}.npz").exists():
        return
    report = build_all((name,), Path(data_dir), log=lambda _: None)
    if name in report.skipped:
        raise DatasetUnavailable(report.skipped[name])
