"""Running an analysis notebook the way ``make`` does: papermill, into a temporary file that is
renamed into place only when every cell ran.

When a cell stops on one of the project's own errors (a model file that fails its recorded
SHA-256, a missing table, ...), the run ends with that error's one line, not a traceback: the
message already says what is wrong and how to fix it. Any other failure keeps the executed
notebook beside the target as ``<name>.failed.ipynb``, with the full traceback in the cell that
failed, and the line names it.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import NnClusteringError
from ..storage.files import atomic_path

FAILED_SUFFIX = ".failed.ipynb"


class NotebookError(NnClusteringError):
    """A notebook stopped before its last cell."""


def parameter_value(text: str) -> bool | int | float | str | None:
    """A ``-p NAME VALUE`` value as papermill's command line reads it: ``True``, ``False``,
    ``None``, an int, a float, else the text."""
    constants = {"True": True, "False": False, "None": None}
    if text in constants:
        return constants[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def project_error_names() -> set[str]:
    """The class names of every error of the project (what a failed cell's ``ename`` is)."""
    found, todo = set(), [NnClusteringError]
    while todo:
        cls = todo.pop()
        found.add(cls.__name__)
        todo += cls.__subclasses__()
    return found


def run_notebook(template: Path, output: Path, parameters: Mapping[str, object], cwd: Path | None = None,
                 log_output: bool = True) -> Path:
    """Execute ``template`` with ``parameters`` into ``output`` (atomically); a
    :class:`NotebookError` with one line when a cell fails (see the module docstring)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    template, output = Path(template), Path(output)
    if not template.is_file():
        raise NotebookError(f"{template} is not a notebook template; the templates are in notebooks/")
    failed = output.with_name(output.name.removesuffix(".ipynb") + FAILED_SUFFIX)
    try:
        with atomic_path(output) as tmp, warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The specified file .* does not end in", UserWarning)  # the .part name
            try:
                papermill.execute_notebook(str(template), str(tmp), parameters=dict(parameters),
                                           cwd=str(cwd) if cwd else None, log_output=log_output,
                                           progress_bar=False, kernel_name="python3")
            except PapermillExecutionError:
                shutil.copyfile(tmp, failed)
                raise
    except PapermillExecutionError as exc:
        message = " ".join(str(exc.evalue).split())
        if exc.ename in project_error_names():
            failed.unlink(missing_ok=True)
            raise NotebookError(message) from None
        raise NotebookError(f"notebook {template.name} stopped in cell {exc.exec_count} with {exc.ename}: "
                            f"{message[:300]}; the executed notebook with its traceback is {failed}") from None
    failed.unlink(missing_ok=True)
    return output


def parse_parameters(pairs: Sequence[Sequence[str]]) -> dict[str, object]:
    """``[[NAME, VALUE], ...]`` from ``-p NAME VALUE`` options as a parameters dict."""
    return {name: parameter_value(value) for name, value in pairs}
