"""Writing result tables (CSV and XLSX) and figures atomically under ``results/``, and reading
them back with their columns checked.

Every string cell of every table written here is neutralised against formula injection (the
OWASP rule): a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
prefixed with a single quote, so a spreadsheet program shows it as text and never runs it. Tags
and profiles come from model folders that may have been shared, so a name is never trusted to
be harmless. Numbers are not strings and are written as they are (a negative z stays a number).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..core.rows import Row
from ..errors import NnClusteringError
from .files import atomic_path

#: The first characters that make a spreadsheet program read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> object:
    """``value`` with a leading ``'`` if it is a string a spreadsheet would run as a formula;
    anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def neutralised(df):
    """A copy of ``df`` with :func:`neutralise` applied to its string cells and column names."""
    import pandas as pd

    out = df.copy()
    for column in out.columns:
        dtype = out[column].dtype
        if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            out[column] = out[column].map(neutralise)
        elif isinstance(dtype, pd.CategoricalDtype):
            out[column] = out[column].cat.rename_categories(neutralise)
    out.columns = [neutralise(c) for c in out.columns]
    return out


def write_csv(df, path: str | Path) -> Path:
    """Write a DataFrame as CSV (no index, string cells neutralised), atomically; gzipped
    (reproducibly) for ``.csv.gz``."""
    import pandas as pd

    path = Path(path)
    compression = {"method": "gzip", "mtime": 0} if path.suffix == ".gz" else None
    safe = neutralised(df)
    # a carriage return inside a cell would end the row for a CSV reader: such a table (never one
    # of the project's own) is written with every text cell quoted
    text = [safe[c] for c in safe.columns if not pd.api.types.is_numeric_dtype(safe[c].dtype)]
    breaks = any(column.astype(str).str.contains("\r", regex=False).any() for column in text)
    with atomic_path(path) as tmp:
        safe.to_csv(tmp, index=False, float_format="%.8g", compression=compression,
                    quoting=csv.QUOTE_NONNUMERIC if breaks else csv.QUOTE_MINIMAL)
    return path


def _sheet_name(name: str) -> str:
    for bad in "[]:*?/\\":
        name = name.replace(bad, "_")
    return name[:31]


def write_xlsx(sheets: Mapping[str, object], path: str | Path) -> Path:
    """Write DataFrames as the sheets of one XLSX workbook (names cut to Excel's 31 characters),
    atomically, with the header row frozen and every string cell neutralised."""
    import pandas as pd

    path = Path(path)
    with atomic_path(path) as tmp, pd.ExcelWriter(tmp, engine="openpyxl") as writer:
        for name, df in sheets.items():
            sheet = _sheet_name(name)
            neutralised(df).to_excel(writer, sheet_name=sheet, index=False)
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


def read_table(path: Path, what: str, columns: Mapping[str, str] | None = None, fix: str | None = None):
    """A results table, or one clear error naming the target that makes it (``what``) or
    ``fix``: missing, not a file, unreadable, or (given ``columns``, ``{name: "number" | "bool" |
    "text"}``) lacking a column or holding a value of the wrong kind in one."""
    import pandas as pd

    path = Path(path)
    remake = fix or f"run `make {what}` again to rewrite it"
    if not path.exists():
        raise NnClusteringError(f"{path} is missing; {fix or f'run `make {what}` first'}")
    if not path.is_file():
        raise NnClusteringError(f"{path} is not a file (a folder or a device); remove it and {remake}")
    try:
        table = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise NnClusteringError(f"{path} is not a readable CSV table ({type(exc).__name__}); {remake}") from None
    for name, kind in (columns or {}).items():
        if name not in table.columns:
            raise NnClusteringError(f"{path} lacks the column {name!r}; {remake}")
        problem = _column_problem(table[name], kind)
        if problem:
            raise NnClusteringError(f"{path}: column {name!r} holds {problem}; {remake}")
    return table


def _column_problem(column, kind: str) -> str | None:
    """What is wrong with a column that should hold ``kind`` values, or None."""
    import pandas as pd

    if kind == "number":
        numbers = pd.to_numeric(column, errors="coerce")
        bad = column[numbers.isna() & column.notna()]
        return None if bad.empty else f"{str(bad.iloc[0])!r}, not a number"
    if kind == "bool":
        bad = column[~column.isin([True, False, "True", "False"])]
        return None if bad.empty else f"{str(bad.iloc[0])!r}, not True or False"
    return None
