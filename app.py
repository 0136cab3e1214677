"""Entry point for ``python app.py`` and for a Hugging Face Space (settings: docs/configuration.md)."""

import sys

from probes_hub.config import ConfigError, check_settings

try:
    check_settings()
except ConfigError as error:
    sys.exit(f"error: {error}")

from probes_hub.extract.model_packages import PackageUnavailable  # noqa: E402  (after the settings are known to parse)
from space_app.main import create_app, launch  # noqa: E402

try:
    demo, context = create_app()
except (PackageUnavailable, FileNotFoundError, ConfigError) as error:  # one line each: what is missing and how to fix it
    sys.exit(f"error: {error}")

if __name__ == "__main__":
    launch(demo)
