"""``docs/cli.md``, generated from the argument parser itself: every verb, its options and the exit codes.

``python -m probes_hub.cli_reference > docs/cli.md``; a test keeps the file equal to the parser, so the reference cannot drift.
"""

from __future__ import annotations

import argparse
import sys

from probes_hub.cli import EXIT_RUNTIME, EXIT_USAGE, build_parser


def reference_markdown() -> str:
    """One section per verb (and per ``analyze`` verb): what it does, then a table of its options."""
    parser = build_parser()
    lines = ["# Command line reference", "",
             "Generated from the parser (`python -m probes_hub.cli_reference > docs/cli.md`); `probes-hub VERB --help` says the same.", "",
             "## Exit codes", "", "| code | meaning |", "|---|---|", "| 0 | done |",
             f"| {EXIT_USAGE} | a usage error or bad input: a bad option or value, an invalid input file, a file or name that does not exist |",
             f"| {EXIT_RUNTIME} | the work failed: data drift, a refusal (a leaderboard that would lose rows), the model or the Hub unreachable; "
             "or a bug, whose traceback is saved to a file that the one-line message names (`--debug` shows it instead) |", "",
             "Global options: " + ", ".join(f"`{_flags(action)}` ({action.help})" for action in _options(parser)) + ".", ""]
    for name, sub in _verbs(parser):
        lines += _section(name, sub)
    return "\n".join(lines).rstrip() + "\n"


def _verbs(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    """Every (full verb name, its parser), nested verbs (``analyze heads``) after their parent."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((f"{prefix}{name}", sub))
                found += _verbs(sub, f"{prefix}{name} ")
    return found


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def _flags(action: argparse.Action) -> str:
    return ", ".join(action.option_strings)


def _section(name: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [f"## `probes-hub {name}`", "", " ".join((parser.description or "").split()), ""]
    positionals = [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]
    rows = [(f"`{a.dest}`", a.help or "") for a in positionals]
    rows += [(f"`{_flags(a)}`", _help(a)) for a in _options(parser)]
    if rows:
        lines += ["| argument | meaning |", "|---|---|", *(f"| {flag} | {text.replace('|', '/')} |" for flag, text in rows), ""]
    return lines


def _help(action: argparse.Action) -> str:
    text = " ".join((action.help or "").split()) % {"default": action.default}
    if action.choices and not isinstance(action.choices, dict) and "choose" not in text:
        text += f" (one of: {', '.join(map(str, action.choices))})"
    return text


if __name__ == "__main__":
    sys.stdout.write(reference_markdown())
