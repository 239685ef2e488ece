"""A make target that runs a notebook ends with the one ``error:`` line of the project's error
that stopped it, never a papermill traceback, and leaves no executed notebook behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nbformat
import pytest
from fake_models import write_fake_models

from nn_clustering import cli
from nn_clustering.experiments.notebook import parameter_value
from nn_clustering.training.catalog import write_index

pytestmark = pytest.mark.slow  # starts Jupyter kernels

ROOT = Path(__file__).resolve().parents[1]
#: The environment of a make typed at a prompt, not one run under `make test`'s own make.
TOP_LEVEL_MAKE = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}


def test_a_damaged_model_ends_make_mlp_clustering_with_its_error_line(tmp_path):
    models = write_fake_models(tmp_path / "models", tags=("MNIST",), instances=1)
    write_index(models)
    damaged = models / "MNIST" / "0" / "pruned.npz"
    data = bytearray(damaged.read_bytes())
    data[-30] ^= 1
    damaged.write_bytes(bytes(data))
    done = subprocess.run(["make", "--no-print-directory", "mlp-clustering", f"MODELS_DIR={models}",
                           f"RESULTS_DIR={tmp_path / 'results'}", "N_JOBS=1"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=TOP_LEVEL_MAKE)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("make: ***")  # make's own trailer follows the recipe's last line
    assert lines[-2].startswith(f"error: {damaged} does not match the SHA-256 recorded"), lines[-2]
    assert "Traceback" not in done.stdout + done.stderr and "PapermillExecutionError" not in done.stderr
    notebooks = tmp_path / "results" / "notebooks"
    assert not notebooks.exists() or not list(notebooks.iterdir())  # neither the notebook nor a partial one


def notebook(path: Path, *sources: str) -> Path:
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cells = [nbformat.v4.new_code_cell(s) for s in sources]
    cells[0].metadata["tags"] = ["parameters"]
    book.cells = cells
    nbformat.write(book, path)
    return path


def test_a_foreign_failure_keeps_the_failed_notebook_and_names_it(tmp_path, capsys):
    template = notebook(tmp_path / "t.ipynb", "WHICH = 'a'", "{'a': 1}[WHICH]")
    out = tmp_path / "out" / "t.ipynb"
    assert cli.main(["notebook", str(template), str(out), "-p", "WHICH", "b"]) == 2
    err = capsys.readouterr().err
    failed = tmp_path / "out" / "t.failed.ipynb"
    assert err.startswith("error: notebook t.ipynb stopped in cell 3 with KeyError") and str(failed) in err  # cell 2 is the injected parameters
    assert err.count("\n") == 1 and not out.exists() and failed.exists()
    assert "KeyError" in failed.read_text()  # the traceback is kept there
    assert cli.main(["notebook", str(template), str(out), "-p", "WHICH", "a"]) == 0
    assert out.exists() and not failed.exists()  # a good run replaces the failure
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["t.ipynb"]


def test_parameters_are_typed_as_papermill_types_them():
    assert [parameter_value(v) for v in ("True", "False", "None", "2", "0.5", "1e-3", "quick", "/a/b")] == [
        True, False, None, 2, 0.5, 1e-3, "quick", "/a/b"]
