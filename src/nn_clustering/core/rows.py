"""Result rows: dataclasses whose fields are the columns of the table they form.

A table's column names and order are written once, as the fields of its row class;
:meth:`Row.columns` reads them back and :meth:`Row.as_dict` gives one row's values (enums as
their strings), ready for ``pandas.DataFrame`` or JSON.
"""

from __future__ import annotations

from dataclasses import fields
from enum import Enum
from typing import Any


class Row:
    """Mixin for a dataclass that is one row of a result table."""

    @classmethod
    def columns(cls) -> list[str]:
        """The table's columns, in order: the dataclass fields."""
        return [f.name for f in fields(cls)]  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, Any]:
        """The row as ``{column: value}`` (enum members as their values)."""
        return {name: _plain(getattr(self, name)) for name in self.columns()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """A row from :meth:`as_dict`'s output (e.g. read back from the result cache)."""
        return cls(**{name: values[name] for name in cls.columns()})


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value
