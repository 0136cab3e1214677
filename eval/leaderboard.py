"""Alias of ``probes-hub leaderboard`` (kept for scripts and schedules that call ``python -m eval.leaderboard``)."""

import sys

from probes_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["leaderboard", *sys.argv[1:]]))
