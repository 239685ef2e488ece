"""Did I reproduce it? A user's clustering table set beside the project's reference record.

The reference record (``results/reference/<profile>/``, committed) holds the result tables this
project produced (``mlp-clustering.csv``; the paper record also ``mlp-clustering-k12.csv``,
the successor paper's k = 12 baseline) and ``PROVENANCE.json`` (command, profile, code version,
date, the tables it holds). :func:`compare_tables` groups both tables by tag, stage, shuffle method and k,
restricts the reference to the instances the user ran, and reports per group the mean n-cut and
mean z of each, their differences, the significance counts, and whether each difference lies
within the reference's instance-to-instance spread: the SD across its instances, or, for a tag
with one instance, the SD of its shuffled n-cuts (for n-cuts) and 1 (for z).
"""

from __future__ import annotations

import json
import math
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

#: The tables a reference record may hold, and the target that makes each; the first is in every
#: record and every comparison, the others are compared where both sides have them.
REFERENCE_TABLES = {"mlp-clustering.csv": "mlp-clustering", "mlp-clustering-k12.csv": "mlp-clustering-k12"}
REQUIRED_TABLE = "mlp-clustering.csv"
GROUP = ["tag", "stage", "method", "n_clusters"]
#: The columns a table must hold to be compared, and the kind of value in each.
COLUMNS = {"tag": "text", "stage": "text", "method": "text", "n_clusters": "number", "instance": "number",
           "ncut": "number", "z": "number", "shuffled_sd": "number", "significant": "bool"}
PROVENANCE_FIELDS = ("profile", "code_version", "date")
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


def compare_tables(mine, reference) -> tuple[list[ComparisonRow], list[str]]:
    """Per group of ``GROUP``: yours against the reference (see the module docstring); and the
    groups found in one table only, as lines."""
    notes, rows = [], []
    ref_groups = dict(list(reference.groupby(GROUP, sort=False)))
    for key, g in mine.groupby(GROUP, sort=False):
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
            int(g["significant"].sum()), int(ref["significant"].sum()),
        ))
    seen = {tuple(key) for key, _ in mine.groupby(GROUP, sort=False)}
    notes += [f"{' '.join(map(str, key))}: in the reference, not in your results" for key in ref_groups if key not in seen]
    return rows, notes


def _tables_in(results_dir: Path) -> list[str]:
    """The reference tables that ``results_dir`` has: the required one always (reading it
    names its target when it is missing), the others where present."""
    return [name for name in REFERENCE_TABLES if name == REQUIRED_TABLE or (results_dir / name).exists()]


def compare_results(results_dir: str | Path, profile: str, reference: str | Path | None = None) -> tuple[str, bool]:
    """The printed comparison of ``results_dir`` with the profile's reference, and whether every
    group was reproduced."""
    results_dir = Path(results_dir)
    ref_dir = Path(reference) if reference else reference_dir(profile)
    provenance = read_provenance(ref_dir, profile)
    lines = [f"{results_dir} against the reference {ref_dir} ({provenance['profile']} profile, code "
             f"{provenance['code_version']}, {provenance['date']})"]
    ok, compared = True, 0
    held, yours = provenance.get("tables", [REQUIRED_TABLE]), _tables_in(results_dir)
    for name, target in REFERENCE_TABLES.items():
        if name not in held:
            continue
        if name not in yours:
            lines.append(f"\n{name}: not in your results (`make {target}` makes it), not compared")
            continue
        mine = read_table(results_dir / name, target, COLUMNS)
        theirs = read_table(ref_dir / name, target, COLUMNS, fix="restore the reference record from git")
        rows, notes = compare_tables(mine, theirs)
        compared += len(rows)
        lines.append(f"\n{name}: n-cut and z, yours - reference (spread: the reference's instance-to-instance SD)")
        for r in rows:
            verdict = "reproduced" if r.reproduced else "DIFFERS"
            if r.significant != r.reference_significant:
                verdict += " (significance count differs)"
            ok &= r.reproduced
            lines.append(
                f"  {r.tag:16s} {r.stage:6s} {r.method:13s} k={r.n_clusters:<2d} n={r.instances:<2d}"
                f" n-cut {r.ncut:.4f} vs {r.reference_ncut:.4f} ({r.ncut_difference:+.4f}, spread {r.ncut_spread:.4f}"
                f"{'' if r.ncut_within else ', OUTSIDE'})"
                f"  z {r.z:7.2f} vs {r.reference_z:7.2f} ({r.z_difference:+.2f}, spread {r.z_spread:.2f}"
                f"{'' if r.z_within else ', OUTSIDE'})"
                f"  significant {r.significant}/{r.instances} vs {r.reference_significant}/{r.instances}  {verdict}"
            )
        lines += [f"  {note}" for note in notes]
    if not compared:
        raise NnClusteringError(f"nothing to compare: no tag, stage, method and k of {results_dir} is in the "
                                f"reference {ref_dir}; run the profile's tags (`make mlp-clustering "
                                f"PROFILE={provenance['profile']}`) or compare with the matching --profile")
    lines.append("=> every group reproduced the reference" if ok else
                 "=> some groups differ from the reference beyond its instance-to-instance spread (DIFFERS)")
    return "\n".join(lines), ok


def read_provenance(ref_dir: Path, profile: str) -> dict:
    """A reference record's ``PROVENANCE.json``, checked to hold what a comparison prints; one
    clear error for a record that is missing or malformed."""
    path = Path(ref_dir) / "PROVENANCE.json"
    if not path.is_file():
        raise NnClusteringError(f"{ref_dir} holds no reference record (no PROVENANCE.json file); the committed "
                                f"ones are under {reference_dir(profile).parent}")
    try:
        provenance = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise NnClusteringError(f"{path} is not readable JSON ({type(exc).__name__}); restore it from git or "
                                "write the record again with --write-reference") from None
    tables = provenance.get("tables", [REQUIRED_TABLE]) if isinstance(provenance, dict) else None
    if (not isinstance(provenance, dict) or not all(isinstance(provenance.get(f), str) for f in PROVENANCE_FIELDS)
            or not isinstance(tables, list) or not set(tables) <= set(REFERENCE_TABLES)):
        raise NnClusteringError(f"{path} lacks {', '.join(PROVENANCE_FIELDS)} or lists tables other than "
                                f"{', '.join(REFERENCE_TABLES)}; restore it from git or write the record again "
                                "with --write-reference")
    return provenance


def write_reference(results_dir: str | Path, profile: str, command: str, out: str | Path | None = None) -> Path:
    """Copy the reference tables of ``results_dir`` into the reference record with their
    provenance (the command that made them, profile, code version, date)."""
    results_dir, out = Path(results_dir), Path(out) if out else reference_dir(profile)
    out.mkdir(parents=True, exist_ok=True)
    versions, tables = set(), _tables_in(results_dir)
    for name, target in REFERENCE_TABLES.items():
        if name not in tables:
            (out / name).unlink(missing_ok=True)  # a record holds only what it lists
            continue
        table = read_table(results_dir / name, target)
        versions |= set(table["code_version"].astype(str))
        write_csv(table, out / name)
    provenance = {"profile": profile, "command": command, "code_version": ", ".join(sorted(versions)) or code_version(),
                  "date": date.today().isoformat(), "tables": tables}
    write_text_atomic(out / "PROVENANCE.json", json.dumps(provenance, indent=2) + "\n")
    return out
