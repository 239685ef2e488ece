"""A bucket is outside input: a pull must not write anywhere but inside its target folder.

Against a real S3 protocol server (moto's server mode on loopback, the ``s3_creds`` fixture of
conftest.py), each test plants a tampered ``MANIFEST.json`` that lists every object with its
TRUE SHA-256 and size (so the digest checks pass) and checks, with the whole temporary tree
listed before and after, that the pull is refused in one line before anything is written.
Push and pull treat hidden names, symlinks and exclusions by one rule (see storage/s3.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from pathlib import Path, PurePosixPath

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto")

from botocore.exceptions import ClientError  # noqa: E402
from error_lines import one_error_line

import nn_clustering  # noqa: E402
from nn_clustering import cli  # noqa: E402
from nn_clustering.storage import s3 as storage  # noqa: E402
from nn_clustering.storage.s3 import StorageError, UnsafePathError, pull, push  # noqa: E402
from nn_clustering.storage.safe_paths import check_relative  # noqa: E402

BUCKET = "nn-clustering-test"
ROOT = Path(__file__).resolve().parents[1]
QUIET = {"progress": False, "log": lambda _: None}


def snapshot(root: Path) -> dict[str, object]:
    """Every file (bytes and mtime), folder and symlink under ``root``, links not followed."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[relative] = ("link", os.readlink(path))
            elif path.is_dir():
                out[relative] = "folder"
            else:
                out[relative] = ("file", path.read_bytes(), path.stat().st_mtime_ns)
    return out


