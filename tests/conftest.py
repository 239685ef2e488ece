"""Shared test helpers: tiny raw files in the canonical formats, written by the tests; a
private config folder (the cache key) for the whole session; a local moto S3 server."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import socket
import struct
import subprocess
import sys
import tarfile
import time
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


@pytest.fixture(scope="session", autouse=True)
def private_config_dir(tmp_path_factory):
    """The cache key (``$NN_CLUSTERING_CONFIG_DIR/cache.key``) lives in a temporary folder, never
    in the real home; set in ``os.environ`` so subprocesses and notebook kernels inherit it."""
    name = "NN_CLUSTERING_CONFIG_DIR"
    before = os.environ.get(name)
    folder = tmp_path_factory.mktemp("nn-clustering-config")
    os.environ[name] = str(folder)
    yield folder
    if before is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = before


S3_BUCKET = "nn-clustering-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on loopback holding the bucket ``S3_BUCKET``; the first 3 requests are
    unauthenticated (they create an IAM user with S3 rights), every later one must be signed
    with that user's key. Yields (endpoint URL, that user's credentials, a client)."""
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto")
    port = _free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("moto server did not start")
        anonymous = {"endpoint_url": url, "region_name": "us-east-1", "aws_access_key_id": "setup",
                     "aws_secret_access_key": "setup"}
        iam = boto3.client("iam", **anonymous)
        iam.create_user(UserName="researcher")
        key = iam.create_access_key(UserName="researcher")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="researcher", PolicyName="s3", PolicyDocument=json.dumps(policy))
        credentials = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
        client.create_bucket(Bucket=S3_BUCKET)
        yield url, credentials, client
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def s3_creds(s3_server, monkeypatch, tmp_path):
    """The standard credential chain sees only the test server's key (no ~/.aws files).
    Yields (endpoint URL, a client)."""
    url, credentials, client = s3_server
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    return url, client
