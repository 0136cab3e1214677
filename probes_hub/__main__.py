"""``python -m probes_hub``: the command-line interface."""

from probes_hub.cli import main

raise SystemExit(main())
