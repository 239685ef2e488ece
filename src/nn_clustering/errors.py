"""Error types whose message is one line naming the problem and the fix.

Every error the command line reports to a user derives from :class:`NnClusteringError`; the
command line prints ``error: <message>`` and exits with status 2 instead of a traceback.
Text that came from a file (layer names, tags, keys) is passed through :func:`printable`
before it reaches the terminal, so a name cannot move the cursor, recolour the screen or start
a line of its own that looks like the program's.
"""

import unicodedata

#: Unicode categories escaped by :func:`printable`: controls (C0, DEL, C1: newlines, ESC) and
#: format characters (bidirectional overrides and other invisible reordering marks).
_UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp"})


def printable(text: object) -> str:
    """``str(text)`` with every control or format character written as its Python escape
    (``\\n``, ``\\x1b``, ``\\u202e``), so the result is one line that shows what it holds."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in _UNPRINTABLE else ch
        for ch in str(text)
    )


def quoted(value: object, limit: int = 120) -> str:
    """``repr(value)`` for a message: one line (``repr`` escapes line breaks and other control
    characters), shortened past ``limit`` characters with its closing quote kept; names and
    values read from a file or a bucket can be anything."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 4]}...{text[-1]}"


class NnClusteringError(Exception):
    """Base class: a user-facing problem with a one-line message that says how to fix it."""


class DatasetError(NnClusteringError):
    """A dataset file is missing, corrupt, has the wrong checksum, or the name is unknown."""


class DatasetUnavailable(DatasetError):
    """A raw dataset cannot be obtained here (no mirror copy and the download failed)."""


class GraphError(NnClusteringError):
    """Weights cannot be turned into a graph (NaN, shapes that do not chain, empty layers)."""


class ModelError(NnClusteringError):
    """A model file is missing, unreadable or of an unsupported kind."""


class ParameterError(NnClusteringError, ValueError):
    """A parameter is out of range or not one of its allowed values (raised by
    :mod:`nn_clustering.core.parameters`, the one place parameters are checked)."""


class ClusteringError(ParameterError):
    """Clustering parameters do not fit the graph (k too small or too large)."""
