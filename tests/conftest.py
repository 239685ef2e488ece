"""Shared test helpers: tiny raw files in the canonical formats, written by the tests."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest


def idx_bytes(array: np.ndarray) -> bytes:
    """Hand-rolled IDX encoding (uint8 only), independent of the parser under test."""
    assert array.dtype == np.uint8
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.tobytes()


def write_idx_gz(path: Path, array: np.ndarray) -> str:
    """Write ``array`` as a gzip IDX file; return its md5."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(idx_bytes(array), mtime=0))
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_fake_idx_dataset(folder: Path, n_train: int = 50, n_test: int = 20, seed: int = 0):
    """Four MNIST-style IDX files of random images; returns ({file: md5}, arrays)."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    md5s = {name: write_idx_gz(folder / name, a) for name, a in arrays.items()}
    return md5s, arrays


def write_fake_cifar(path: Path, n_per_batch: int = 4, seed: int = 0) -> tuple[str, dict]:
    """A tiny ``cifar-10-python.tar.gz`` in the canonical layout (pickled dicts, bytes keys)."""
    rng = np.random.default_rng(seed)
    batches = {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for name in names:
            batch = {
                b"batch_label": name.encode(),
                b"labels": [int(v) for v in rng.integers(0, 10, n_per_batch)],
                b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                b"filenames": [f"img{i}.png".encode() for i in range(n_per_batch)],
            }
            batches[name] = batch
            payload = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return hashlib.md5(path.read_bytes()).hexdigest(), batches


@pytest.fixture
def fake_mirror(tmp_path, monkeypatch):
    """A mirror folder with small fake MNIST and CIFAR-10 files; RAW_FILES md5s point at them."""
    from nn_clustering.data import raw as raw_files

    mirror = tmp_path / "mirror"
    md5s, arrays = write_fake_idx_dataset(mirror / "mnist")
    raw = {
        name: raw_files.RawFile("mnist", name, md5s[name], ("http://127.0.0.1:9/unreachable",))
        for name in md5s
    }
    cifar_md5, batches = write_fake_cifar(mirror / "cifar-10" / raw_files.CIFAR_ARCHIVE)
    cifar = {
        raw_files.CIFAR_ARCHIVE: raw_files.RawFile(
            "cifar-10", raw_files.CIFAR_ARCHIVE, cifar_md5, ("http://127.0.0.1:9/unreachable",)
        )
    }
    monkeypatch.setitem(raw_files.RAW_FILES, "mnist", raw)
    monkeypatch.setitem(raw_files.RAW_FILES, "cifar10", cifar)
    monkeypatch.setenv(raw_files.MIRROR_ENV, str(mirror))
    return {"mirror": mirror, "arrays": arrays, "cifar": batches}
