"""Did I reproduce it? A user's clustering table set beside the project's reference record.

The reference record (``results/reference/<profile>/``, committed) holds result tables this
project produced (:data:`REFERENCE_TABLES`: ``mlp-clustering.csv``, the successor paper's k = 12
baseline ``mlp-clustering-k12.csv`` and its factor table ``clustering-factors-k12.csv``) and
``PROVENANCE.json``: the profile, and per table the command that made it, its code versions and
date. :func:`compare_tables` groups both tables by tag, stage, shuffle method and k (and slice
norm, in the factor table), restricts the reference to the instances the user ran, and reports
per group the mean n-cut and mean z of each, their differences, the significance counts, and
whether each difference lies within the reference's instance-to-instance spread: the SD across
its instances, or, for a tag with one instance, the SD of its shuffled n-cuts (for n-cuts) and
1 (for z). Every table that both the record and the results hold is compared.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from ..core.rows import Row
from ..errors import NnClusteringError
from ..storage.files import write_text_atomic
from ..storage.provenance import code_version
from ..storage.tables import read_table, write_csv
from .paths import project_root

GROUP = ("tag", "stage", "method", "n_clusters")
#: The columns every compared table holds, and the kind of value in each.
COLUMNS = {"tag": "text", "stage": "text", "method": "text", "n_clusters": "number", "instance": "number",
           "ncut": "number", "z": "number", "shuffled_sd": "number", "significant": "bool"}


@dataclass(frozen=True)
class ReferenceTable:
    """A table a reference record may hold: the target that makes it, and what its groups are."""

    target: str
    group: tuple[str, ...] = GROUP

    @property
    def columns(self) -> dict[str, str]:
        """The columns it must hold to be compared."""
        return {**COLUMNS, **{c: "text" for c in self.group if c not in COLUMNS}}


REFERENCE_TABLES = {"mlp-clustering.csv": ReferenceTable("mlp-clustering"),
                    "mlp-clustering-k12.csv": ReferenceTable("mlp-clustering-k12"),
                    "clustering-factors-k12.csv": ReferenceTable("clustering-factors", (*GROUP, "norm"))}
PROVENANCE_FIELDS = ("command", "code_version", "date")
#: Differences below this are rounding (the CSVs keep 8 significant digits).
ROUNDING = 1e-6


@dataclass(frozen=True)
class ComparisonRow(Row):
    """One tag, stage, shuffle method and k: yours against the reference."""

    tag: str
    stage: str
    method: str
    n_clusters: int
    instances: int
    ncut: float
    reference_ncut: float
    ncut_difference: float
    ncut_spread: float
    ncut_within: bool
    z: float
    reference_z: float
    z_difference: float
    z_spread: float
    z_within: bool
    significant: int
    reference_significant: int
    norm: str = ""  # the CNN slice norm, in the factor table

    @property
    def reproduced(self) -> bool:
        """Both differences within the reference's spread (a borderline net may still change
        its significance; the counts are shown beside)."""
        return self.ncut_within and self.z_within


def reference_dir(profile: str, root: Path | None = None) -> Path:
    """``results/reference/<profile>`` of the project."""
    return (root or project_root()) / "results" / "reference" / profile


def _spread(values: np.ndarray, fallback: float) -> float:
    return float(np.std(values, ddof=1)) if len(values) >= 2 else float(fallback)


def _defined(values) -> np.ndarray:
    """The defined values as floats (z is undefined, NaN, where the shuffles' SD was 0), an
    infinite z held at +-1e300 so that means and spreads stay finite."""
    values = np.asarray(values, float)
    return np.clip(values[~np.isnan(values)], -1e300, 1e300)


def _finite_mean(values) -> float:
    """The mean of the defined values; NaN when none is."""
    defined = _defined(values)
    return float(np.mean(defined)) if defined.size else math.nan


def _z_agrees(z: float, ref_z: float, spread: float) -> bool:
    """z within the spread of the reference's, or both undefined."""
    if math.isnan(z) or math.isnan(ref_z):
        return math.isnan(z) and math.isnan(ref_z)
    return abs(z - ref_z) <= spread + ROUNDING


def _text_keys(table, group: Sequence[str]):
    """``table`` with its text group columns as strings, an empty cell as "" (not NaN, which
    groupby would drop)."""
    return table.assign(**{c: table[c].fillna("").astype(str) for c in group if COLUMNS.get(c, "text") == "text"})


def compare_tables(mine, reference, group: Sequence[str] = GROUP) -> tuple[list[ComparisonRow], list[str]]:
    """Per group of ``group`` (tag, stage, method, k, then any further text column): yours
    against the reference (see the module docstring); and the groups found in one table only,
    as lines."""
    group = list(group)
    mine, reference = _text_keys(mine, group), _text_keys(reference, group)
    notes, rows = [], []
    ref_groups = dict(list(reference.groupby(group, sort=False)))
    for key, g in mine.groupby(group, sort=False):
        ref_all = ref_groups.get(key)
        if ref_all is None:
            notes.append(f"{' '.join(map(str, key))}: not in the reference")
            continue
        ref = ref_all[ref_all["instance"].isin(g["instance"])]
        ref = ref if len(ref) else ref_all
        ncut, ref_ncut = float(g["ncut"].mean()), float(ref["ncut"].mean())
        z, ref_z = _finite_mean(g["z"]), _finite_mean(ref["z"])
        ncut_spread = _spread(ref_all["ncut"].to_numpy(), ref_all["shuffled_sd"].mean())
        z_spread = _spread(_defined(ref_all["z"]), 1.0)
        rows.append(ComparisonRow(
            *map(str, key[:3]), int(key[3]), len(g), ncut, ref_ncut, ncut - ref_ncut, ncut_spread,
            abs(ncut - ref_ncut) <= ncut_spread + ROUNDING, z, ref_z, z - ref_z, z_spread,
            _z_agrees(z, ref_z, z_spread),
            int(g["significant"].sum()), int(ref["significant"].sum()), *map(str, key[4:]),
        ))
    seen = {tuple(key) for key, _ in mine.groupby(group, sort=False)}
    notes += [f"{' '.join(map(str, key))}: in the reference, not in your results" for key in ref_groups if key not in seen]
    return rows, notes


def _tables_in(results_dir: Path) -> list[str]:
    """The reference tables that ``results_dir`` holds."""
    return [name for name in REFERENCE_TABLES if (results_dir / name).exists()]


def _comparison_line(r: ComparisonRow) -> str:
    verdict = "reproduced" if r.reproduced else "DIFFERS"
    if r.significant != r.reference_significant:
        verdict += " (significance count differs)"
    return (f"  {r.tag:16s} {r.stage:6s} {r.method:13s} k={r.n_clusters:<2d}{f' {r.norm}' if r.norm else ''}"
            f" n={r.instances:<2d} n-cut {r.ncut:.4f} vs {r.reference_ncut:.4f} ({r.ncut_difference:+.4f}, spread "
            f"{r.ncut_spread:.4f}{'' if r.ncut_within else ', OUTSIDE'})"
            f"  z {r.z:7.2f} vs {r.reference_z:7.2f} ({r.z_difference:+.2f}, spread {r.z_spread:.2f}"
            f"{'' if r.z_within else ', OUTSIDE'})"
            f"  significant {r.significant}/{r.instances} vs {r.reference_significant}/{r.instances}  {verdict}")


def compare_results(results_dir: str | Path, profile: str, reference: str | Path | None = None) -> tuple[str, bool]:
    """The printed comparison of ``results_dir`` with the profile's reference, and whether every
    group was reproduced."""
    results_dir = Path(results_dir)
    ref_dir = Path(reference) if reference else reference_dir(profile)
    provenance = read_provenance(ref_dir, profile)
    held, yours = provenance["tables"], _tables_in(results_dir)
    if not set(held) & set(yours):
        targets = ", ".join(f"`make {REFERENCE_TABLES[name].target} PROFILE={provenance['profile']}`" for name in held)
        raise NnClusteringError(f"{results_dir} holds none of the reference's tables ({', '.join(held)}); "
                                f"make one ({targets}) or compare with the matching --profile")
    lines = [f"{results_dir} against the reference {ref_dir} ({provenance['profile']} profile)"]
    ok, compared = True, 0
    for name, origin in held.items():
        spec = REFERENCE_TABLES[name]
        if name not in yours:
            lines.append(f"\n{name}: not in your results (`make {spec.target}` makes it), not compared")
            continue
        mine = read_table(results_dir / name, spec.target, spec.columns)
        theirs = read_table(ref_dir / name, spec.target, spec.columns, fix="restore the reference record from git")
        rows, notes = compare_tables(mine, theirs, spec.group)
        compared += len(rows)
        lines.append(f"\n{name} (reference: code {origin['code_version']}, {origin['date']}): n-cut and z, "
                     "yours - reference (spread: the reference's instance-to-instance SD)")
        for r in rows:
            ok &= r.reproduced
            lines.append(_comparison_line(r))
        lines += [f"  {note}" for note in notes]
    if not compared:
        raise NnClusteringError(f"nothing to compare: no group (tag, stage, method, k) of {results_dir} is in the "
                                f"reference {ref_dir}; run the profile's tags (`make mlp-clustering "
                                f"PROFILE={provenance['profile']}`) or compare with the matching --profile")
    lines.append("=> every group reproduced the reference" if ok else
                 "=> some groups differ from the reference beyond its instance-to-instance spread (DIFFERS)")
    return "\n".join(lines), ok


def read_provenance(ref_dir: Path, profile: str) -> dict:
    """A reference record's ``PROVENANCE.json`` (``{"profile": ..., "tables": {name: {command,
    code_version, date}}}``), checked to hold what a comparison prints; one clear error for a
    record that is missing or malformed."""
    path = Path(ref_dir) / "PROVENANCE.json"
    if not path.is_file():
        raise NnClusteringError(f"{ref_dir} holds no reference record (no PROVENANCE.json file); the committed "
                                f"ones are under {reference_dir(profile).parent}")
    try:
        provenance = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise NnClusteringError(f"{path} is not readable JSON ({type(exc).__name__}); restore it from git or "
                                "write the record again with --write-reference") from None
    tables = provenance.get("tables") if isinstance(provenance, dict) else None
    well_formed = (isinstance(tables, dict) and tables and set(tables) <= set(REFERENCE_TABLES)
                   and isinstance(provenance.get("profile"), str)
                   and all(isinstance(t, dict) and all(isinstance(t.get(f), str) for f in PROVENANCE_FIELDS)
                           for t in tables.values()))
    if not well_formed:
        raise NnClusteringError(f"{path} lacks the profile, or a table entry with {', '.join(PROVENANCE_FIELDS)}, "
                                f"or lists tables other than {', '.join(REFERENCE_TABLES)}; restore it from git or "
                                "write the record again with --write-reference")
    return provenance


def write_reference(results_dir: str | Path, profile: str, command: str, out: str | Path | None = None) -> Path:
    """Copy the reference tables that ``results_dir`` holds into the reference record, each with
    its provenance (the command that made it, its code versions, the date); the record's other
    tables are kept with theirs."""
    results_dir, out = Path(results_dir), Path(out) if out else reference_dir(profile)
    names = _tables_in(results_dir)
    if not names:
        raise NnClusteringError(f"{results_dir} holds none of {', '.join(REFERENCE_TABLES)}; make one first "
                                f"(`make {REFERENCE_TABLES[next(iter(REFERENCE_TABLES))].target}`)")
    kept = read_provenance(out, profile)["tables"] if (out / "PROVENANCE.json").is_file() else {}
    tables = {name: origin for name, origin in kept.items() if name not in names}
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        table = read_table(results_dir / name, REFERENCE_TABLES[name].target)
        write_csv(table, out / name)
        tables[name] = {"command": command,
                        "code_version": ", ".join(sorted(set(table["code_version"].astype(str)))) or code_version(),
                        "date": date.today().isoformat()}
    ordered = {name: tables[name] for name in REFERENCE_TABLES if name in tables}
    write_text_atomic(out / "PROVENANCE.json", json.dumps({"profile": profile, "tables": ordered}, indent=2) + "\n")
    return out
