"""Where the project's bundled files live: the one place that knows the checkout's layout.

The bundled registry and leaderboard sit at the project root (beside the package, as a Hugging Face Space
lays them out); routing pools are package data; the data folder defaults to ``../shared/data`` beside the
project. Every default path in the library and the app comes from here.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_ROOT.parent
"""The checkout holding the package (an editable install, a Space, or a clone run in place)."""

BUNDLED_REGISTRY = PROJECT_ROOT / "registry"
BUNDLED_LEADERBOARD = PROJECT_ROOT / "leaderboard"
BUNDLED_ANALYSIS = PROJECT_ROOT / "analysis"
"""Precomputed ``analyze`` outputs for the bundled probes: ``analysis/<probe>/<heads|steer|transfer>/``."""
DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"
POOLS_DIR = PACKAGE_ROOT / "routing" / "pools"
DEFAULT_POOL = POOLS_DIR / "mmlu-pro-25.json"


def bundled_pools() -> list[str]:
    """Names of the routing pools shipped with the package (``--pool NAME``)."""
    return sorted(p.stem for p in POOLS_DIR.glob("*.json"))
