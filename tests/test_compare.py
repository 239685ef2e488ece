"""`nn-clustering compare`: a results folder beside the reference record, tag by tag."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from error_lines import one_error_line

from nn_clustering import cli
from nn_clustering.experiments.clustering import CLUSTERING_COLUMNS
from nn_clustering.experiments.compare import compare_tables, reference_dir
from nn_clustering.experiments.paths import ExperimentPaths, project_root
from nn_clustering.experiments.summary import summary

QUICK = reference_dir("quick")


def test_committed_quick_reference_is_the_readme_demo_summary():
    """The record is what `make demo` printed: its summary lines are the README's, number for number."""
    table = pd.read_csv(QUICK / "mlp-clustering.csv")
    assert list(table.columns) == CLUSTERING_COLUMNS
    provenance = json.loads((QUICK / "PROVENANCE.json").read_text())
    assert provenance["profile"] == "quick"
    assert {"command", "code_version", "date"} <= set(provenance["tables"]["mlp-clustering.csv"])
    readme = (project_root() / "README.md").read_text()
    lines = summary(ExperimentPaths(QUICK, QUICK)).splitlines()[1:]
    assert len(lines) == 9 and all(line in readme for line in lines)


def test_identical_results_reproduce_and_exit_0(tmp_path, capsys):
    shutil.copy(QUICK / "mlp-clustering.csv", tmp_path / "mlp-clustering.csv")
    assert cli.main(["compare", str(tmp_path), "--profile", "quick"]) == 0
    out = capsys.readouterr().out
    assert out.count("reproduced") == 17 and "DIFFERS" not in out


