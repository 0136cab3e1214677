"""Questions and labels: built-in datasets, local files, fixed splits, success labels from generation, and
benchmarks with real models' recorded outcomes (registered as built-in datasets when this package is imported)."""

from probes_hub.data import outcomes as _outcomes  # noqa: F401  (registers the outcomes datasets)
