"""Sharing folders through S3: tested against a real S3 protocol server (moto's server mode,
the ``s3_server`` fixture of conftest.py) started on loopback, with IAM authentication switched
on so bad credentials are refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")

from nn_clustering import cli  # noqa: E402
from nn_clustering.storage import s3 as storage  # noqa: E402
from nn_clustering.storage.s3 import StorageError, pull, push  # noqa: E402

BUCKET = "nn-clustering-test"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def creds(s3_creds):
    """The moto server of conftest.py (bucket ``BUCKET``), credentials in the environment only."""
    return s3_creds


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_push_and_pull_move_only_changed_files(creds, tmp_path):
    url, _ = creds
    uri = f"s3://{BUCKET}/round-trip/models"
    local = _write(tmp_path / "models", {"MNIST/0/pruned.npz": b"k" * 5000, "MNIST/0/config.json": b"{}",
                                         "INDEX.json": b"[]", ".hidden.partial": b"half"})
    quiet = {"progress": False, "log": lambda _: None}
    first = push(local, uri, url, **quiet)
    assert sorted(first.transferred) == ["INDEX.json", "MNIST/0/config.json", "MNIST/0/pruned.npz"]
    assert push(local, uri, url, **quiet).transferred == []  # nothing changed
    (local / "MNIST/0/config.json").write_bytes(b'{"seed": 1}')
    assert push(local, uri, url, **quiet).transferred == ["MNIST/0/config.json"]

    copy = tmp_path / "copy"
    assert len(pull(uri, copy, url, **quiet).transferred) == 3
    expected = {k: v for k, v in _tree(local).items() if not k.startswith(".")}
    assert _tree(copy) == expected
    (copy / "MNIST/0/pruned.npz").write_bytes(b"edited locally")
    again = pull(uri, copy, url, **quiet)
    assert again.transferred == ["MNIST/0/pruned.npz"] and len(again.unchanged) == 2
    assert _tree(copy) == expected


def test_bad_credentials_get_one_clear_error(creds, tmp_path, monkeypatch):
    url, _ = creds
    local = _write(tmp_path / "results", {"table.csv": b"a,b\n1,2\n"})
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAREALKEY00000")
    with pytest.raises(StorageError, match="S3 refused the credentials .*InvalidAccessKeyId.*AWS_ACCESS_KEY_ID"):
        push(local, f"s3://{BUCKET}/bad", url, progress=False)
    run = subprocess.run([sys.executable, "-m", "nn_clustering", "s3", "push", str(local), f"s3://{BUCKET}/bad",
                          "--endpoint-url", url, "--quiet"], capture_output=True, text=True, env=os.environ.copy())
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [run.stderr.strip()]  # one line
    assert run.stderr.startswith("error: S3 refused the credentials")


def test_interrupted_download_leaves_the_old_file_and_no_partial_one(creds, tmp_path, monkeypatch):
    url, _ = creds
    uri = f"s3://{BUCKET}/interrupted"
    big = os.urandom(3 * 1024 * 1024)
    push(_write(tmp_path / "remote", {"pruned.npz": big}), uri, url, progress=False)
    local = _write(tmp_path / "local", {"pruned.npz": b"the old, good model"})

    class Interrupt:
        """A progress bar whose connection drops after the first received bytes."""

        def __init__(self, *args, **kwargs):
            self.seen = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            self.seen += n
            if self.seen < len(big):
                raise ConnectionResetError("connection reset by peer")

    original = storage.progress_bar
    monkeypatch.setattr(storage, "progress_bar", Interrupt)
    with pytest.raises(StorageError, match="was interrupted .*ConnectionResetError.* run the pull again"):
        pull(uri, local, url, progress=False)
    assert _tree(local) == {"pruned.npz": b"the old, good model"}  # untouched, nothing half-written
    monkeypatch.setattr(storage, "progress_bar", original)
    pull(uri, local, url, progress=False)  # the next pull completes
    assert _tree(local) == {"pruned.npz": big}


def test_pulled_files_are_checked_against_their_recorded_checksum(creds, tmp_path):
    url, client = creds
    uri = f"s3://{BUCKET}/tampered"
    push(_write(tmp_path / "remote", {"MNIST/0/pruned.npz": b"trained weights"}), uri, url, progress=False)
    client.put_object(Bucket=BUCKET, Key="tampered/MNIST/0/pruned.npz", Body=b"corrupted here!")  # the same size
    local = tmp_path / "local"
    with pytest.raises(StorageError, match="does not match its recorded SHA-256"):
        pull(uri, local, url, progress=False)
    assert not local.exists() or _tree(local) == {}


def test_bad_uris_and_missing_buckets_are_clear(creds, tmp_path):
    url, _ = creds
    with pytest.raises(StorageError, match="is not an S3 URI; use s3://bucket/prefix"):
        push(tmp_path, "https://example.com/bucket", url, progress=False)
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        pull("s3://no-such-bucket/models", tmp_path / "x", url, progress=False)
    with pytest.raises(StorageError, match="nothing at s3://.*/empty"):
        pull(f"s3://{BUCKET}/empty", tmp_path / "x", url, progress=False)


def test_make_targets_push_and_pull_a_profile_folder(creds, tmp_path):
    url, _ = creds
    if not (ROOT / ".venv" / ".installed").exists():
        pytest.skip("make env has not been run")
    models = _write(tmp_path / "models", {"MNIST/0/pruned.npz": b"weights", "INDEX.json": b"[]"})
    common = [f"S3_URI=s3://{BUCKET}/make", f"S3_ENDPOINT={url}"]
    push_run = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "push-models",
                               f"MODELS_DIR={models}", *common], capture_output=True, text=True)
    assert push_run.returncode == 0, push_run.stderr
    copy = tmp_path / "copy"
    pull_run = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "pull-models",
                               f"MODELS_DIR={copy}", *common], capture_output=True, text=True)
    assert pull_run.returncode == 0, pull_run.stderr
    assert _tree(copy) == _tree(models)
    missing = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "push-models"],
                             capture_output=True, text=True, env={**os.environ, "S3_URI": ""})
    assert missing.returncode != 0 and "S3_URI" in missing.stderr


def test_a_corrupt_remote_manifest_is_rewritten_by_the_next_push(creds, tmp_path):
    url, client = creds
    uri = f"s3://{BUCKET}/bad-manifest"
    local = _write(tmp_path / "models", {"MNIST/0/pruned.npz": b"weights", "INDEX.json": b"[]"})
    push(local, uri, url, progress=False, log=lambda _: None)
    client.put_object(Bucket=BUCKET, Key="bad-manifest/MANIFEST.json", Body=b"{not json")
    with pytest.raises(StorageError, match="MANIFEST.json is corrupt .*push the folder again"):
        pull(uri, tmp_path / "copy", url, progress=False)
    lines = []
    again = push(local, uri, url, progress=False, log=lines.append)  # the fix the message names
    assert sorted(again.transferred) == ["INDEX.json", "MNIST/0/pruned.npz"] and "corrupt" in lines[0]
    pull(uri, tmp_path / "copy", url, progress=False, log=lambda _: None)
    assert _tree(tmp_path / "copy") == _tree(local)


def test_one_corrupted_object_does_not_stop_the_pull(creds, tmp_path, capsys):
    url, client = creds
    uri = f"s3://{BUCKET}/one-bad"
    files = {"a.npz": b"aaaa", "b.npz": b"bbbb", "c.npz": b"cccc"}
    push(_write(tmp_path / "remote", files), uri, url, progress=False, log=lambda _: None)
    client.put_object(Bucket=BUCKET, Key="one-bad/b.npz", Body=b"corrupted")
    local = tmp_path / "local"
    _write(local, {"b.npz": b"old good copy"})
    code = cli.main(["s3", "pull", str(local), uri, "--endpoint-url", url, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "1 of 3 file(s) failed" in err and "b.npz" in err
    assert _tree(local) == {"a.npz": b"aaaa", "b.npz": b"old good copy", "c.npz": b"cccc"}
    assert not [p for p in local.iterdir() if p.name.startswith(".")]


def test_a_malformed_endpoint_or_a_file_as_folder_is_one_line(creds, tmp_path, capsys):
    url, _ = creds
    code = cli.main(["s3", "push", str(tmp_path), f"s3://{BUCKET}/x", "--endpoint-url", "not an endpoint"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "S3_ENDPOINT" in err
    target = tmp_path / "a-file"
    target.write_text("keep me")
    code = cli.main(["s3", "pull", str(target), f"s3://{BUCKET}/x", "--endpoint-url", url])
    err = capsys.readouterr().err
    assert code == 2 and "is a file, not a folder" in err and target.read_text() == "keep me"