def test_a_tampered_table_reports_the_difference_and_exits_1(tmp_path, capsys):
    table = pd.read_csv(QUICK / "mlp-clustering.csv")
    hit = (table.tag == "FASHION") & (table.stage == "pruned") & (table.method == "layer")
    table.loc[hit, "ncut"] += 0.05
    table.to_csv(tmp_path / "mlp-clustering.csv", index=False)
    assert cli.main(["compare", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    [line] = [x for x in out.splitlines() if x.endswith("DIFFERS")]
    assert line.split()[:3] == ["FASHION", "pruned", "layer"] and "(+0.0500, spread 0.0191, OUTSIDE)" in line


def test_spread_is_the_instance_sd_and_only_your_instances_are_compared():
    rows = [{"tag": "T", "stage": "pruned", "method": "layer", "n_clusters": 4, "instance": i, "ncut": n,
             "z": z, "shuffled_sd": 0.01, "significant": s}
            for i, n, z, s in ((0, 2.0, -3.0, True), (1, 2.2, -1.0, False), (2, 2.1, -2.0, True))]
    reference = pd.DataFrame(rows)
    mine = reference[reference.instance == 1].assign(ncut=2.25)
    [row], notes = compare_tables(mine, reference)
    assert row.reference_ncut == 2.2 and row.ncut_difference == pytest.approx(0.05)
    assert row.ncut_spread == pytest.approx(0.1) and row.ncut_within  # SD of 2.0, 2.2, 2.1
    assert row.z_spread == pytest.approx(1.0) and row.significant == row.reference_significant == 0
    assert notes == []


def test_missing_reference_or_table_is_one_error_line(tmp_path, capsys):
    assert cli.main(["compare", str(tmp_path), "--reference", str(tmp_path / "none")]) == 2
    assert cli.main(["compare", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "holds no reference record" in err[0]
    assert "holds none of the reference's tables (mlp-clustering.csv, clustering-factors-k12.csv)" in err[1]
    assert "make mlp-clustering" in err[1] and "make clustering-factors" in err[1]


def test_the_k12_table_is_compared_where_both_have_it_and_written_with_the_record(tmp_path, capsys):
    """The paper record's k = 12 table: absent from your results it is a note (exit 0), present
    and tampered it differs (exit 1); write_reference records it when the results have it."""
    paper = reference_dir("paper")
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(paper / "mlp-clustering.csv", mine / "mlp-clustering.csv")
    assert cli.main(["compare", str(mine), "--profile", "paper"]) == 0
    assert "mlp-clustering-k12.csv: not in your results" in capsys.readouterr().out
    k12 = pd.read_csv(paper / "mlp-clustering-k12.csv")
    assert (k12["n_clusters"] == 12).all() and set(k12["tag"]) == {"MNIST", "FASHION", "MNIST+DROPOUT", "FASHION+DROPOUT"}
    hit = (k12.tag == "MNIST") & (k12.stage == "dense") & (k12.method == "layer")
    k12.loc[hit, "z"] -= 20.0
    k12.to_csv(mine / "mlp-clustering-k12.csv", index=False)
    assert cli.main(["compare", str(mine), "--profile", "paper"]) == 1
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.endswith("DIFFERS")]
    assert line.split()[:4] == ["MNIST", "dense", "layer", "k=12"] and "(-20.00, spread" in line

    record = tmp_path / "record"
    assert cli.main(["compare", str(mine), "--write-reference", "first", "--reference", str(record)]) == 0
    tables = json.loads((record / "PROVENANCE.json").read_text())["tables"]
    assert list(tables) == ["mlp-clustering.csv", "mlp-clustering-k12.csv"]
    assert tables["mlp-clustering-k12.csv"]["code_version"] == ", ".join(sorted(set(k12["code_version"])))
    # a results folder with one table updates that table only; the record keeps the other
    (mine / "mlp-clustering.csv").unlink()
    assert cli.main(["compare", str(mine), "--write-reference", "second", "--reference", str(record)]) == 0
    tables = json.loads((record / "PROVENANCE.json").read_text())["tables"]
    assert [t["command"] for t in tables.values()] == ["first", "second"]
    assert cli.main(["compare", str(mine), "--profile", "paper", "--reference", str(record)]) == 0
    out = capsys.readouterr().out
    assert "mlp-clustering.csv: not in your results" in out and "reproduced" in out


def test_the_factor_table_is_grouped_by_slice_norm_too(tmp_path, capsys):
    """In the factor table a CNN's two slice norms are two groups; MLP rows (no norm) one; a
    change to one norm's n-cut differs in that group only."""
    base = {"stage": "dense", "method": "layer", "n_clusters": 12, "shuffled_sd": 0.02, "significant": False,
            "code_version": "test"}
    rows = [{**base, "tag": "MNIST+L1REG", "norm": "", "instance": i, "ncut": 9.0 + 0.1 * i, "z": 3.0} for i in range(3)]
    rows += [{**base, "tag": "CNN-MNIST", "norm": norm, "instance": i, "ncut": n + 0.01 * i, "z": 1.0}
             for norm, n in (("l1", 10.7), ("induced-l1", 10.4)) for i in range(3)]
    reference = pd.DataFrame(rows)
    record, mine = tmp_path / "record", tmp_path / "mine"
    mine.mkdir()
    reference.to_csv(mine / "clustering-factors-k12.csv", index=False)
    assert cli.main(["compare", str(mine), "--write-reference", "test", "--reference", str(record)]) == 0
    changed = reference.assign(ncut=reference.ncut + 0.2 * (reference.norm == "induced-l1"))
    changed.to_csv(mine / "clustering-factors-k12.csv", index=False)
    assert cli.main(["compare", str(mine), "--reference", str(record)]) == 1
    lines = [x for x in capsys.readouterr().out.splitlines() if "k=12" in x]
    assert len(lines) == 3
    [differs] = [x for x in lines if x.endswith("DIFFERS")]
    assert differs.split()[:5] == ["CNN-MNIST", "dense", "layer", "k=12", "induced-l1"] and "(+0.2000," in differs


def test_results_sharing_no_group_with_the_reference_are_nothing_to_compare(tmp_path, capsys):
    table = pd.read_csv(QUICK / "mlp-clustering.csv").assign(n_clusters=7)  # no group at k = 7 in the record
    table.to_csv(tmp_path / "mlp-clustering.csv", index=False)
    err = one_error_line(capsys, cli.main(["compare", str(tmp_path), "--profile", "quick"]))
    assert "nothing to compare" in err and "reproduced" not in capsys.readouterr().out


def broken_reference(tmp_path, how: str):
    ref = tmp_path / "ref"
    shutil.copytree(QUICK, ref)
    table = pd.read_csv(ref / "mlp-clustering.csv")
    if how == "provenance not json":
        (ref / "PROVENANCE.json").write_text("{not json")
    elif how == "provenance a list":
        (ref / "PROVENANCE.json").write_text("[1, 2]")
    elif how == "provenance lacks fields":
        (ref / "PROVENANCE.json").write_text(json.dumps({"profile": "quick", "tables": {"mlp-clustering.csv": {}}}))
    elif how == "missing column":
        table.drop(columns="ncut").to_csv(ref / "mlp-clustering.csv", index=False)
    elif how == "text in ncut":
        table.astype({"ncut": object}).assign(ncut="two").to_csv(ref / "mlp-clustering.csv", index=False)
    elif how == "folder for csv":
        (ref / "mlp-clustering.csv").unlink()
        (ref / "mlp-clustering.csv").mkdir()
    elif how == "binary csv":
        (ref / "mlp-clustering.csv").write_bytes(b"\xff\xfe\x00garbage\x00" * 10)
    elif how == "no provenance":
        (ref / "PROVENANCE.json").unlink()
    return ref


@pytest.mark.parametrize(("how", "said"), [
    ("provenance not json", "is not readable JSON"), ("provenance a list", "lacks"),
    ("provenance lacks fields", "lacks"), ("missing column", "lacks the column 'ncut'"),
    ("text in ncut", "'two', not a number"), ("folder for csv", "is not a file"),
    ("binary csv", "not a readable CSV"), ("no provenance", "holds no reference record"),
])
def test_a_malformed_reference_record_is_one_error_line(tmp_path, capsys, how, said):
    shutil.copy(QUICK / "mlp-clustering.csv", tmp_path / "mlp-clustering.csv")
    ref = broken_reference(tmp_path, how)
    err = one_error_line(capsys, cli.main(["compare", str(tmp_path), "--reference", str(ref)]))
    assert said in err


def test_undefined_z_on_both_sides_agrees():
    rows = [{"tag": "T", "stage": "pruned", "method": "layer", "n_clusters": 4, "instance": 0, "ncut": 1.0,
             "z": float("nan"), "shuffled_sd": 0.0, "significant": False}]
    [row], _ = compare_tables(pd.DataFrame(rows), pd.DataFrame(rows))
    assert row.ncut_within and row.z_within and row.reproduced
    [row], _ = compare_tables(pd.DataFrame(rows).assign(z=-3.0), pd.DataFrame(rows))
    assert not row.z_within
