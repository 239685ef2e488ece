"""What a failed command shows: exactly one ``error:`` line (shared by the command-line tests)."""

from __future__ import annotations


def one_error_line(capsys, code: int) -> str:
    """The single ``error:`` line a failed command printed, asserting exit status 2, nothing
    else on either stream, no traceback and no raw control character."""
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    assert captured.err[:-1].isprintable(), captured.err  # no raw control character reaches the terminal
    return captured.err
