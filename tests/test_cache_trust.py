"""The analysis cache trusts only entries this installation wrote: each carries an HMAC-SHA256
made with a per-installation secret key (``$NN_CLUSTERING_CONFIG_DIR/cache.key``). A forged
entry (with the right key and a correct self-hash, which anybody can compute) is recomputed."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nn_clustering.errors import NnClusteringError
from nn_clustering.experiments.clustering import ClusteringConfig, shuffle_test_of_file
from nn_clustering.storage.cache import CacheKeyError, ResultCache, cache_key, key_path

CONFIG = ClusteringConfig(n_clusters=2, n_shuffles=4, random_state=3)


@pytest.fixture
def config_dir(tmp_path, monkeypatch) -> Path:
    """A fresh, empty config folder for this test (so its key file is made here)."""
    folder = tmp_path / "config"
    monkeypatch.setenv("NN_CLUSTERING_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def net(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "net.npz"
    np.savez(path, rng.normal(size=(12, 8)), rng.normal(size=(8, 4)))
    return path


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def forge(entry: dict, value: dict, mac: str | None) -> dict:
    """``entry`` with ``value`` and a correct self-hash (what anybody can compute), and ``mac``
    (None: no MAC field at all)."""
    forged = {**entry, "value": value, "sha256": _sha(json.dumps(value, sort_keys=True))}
    forged.pop("mac", None)
    if mac is not None:
        forged["mac"] = mac
    return forged


def other_key_mac(entry: dict, value: dict) -> str:
    """A MAC of the right shape made with a key that is not the installation's (written with
    the standard library, independently of the code under test)."""
    message = json.dumps([entry["format"], entry["key"], json.dumps(value, sort_keys=True)]).encode()
    return hmac.new(b"\x01" * 32, message, hashlib.sha256).hexdigest()


def test_the_key_file_is_private_made_once_and_reused(config_dir, tmp_path):
    assert key_path() == config_dir / "cache.key"
    assert not config_dir.exists()
    cache = ResultCache(tmp_path / "cache")
    calls = []
    assert cache.get_or_compute({"a": 1}, lambda: calls.append(1) or {"v": 1}) == {"v": 1}
    key_file = config_dir / "cache.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    secret = key_file.read_bytes()
    assert len(secret) == 32 and secret != b"\x00" * 32
    entry = json.loads(next((tmp_path / "cache").rglob("*.json")).read_text())
    value_text = json.dumps({"v": 1}, sort_keys=True)
    expected = hmac.new(secret, json.dumps([entry["format"], entry["key"], value_text]).encode(),
                        hashlib.sha256).hexdigest()
    assert entry["mac"] == expected  # an HMAC-SHA256 with the file's key, checked independently

    again = ResultCache(tmp_path / "cache")  # another run: the same key, the entry is used
    assert again.get_or_compute({"a": 1}, lambda: calls.append(2) or {"v": 2}) == {"v": 1}
    assert calls == [1] and again.hits == 1 and again.rejected == 0
    assert key_file.read_bytes() == secret


def test_the_key_lives_outside_the_real_home_during_the_tests(private_config_dir):
    assert os.environ["NN_CLUSTERING_CONFIG_DIR"] == str(private_config_dir)
    assert key_path().parent == private_config_dir
    assert not key_path().is_relative_to(Path.home())


def test_the_default_key_path_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("NN_CLUSTERING_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert key_path() == tmp_path / "xdg" / "nn-clustering" / "cache.key"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert key_path() == tmp_path / "home" / ".config" / "nn-clustering" / "cache.key"


@pytest.mark.parametrize("how", ["no MAC", "a MAC of another key", "a MAC of another entry", "not hex"])
def test_a_forged_entry_with_a_correct_self_hash_is_recomputed(config_dir, tmp_path, how):
    lines: list[str] = []
    cache = ResultCache(tmp_path / "cache", log=lines.append)
    cache.get_or_compute({"a": 1}, lambda: {"ncut": 0.9})
    cache.get_or_compute({"a": 2}, lambda: {"ncut": 0.5})
    path = next((tmp_path / "cache").rglob(f"{cache_key({'a': 1})}.json"))
    good = json.loads(path.read_text())
    other = json.loads(next((tmp_path / "cache").rglob(f"{cache_key({'a': 2})}.json")).read_text())
    lie = {"ncut": 0.123}
    mac = {"no MAC": None, "a MAC of another key": other_key_mac(good, lie), "a MAC of another entry": other.get("mac", "0" * 64),
           "not hex": "zz" * 32}[how]
    path.write_text(json.dumps(forge(good, lie, mac)))
    calls = []
    value = cache.get_or_compute({"a": 1}, lambda: calls.append(1) or {"ncut": 0.9})
    assert value == {"ncut": 0.9} and calls == [1]
    assert cache.rejected == 1 and len(lines) == 1 and "not trusted" in lines[0] and "MAC" in lines[0]
    assert json.loads(path.read_text()) == good  # rewritten as this installation writes it


def test_a_forged_shuffle_test_is_recomputed_not_reported(config_dir, tmp_path, net):
    lines: list[str] = []
    cache = ResultCache(tmp_path / "cache", log=lines.append)
    reference = shuffle_test_of_file(net, CONFIG, "layer", cache, progress=False)
    path = next((tmp_path / "cache").rglob("*.json"))
    good = json.loads(path.read_text())
    lie = {**good["value"], "ncut": 0.123, "shuffle": {**good["value"]["shuffle"], "z": -99.0, "significant": True}}
    for mac in (None, other_key_mac(good, lie)):
        path.write_text(json.dumps(forge(good, lie, mac)))
        again = shuffle_test_of_file(net, CONFIG, "layer", cache, progress=False)
        assert again["ncut"] == reference["ncut"] != 0.123
        assert again["shuffle"]["z"] == reference["shuffle"]["z"] != -99.0
        assert json.loads(path.read_text()) == good
    assert cache.rejected == 2 and all("not trusted" in line for line in lines) and len(lines) == 2
    fresh = ResultCache(tmp_path / "cache")  # the rewritten entry is trusted again
    assert shuffle_test_of_file(net, CONFIG, "layer", fresh, progress=False) == reference and fresh.hits == 1


def test_an_entry_written_under_another_key_file_is_recomputed(tmp_path, monkeypatch, net):
    monkeypatch.setenv("NN_CLUSTERING_CONFIG_DIR", str(tmp_path / "machine-a"))
    mine = ResultCache(tmp_path / "cache")
    reference = shuffle_test_of_file(net, CONFIG, "layer", mine, progress=False)
    written_by_a = next((tmp_path / "cache").rglob("*.json")).read_text()

    monkeypatch.setenv("NN_CLUSTERING_CONFIG_DIR", str(tmp_path / "machine-b"))
    lines: list[str] = []
    theirs = ResultCache(tmp_path / "cache", log=lines.append)
    assert shuffle_test_of_file(net, CONFIG, "layer", theirs, progress=False) == reference
    assert theirs.rejected == 1 and theirs.hits == 0 and "does not match this installation's key" in lines[0]
    assert (tmp_path / "machine-a" / "cache.key").read_bytes() != (tmp_path / "machine-b" / "cache.key").read_bytes()
    assert next((tmp_path / "cache").rglob("*.json")).read_text() != written_by_a  # re-signed by b


RACE = """
import sys, time
from pathlib import Path
from nn_clustering.storage.cache import installation_key
start = float(sys.argv[2])
while time.time() < start:
    pass