def entry(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def plant(client, prefix: str, objects: list[tuple[str, bytes]], manifest: str | None = None) -> str:
    """Upload ``objects`` under ``prefix`` and a manifest listing them in this order (duplicates
    kept) with their true SHA-256 and size; returns the bucket URI."""
    for key, data in objects:
        with contextlib.suppress(UnicodeEncodeError, ClientError):  # a key S3 refuses: in the manifest only
            client.put_object(Bucket=BUCKET, Key=f"{prefix}/{key}", Body=data)
    files = ", ".join(f"{json.dumps(key)}: {json.dumps(entry(data))}" for key, data in objects)
    body = manifest if manifest is not None else f'{{"format": 1, "files": {{{files}}}}}'
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/MANIFEST.json", Body=body.encode())
    return f"s3://{BUCKET}/{prefix}"


def remote_keys(client, prefix: str) -> dict[str, bytes]:
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/").get("Contents", [])
    return {o["Key"][len(prefix) + 1:]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
            for o in listing}


def manifest_files(client, prefix: str) -> dict:
    return json.loads(client.get_object(Bucket=BUCKET, Key=f"{prefix}/MANIFEST.json")["Body"].read())["files"]



def write(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


# (case, the planted keys after a good "good.txt", the key the error must name)
BAD_MANIFESTS = [
    ("parent", ["../x"], "../x"),
    ("grandparent", ["../../escaped.txt"], "../../escaped.txt"),
    ("sub-up", ["sub/../../x"], "sub/../../x"),
    ("absolute", ["{abs}"], "{abs}"),
    ("dot", ["."], "."),
    ("empty", [""], ""),
    ("trailing-slash", ["dir/"], "dir/"),
    ("double-slash", ["a//b"], "a//b"),
    ("file-and-folder", ["a", "a/b"], "a/b"),
    ("folder-and-file", ["a/b", "a"], "a"),
    ("nul", ["a\x00b"], "a\x00b"),
    ("ansi-escape", ["x\x1b[2J\x1b[31mred"], "x\x1b[2J\x1b[31mred"),
    ("c1-control", ["x\x9b31m"], "x\x9b31m"),
    ("del", ["x\x7f"], "x\x7f"),
    ("newline", ["x\ny"], "x\ny"),
    ("backslash", ["..\\x"], "..\\x"),
    ("hidden-up", [".cache/../../x"], ".cache/../../x"),
    ("manifest-name", ["MANIFEST.json"], "MANIFEST.json"),
    ("listed-twice", ["twice", "twice"], "twice"),
    ("nfc-twin", ["caf\u00e9", "cafe\u0301"], "cafe\u0301"),
    ("lone-surrogate", ["\ud800x"], "\ud800x"),
    ("long-segment", ["x" * 300], "x" * 300),
]


@pytest.mark.parametrize(("keys", "named"), [pytest.param(k, n, id=case) for case, k, n in BAD_MANIFESTS])
def test_a_tampered_manifest_is_refused_before_anything_is_written(s3_creds, tmp_path, capsys, keys, named):
    url, client = s3_creds
    keys = [k.replace("{abs}", str(tmp_path / "abs.txt")) for k in keys]
    named = named.replace("{abs}", str(tmp_path / "abs.txt"))
    case = hashlib.sha256(repr(keys).encode()).hexdigest()[:12]
    objects = [("good.txt", b"a good file listed first")] + [(k, f"planted {i}".encode()) for i, k in enumerate(keys)]
    uri = plant(client, f"evil/{case}", objects)
    target = tmp_path / "a" / "b" / "target"
    target.parent.mkdir(parents=True)
    before = snapshot(tmp_path)
    err = one_error_line(capsys, cli.main(["s3", "pull", str(target), uri, "--endpoint-url", url, "--quiet"]))
    shown = repr(named)
    assert (shown if len(shown) <= 120 else shown[:100]) in err
    assert "unsafe key" in err and "do not pull it" in err and "push it again" in err
    assert snapshot(tmp_path) == before  # nothing outside the target, no target folder, no file in it


def test_a_key_aimed_at_the_installed_package_changes_nothing(s3_creds, tmp_path, capsys):
    url, client = s3_creds
    package = Path(nn_clustering.__file__).resolve().parent
    version_file = package / "_version.py"
    target = tmp_path / "target"
    target.mkdir()
    key = os.path.relpath(version_file, target)  # ../../.../src/nn_clustering/_version.py
    assert key.startswith("../")

    def digests() -> dict[str, str]:
        return {p.relative_to(package).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(package.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}

    before, version = digests(), version_file.read_bytes()
    uri = plant(client, "evil/version", [(key, b"__version__ = 'owned'\nimport os\n")])
    try:
        err = one_error_line(capsys, cli.main(["s3", "pull", str(target), uri, "--endpoint-url", url, "--quiet"]))
        assert repr(key) in err
        assert digests() == before
        assert list(target.iterdir()) == []
    finally:
        if version_file.read_bytes() != version:  # never leave the checkout damaged by a failing run
            version_file.write_bytes(version)


@pytest.mark.parametrize("content_length", ["sent", "withheld"])
def test_an_object_larger_than_its_manifest_says_is_cut_off_not_written(s3_creds, tmp_path, monkeypatch,
                                                                         content_length):
    url, client = s3_creds
    big = os.urandom(3 * 1024 * 1024)
    uri = plant(client, f"evil/size-{content_length}", [("huge.bin", big)],
                manifest=json.dumps({"format": 1, "files": {"huge.bin": {**entry(big), "size": 4}}}))

    class Client:
        """The real client; withholding ContentLength makes the pull rely on counting the bytes."""

        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def get_object(self, **kwargs):
            response = self.real.get_object(**kwargs)
            if content_length == "withheld" and kwargs["Key"].endswith("huge.bin"):
                response.pop("ContentLength", None)
            return response

    received = []

    class Bar:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            received.append(n)

    monkeypatch.setattr(storage, "progress_bar", Bar)
    target = tmp_path / "target"
    with pytest.raises(StorageError, match=r"huge.bin is larger than the 4 bytes its manifest records"):
        pull(uri, target, url, client=Client(storage.s3_client(url)), **QUIET)
    assert sum(received) <= 4  # never more than the recorded size written
    assert not target.exists() or snapshot(target) == {}


@pytest.mark.parametrize(("meta", "problem"), [
    ({"size": -1}, "size is not a non-negative integer"),
    ({"size": True}, "size is not a non-negative integer"),
    ({"size": 1.5}, "size is not a non-negative integer"),
    ({"size": "4"}, "size is not a non-negative integer"),
    ({"sha256": "A" * 64}, "sha256 is not 64 lowercase hex digits"),
    ({"sha256": "a" * 63}, "sha256 is not 64 lowercase hex digits"),
])
def test_a_manifest_entry_of_the_wrong_shape_is_corrupt(s3_creds, tmp_path, capsys, meta, problem):
    url, client = s3_creds
    data = b"data"
    manifest = json.dumps({"format": 1, "files": {"ok.txt": entry(data), "f.txt": {**entry(data), **meta}}})
    uri = plant(client, "evil/shape", [("ok.txt", data), ("f.txt", data)], manifest=manifest)
    err = one_error_line(capsys, cli.main(["s3", "pull", str(tmp_path / "t"), uri, "--endpoint-url", url]))
    assert "MANIFEST.json is corrupt (entry 'f.txt': its " + problem in err and "push the folder again" in err
    assert not (tmp_path / "t").exists()


def test_safe_names_pass_the_rule_and_make_the_round_trip(s3_creds, tmp_path):
    url, client = s3_creds
    names = ["MNIST/0/pruned.npz", "caf\u00e9/\u540d\u524d.txt", "a b/x..y", "x.", "v1.2/tab-le_3.csv", "-n"]
    for name in names:
        assert check_relative(name) == PurePosixPath(name)
    for bad in [".x", "a/.x", "..", "a/./b", "/a", "a\\b", "a\tb", "\u0085", ""]:
        with pytest.raises(UnsafePathError):
            check_relative(bad)
    local = write(tmp_path / "local", {name: name.encode() for name in names})
    uri = f"s3://{BUCKET}/names/safe"
    push(local, uri, url, **QUIET)
    assert sorted(manifest_files(client, "names/safe")) == sorted(names)
    pull(uri, tmp_path / "copy", url, **QUIET)
    assert snapshot(tmp_path / "copy").keys() >= set(names)
    assert all((tmp_path / "copy" / name).read_bytes() == name.encode() for name in names)


# --------------------------------------------------------------------------- hidden names


def test_pull_skips_hidden_keys_and_says_so(s3_creds, tmp_path, capsys):
    url, client = s3_creds
    objects = [("good.txt", b"good"), (".bashrc", b"alias ls=rm"), ("sub/.hidden", b"h"),
               (".git/hooks/post-checkout", b"#!/bin/sh\n"), ("sub/fine.txt", b"fine")]
    uri = plant(client, "hidden/pull", objects)
    target = tmp_path / "target"
    assert cli.main(["s3", "pull", str(target), uri, "--endpoint-url", url, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert snapshot(target).keys() == {"good.txt", "sub", "sub/fine.txt"}
    assert "skipped 3 hidden name(s)" in out and "'.bashrc'" in out


def test_push_skips_hidden_names_and_says_so(s3_creds, tmp_path):
    url, client = s3_creds
    local = write(tmp_path / "local", {"a.txt": b"a", ".env": b"SECRET=1", "x/.git/config": b"[core]",
                                       "x/y.txt": b"y", ".a.txt.123.abc.part": b"half"})
    lines: list[str] = []
    push(local, f"s3://{BUCKET}/hidden/push", url, progress=False, log=lines.append)
    assert sorted(manifest_files(client, "hidden/push")) == ["a.txt", "x/y.txt"]
    assert sorted(remote_keys(client, "hidden/push")) == ["MANIFEST.json", "a.txt", "x/y.txt"]
    assert any("skipped 3 hidden name(s)" in line for line in lines), lines


# --------------------------------------------------------------------------- symlinks


def test_push_does_not_follow_symlinks_out_of_the_folder(s3_creds, tmp_path):
    url, client = s3_creds
    secret = write(tmp_path / "outside", {"secret.txt": b"top secret", "dir/leak.txt": b"leaked"})
    local = write(tmp_path / "local", {"real.txt": b"real", "sub/kept.txt": b"kept"})
    (local / "link.txt").symlink_to(secret / "secret.txt")
    (local / "linkdir").symlink_to(secret / "dir", target_is_directory=True)
    (local / "sub" / "inner").symlink_to(local / "real.txt")
    lines: list[str] = []
    push(local, f"s3://{BUCKET}/links/push", url, progress=False, log=lines.append)
    remote = remote_keys(client, "links/push")
    assert sorted(remote) == ["MANIFEST.json", "real.txt", "sub/kept.txt"]
    assert not any(b"top secret" in data or b"leaked" in data for data in remote.values())
    assert any("skipped 3 symlink(s)" in line for line in lines), lines


@pytest.mark.parametrize("where", ["folder", "file"])
def test_pull_never_writes_through_a_symlink_in_the_target(s3_creds, tmp_path, capsys, where):
    url, client = s3_creds
    uri = plant(client, f"links/pull-{where}", [("good.txt", b"good"), ("models/x.npz", b"weights"),
                                                 ("victim.txt", b"from the bucket")])
    elsewhere = write(tmp_path / "elsewhere", {"victim.txt": b"mine, not the bucket's"})
    target = write(tmp_path / "target", {"keep.txt": b"keep"})
    if where == "folder":
        (target / "models").symlink_to(elsewhere, target_is_directory=True)
    else:
        (target / "victim.txt").symlink_to(elsewhere / "victim.txt")
    before = snapshot(tmp_path)
    err = one_error_line(capsys, cli.main(["s3", "pull", str(target), uri, "--endpoint-url", url, "--quiet"]))
    assert "is a symlink; a pull never writes through a link" in err
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- names push refuses or drops


def test_push_refuses_a_local_name_that_a_pull_would_refuse(s3_creds, tmp_path, capsys):
    url, client = s3_creds
    local = write(tmp_path / "local", {"ok.txt": b"ok", "bad\x1b[31m.txt": b"x"})
    err = one_error_line(capsys, cli.main(["s3", "push", str(local), f"s3://{BUCKET}/names/bad", "--endpoint-url",
                                           url, "--quiet"]))
    assert "'bad\\x1b[31m.txt'" in err and "rename it" in err
    assert remote_keys(client, "names/bad") == {}


def test_push_rewrites_a_tampered_manifest_and_drops_clashing_entries(s3_creds, tmp_path):
    url, client = s3_creds
    uri = plant(client, "names/rewrite", [("a", b"a file"), ("../x", b"planted")])
    lines: list[str] = []
    local = write(tmp_path / "local", {"a/b": b"now a folder"})
    push(local, uri, url, progress=False, log=lines.append)
    assert "unsafe key '../x'" in lines[0]
    assert manifest_files(client, "names/rewrite") == {"a/b": entry(b"now a folder")}

    uri = f"s3://{BUCKET}/names/clash"
    first = write(tmp_path / "first", {"a": b"a file", "c.txt": b"c"})
    push(first, uri, url, **QUIET)
    push(write(tmp_path / "second", {"a/b": b"a folder now"}), uri, url, **QUIET)
    assert sorted(manifest_files(client, "names/clash")) == ["a/b", "c.txt"]  # "a" would clash: dropped
    pull(uri, tmp_path / "copy", url, **QUIET)
    assert snapshot(tmp_path / "copy").keys() == {"a", "a/b", "c.txt"}


# --------------------------------------------------------------------------- the results' cache


def test_exclude_cache_keeps_the_cache_out_of_both_directions(s3_creds, tmp_path, capsys):
    url, client = s3_creds
    results = write(tmp_path / "results", {"table.csv": b"a,b\n", "cache/ab/abcd.json": b"{}",
                                           "figures/f.png": b"png", "caches/kept.txt": b"not the cache"})
    uri = f"s3://{BUCKET}/results/exclude"
    assert cli.main(["s3", "push", str(results), uri, "--endpoint-url", url, "--quiet"]) == 0  # an older push
    assert "cache/ab/abcd.json" in manifest_files(client, "results/exclude")
    old_copy = tmp_path / "old-copy"
    assert cli.main(["s3", "pull", str(old_copy), uri, "--endpoint-url", url, "--quiet", "--exclude", "cache"]) == 0
    assert "left out 1 name(s) under the excluded 'cache'" in capsys.readouterr().out
    assert sorted(snapshot(old_copy)) == ["caches", "caches/kept.txt", "figures", "figures/f.png", "table.csv"]

    assert cli.main(["s3", "push", str(results), uri, "--endpoint-url", url, "--quiet", "--exclude", "cache"]) == 0
    assert "left out 1 name(s) under the excluded 'cache'" in capsys.readouterr().out
    assert sorted(manifest_files(client, "results/exclude")) == ["caches/kept.txt", "figures/f.png", "table.csv"]
    copy = tmp_path / "copy"
    assert cli.main(["s3", "pull", str(copy), uri, "--endpoint-url", url, "--quiet"]) == 0  # even without it
    assert not (copy / "cache").exists() and (copy / "table.csv").read_bytes() == b"a,b\n"


@pytest.mark.parametrize("name", ["../x", "", "/abs", "a\x00"])
def test_a_bad_exclude_is_one_line(s3_creds, tmp_path, capsys, name):
    url, _ = s3_creds
    code = cli.main(["s3", "pull", str(tmp_path / "t"), f"s3://{BUCKET}/x", "--endpoint-url", url, "--exclude", name])
    err = one_error_line(capsys, code)
    assert "is not a name inside the synced folder" in err and "--exclude cache" in err
    assert not (tmp_path / "t").exists()


def test_make_push_and_pull_results_leave_the_cache_out(s3_creds, tmp_path):
    url, client = s3_creds
    if not (ROOT / ".venv" / ".installed").exists():
        pytest.skip("make env has not been run")
    results = write(tmp_path / "results", {"clustering.csv": b"tag,ncut\n", "cache/12/1234.json": b"{}"})
    common = [f"S3_URI=s3://{BUCKET}/make-results", f"S3_ENDPOINT={url}", "PROFILE=quick"]
    run = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "push-results",
                          f"RESULTS_DIR={results}", *common], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert sorted(remote_keys(client, "make-results/results/quick")) == ["MANIFEST.json", "clustering.csv"]
    plant(client, "make-results/results/quick", [("clustering.csv", b"tag,ncut\n"), ("cache/12/1234.json", b"{}")])
    copy = tmp_path / "copy"
    run = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "pull-results",
                          f"RESULTS_DIR={copy}", *common], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert sorted(snapshot(copy)) == ["clustering.csv"]
