"""The ``nn-clustering`` command line.

Sub-commands: ``datasets`` (build datasets) and ``cluster`` (cluster a model and run the
shuffle test). Every user-facing problem is printed as one ``error: ...`` line, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import NnClusteringError


def _cmd_datasets(args: argparse.Namespace) -> int:
    from . import datasets

    names = tuple(args.names) if args.names else datasets.ALL_DATASETS
    report = datasets.build_all(names, Path(args.out), seed=args.seed, force=args.force)
    print(
        f"datasets: {len(report.built)} built, {len(report.kept)} already present, "
        f"{len(report.skipped)} skipped; manifest in {Path(args.out) / 'MANIFEST'}"
    )
    explicitly_missing = [n for n in args.names if n in report.skipped]
    return 1 if explicitly_missing else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="nn-clustering", description="Is this trained neural network modular?"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="build datasets into datasets/<name>.npz and a MANIFEST")
    p.add_argument("names", nargs="*", help="datasets to build (default: all of SPEC section 1)")
    p.add_argument("--out", default="datasets", help="output folder (default: datasets)")
    p.add_argument("--seed", type=int, default=42, help="generator seed (default: 42)")
    p.add_argument("--force", action="store_true", help="rebuild files that already exist")
    p.set_defaults(func=_cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` and run the sub-command; user errors become one line."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NnClusteringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished files are kept, re-run to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
