"""Error types shared across the stages, by what the user has to do (the CLI maps them to exit codes, ``docs/cli.md``)."""

from __future__ import annotations


class UnknownName(KeyError, ValueError):
    """A name that matches nothing (a probe, a label) or filters that match several where one is needed: bad input, so the CLI
    exits 2; the message lists what exists or the close matches. A ``KeyError`` for lookups, a ``ValueError`` for the CLI."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
