"""Evaluation scripts: benchmarks that end with one ``RESULT key=value ...`` line.

Every script takes ``--quick`` (under 3 minutes on CPU) and ``--smoke`` (seconds: the same code path on tiny inputs, which
CI runs so that a benchmark cannot break unnoticed); :func:`add_size_options` adds both, :func:`sized` picks by them.
"""

from __future__ import annotations

import argparse
from typing import TypeVar

T = TypeVar("T")


def add_size_options(parser: argparse.ArgumentParser, *, quick: str, smoke: str) -> None:
    """``--quick`` and ``--smoke`` (one at most), each with what it shrinks."""
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help=quick)
    sizes.add_argument("--smoke", action="store_true", help=f"{smoke} (seconds: the same code path on tiny inputs; CI runs it)")


def sized(args: argparse.Namespace, *, full: T, quick: T, smoke: T) -> T:
    """The value for the size the command line asked for."""
    return smoke if args.smoke else quick if args.quick else full
