"""Progress bars that never share a line with what is printed after them.

On a terminal a finished bar is erased (the cursor is back at the start of an empty line); in a
log file or a pipe, where erasing is only a carriage return, the bar's last state is kept and
ended with a newline, so the next line printed starts on a line of its own.
"""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(iterable: Any = None, *, enabled: bool = True, **options: Any):
    """A ``tqdm.auto`` bar (a widget in Jupyter) that is erased on a terminal and kept, ended by
    a newline, anywhere else; ``enabled=False`` shows nothing."""
    from tqdm.auto import tqdm

    stream = options.get("file") or sys.stderr
    interactive = bool(getattr(stream, "isatty", lambda: False)())
    return tqdm(iterable, disable=not enabled, leave=not interactive, **options)
