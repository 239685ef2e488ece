"""Parsers of the canonical files: gzip-compressed IDX (MNIST, Fashion-MNIST) and the
CIFAR-10 python archive (converted to 28x28 grey images as method.md §1 says)."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .imageset import IMAGE_SIDE, ImageSet
from .raw import CIFAR_ARCHIVE

#: Rec. 709 luma weights, as skimage.color.rgb2gray (what the paper's code used).
LUMA_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])

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
    grey with the Rec. 709 luma weights and rounded to uint8, as method.md §1 says.
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