print(installation_key(Path(sys.argv[1])).hex())
"""


def test_processes_creating_the_key_at_once_get_the_same_key(tmp_path):
    path = tmp_path / "config" / "cache.key"
    for attempt in range(3):  # each attempt races 6 processes on a fresh file
        path.unlink(missing_ok=True)
        start = time.time() + 1.5
        procs = [subprocess.Popen([sys.executable, "-c", RACE, str(path), str(start)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(6)]
        outputs = [p.communicate(timeout=60) for p in procs]
        assert all(p.returncode == 0 for p in procs), outputs
        keys = {out.strip() for out, _ in outputs}
        assert keys == {path.read_bytes().hex()}, (attempt, outputs)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_key_file_others_may_read_is_refused_with_the_fix(config_dir, tmp_path):
    cache = ResultCache(tmp_path / "cache")
    cache.put("ab" * 16, {"v": 1})
    key_file = config_dir / "cache.key"
    key_file.chmod(0o644)
    with pytest.raises(CacheKeyError, match=r"may be read or written by others \(mode 0644\).*chmod 600"):
        ResultCache(tmp_path / "cache").get("ab" * 16)
    key_file.chmod(0o600)
    assert ResultCache(tmp_path / "cache").get("ab" * 16) == {"v": 1}


@pytest.mark.parametrize("content", [b"", b"short", b"x" * 33])
def test_a_key_file_of_the_wrong_size_is_refused_not_replaced(config_dir, tmp_path, content):
    config_dir.mkdir()
    key_file = config_dir / "cache.key"
    key_file.write_bytes(content)
    key_file.chmod(0o600)
    started = time.monotonic()
    with pytest.raises(CacheKeyError, match=r"cache key .* holds \d+\+? bytes, not 32; delete it") as info:
        ResultCache(tmp_path / "cache").put("ab" * 16, {"v": 1})
    assert "\n" not in str(info.value) and time.monotonic() - started < 10
    assert key_file.read_bytes() == content and not (tmp_path / "cache").exists()
    key_file.unlink()  # the fix the message names
    ResultCache(tmp_path / "cache").put("ab" * 16, {"v": 1})
    assert len(key_file.read_bytes()) == 32


def test_an_unusable_config_folder_is_one_line(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("NN_CLUSTERING_CONFIG_DIR", str(blocker / "config"))
    with pytest.raises(CacheKeyError, match=r"cannot create or read the cache key .*NN_CLUSTERING_CONFIG_DIR"):
        ResultCache(tmp_path / "cache").put("ab" * 16, {"v": 1})
    monkeypatch.setenv("NN_CLUSTERING_CONFIG_DIR", str(tmp_path / "cache" / "keys"))
    with pytest.raises(CacheKeyError, match="inside the cache"):
        ResultCache(tmp_path / "cache").put("ab" * 16, {"v": 1})
    assert issubclass(CacheKeyError, NnClusteringError)


def test_a_cache_without_a_folder_needs_no_key(tmp_path, monkeypatch):
    monkeypatch.setenv("NN_CLUSTERING_CONFIG_DIR", str(tmp_path / "never-made"))
    cache = ResultCache(None)
    assert cache.get_or_compute({"a": 1}, lambda: {"v": 1}) == {"v": 1}
    assert not (tmp_path / "never-made").exists()

