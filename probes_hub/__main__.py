"""``python -m probes_hub``: the command-line interface."""

from .cli import main

raise SystemExit(main())
