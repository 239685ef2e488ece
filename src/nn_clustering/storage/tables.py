"""Writing result tables (CSV and XLSX) and figures atomically under ``results/``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..core.rows import Row
from ..errors import NnClusteringError
from .files import atomic_path


def write_csv(df, path: str | Path) -> Path:
    """Write a DataFrame as CSV (no index), atomically; gzipped (reproducibly) for ``.csv.gz``."""
    path = Path(path)
    compression = {"method": "gzip", "mtime": 0} if path.suffix == ".gz" else None
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.8g", compression=compression)
    return path


def _sheet_name(name: str) -> str:
    for bad in "[]:*?/\\":
        name = name.replace(bad, "_")
    return name[:31]


def write_xlsx(sheets: Mapping[str, object], path: str | Path) -> Path:
    """Write DataFrames as the sheets of one XLSX workbook (names cut to Excel's 31 characters),
    atomically, with the header row frozen."""
    import pandas as pd

    path = Path(path)
    with atomic_path(path) as tmp, pd.ExcelWriter(tmp, engine="openpyxl") as writer:
        for name, df in sheets.items():
            sheet = _sheet_name(name)
            df.to_excel(writer, sheet_name=sheet, index=False)
            writer.sheets[sheet].freeze_panes = "A2"
    return path


def write_table(df, path: str | Path, xlsx: bool = True, sheet: str = "results") -> list[Path]:
    """Write ``path`` (.csv) and, if ``xlsx``, the same table as ``.xlsx`` beside it."""
    path = Path(path)
    out = [write_csv(df, path)]
    if xlsx:
        out.append(write_xlsx({sheet: df}, path.with_suffix(".xlsx")))
    return out


def save_figure(fig, stem: str | Path, formats: tuple[str, ...] = ("png", "svg"), dpi: int = 150) -> list[Path]:
    """Save a matplotlib figure as ``stem.png`` and ``stem.svg`` (atomically) and close it."""
    import matplotlib.pyplot as plt

    stem = Path(stem)
    out = []
    for fmt in formats:
        target = stem.with_suffix(f".{fmt}")
        with atomic_path(target) as tmp:
            # no creation date in the file: the same data gives the same bytes
            metadata = {"Date": None} if fmt in ("svg", "pdf") else None
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata)
        out.append(target)
    plt.close(fig)
    return out


def frame(rows: Sequence[Row], row_type: type[Row]):
    """A DataFrame with one line per row and the row type's fields as its columns, in order
    (an empty table still has them)."""
    import pandas as pd

    return pd.DataFrame([row.as_dict() for row in rows], columns=row_type.columns())


def read_table(path: Path, what: str):
    """A results table, or a clear error naming the target that makes it."""
    import pandas as pd

    if not path.exists():
        raise NnClusteringError(f"{path} is missing; run `make {what}` first")
    return pd.read_csv(path)
