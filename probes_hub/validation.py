"""Every check on things loaded from outside: probe folders, configs, array shapes, hidden sizes, features.

Loading, upload, eval, the CLI and the app all call these; shape checks live nowhere else. Each error says
what was expected, what was found, and how to fix it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .constants import (
    ALLOWED_REPORT_SUFFIXES,
    CARD_NAME,
    CONFIG_NAME,
    MAX_PROBE_FILE_BYTES,
    REPORTS_DIR,
    SCHEMA_VERSION,
    WEIGHTS_NAME,
)

UNSAFE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib", ".ckpt", ".npy", ".npz", ".h5"}
REQUIRED_FIELDS = {
    "schema_version": int,
    "probe_type": str,
    "params": dict,
    "model": dict,
    "label": dict,
    "layer": (int, type(None)),
    "position": (int, type(None)),
    "calibration": (dict, type(None)),
    "selection": dict,
    "metrics": dict,
    "data": dict,
    "created_at": str,
    "library_version": str,
}
REQUIRED_SUBFIELDS = {
    "model": ("fingerprint", "display_id", "hidden_size", "n_layers", "prompt"),
    "label": ("name", "task", "range"),
    "data": ("dataset", "split_rule", "n_train", "n_test"),
}


class ProbeValidationError(ValueError):
    """A probe folder, config or array failed validation; the message says what and how to fix it."""


def validate_probe_dir(path: str | Path) -> dict:
    """Check a probe folder's files (safe formats only, bounded sizes) and return its validated config."""
    path = Path(path)
    if not path.is_dir():
        raise ProbeValidationError(f"Probe folder not found: {path}")
    for item in sorted(path.rglob("*")):
        rel = item.relative_to(path)
        if item.is_symlink():
            raise ProbeValidationError(f"{path}: '{rel}' is a symbolic link; probe folders must hold plain files.")
        if item.is_dir():
            if rel.as_posix() != REPORTS_DIR:
                raise ProbeValidationError(f"{path}: unexpected folder '{rel}' (only '{REPORTS_DIR}/' is allowed).")
            continue
        if item.suffix.lower() in UNSAFE_SUFFIXES:
            raise ProbeValidationError(
                f"{path}: '{rel}' is a {item.suffix} file. Probes must be safetensors + JSON; pickled or torch "
                "files are never loaded. Re-save the probe with probes_hub (save_pretrained)."
            )
        allowed = rel.as_posix() in {CONFIG_NAME, WEIGHTS_NAME, CARD_NAME} or (
            rel.parent.as_posix() == REPORTS_DIR and item.suffix in ALLOWED_REPORT_SUFFIXES
        )
        if not allowed:
            raise ProbeValidationError(
                f"{path}: unexpected file '{rel}'. Allowed: {CONFIG_NAME}, {WEIGHTS_NAME}, {CARD_NAME}, {REPORTS_DIR}/*.json|csv."
            )
        if item.stat().st_size > MAX_PROBE_FILE_BYTES:
            raise ProbeValidationError(f"{path}: '{rel}' is {item.stat().st_size} bytes; the limit is {MAX_PROBE_FILE_BYTES}.")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (path / name).is_file():
            raise ProbeValidationError(f"{path}: missing {name}; a probe folder needs {CONFIG_NAME} and {WEIGHTS_NAME}.")
    try:
        config = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProbeValidationError(f"{path / CONFIG_NAME} is not valid JSON: {error}") from error
    return validate_config(config, where=str(path / CONFIG_NAME))


def validate_config(config: object, *, where: str = CONFIG_NAME) -> dict:
    """Check the config's schema version, required fields and their types."""
    if not isinstance(config, dict):
        raise ProbeValidationError(f"{where}: expected a JSON object, found {type(config).__name__}.")
    missing = [key for key in REQUIRED_FIELDS if key not in config]
    if missing:
        raise ProbeValidationError(f"{where}: missing field(s) {missing}. Re-save the probe with this version of probes_hub.")
    for key, kind in REQUIRED_FIELDS.items():
        if not isinstance(config[key], kind) or isinstance(config[key], bool):
            raise ProbeValidationError(f"{where}: field '{key}' should be {kind}, found {config[key]!r}.")
    if config["schema_version"] != SCHEMA_VERSION:
        raise ProbeValidationError(f"{where}: schema_version {config['schema_version']} is not supported (expected {SCHEMA_VERSION}).")
    for key, subkeys in REQUIRED_SUBFIELDS.items():
        absent = [sub for sub in subkeys if sub not in config[key]]
        if absent:
            raise ProbeValidationError(f"{where}: '{key}' is missing {absent}.")
    if config["label"]["task"] not in ("graded", "binary"):
        raise ProbeValidationError(f"{where}: label.task must be 'graded' or 'binary', found {config['label']['task']!r}.")
    hidden = config["model"]["hidden_size"]
    if not isinstance(hidden, int) or hidden < 1:
        raise ProbeValidationError(f"{where}: model.hidden_size must be a positive integer, found {hidden!r}.")
    return config


def check_hidden_size(config: dict, hidden_size: int, *, where: str = "probe") -> None:
    """Reject a probe trained on a model with another hidden size."""
    expected = config["model"]["hidden_size"]
    if expected != hidden_size:
        raise ProbeValidationError(
            f"{where} was trained on activations of hidden size {expected} ({config['model']['display_id']}), "
            f"but this model has hidden size {hidden_size}. Use a probe trained for this model."
        )


def check_arrays(arrays: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]], *, where: str) -> None:
    """Each expected array must be present, finite and of the expected shape; no extra arrays."""
    extra = sorted(set(arrays) - set(expected))
    missing = sorted(set(expected) - set(arrays))
    if extra or missing:
        raise ProbeValidationError(f"{where}: weights file has unexpected arrays {extra} / lacks {missing}.")
    for name, shape in expected.items():
        if tuple(arrays[name].shape) != tuple(shape):
            raise ProbeValidationError(f"{where}: array '{name}' has shape {tuple(arrays[name].shape)}, expected {tuple(shape)}.")
        if not np.all(np.isfinite(arrays[name])):
            raise ProbeValidationError(f"{where}: array '{name}' holds NaN or infinite values.")


def check_labels(y: np.ndarray, task: str) -> np.ndarray:
    """Labels must be finite; binary labels must be 0/1 with both classes present."""
    y = np.asarray(y, dtype=float)
    if y.ndim != 1 or not np.all(np.isfinite(y)):
        raise ValueError("Labels must be a 1-D array of finite numbers (drop rows with missing labels first).")
    if task == "binary" and (set(np.unique(y)) != {0.0, 1.0}):
        raise ValueError(f"Binary labels must contain both 0 and 1, found {sorted(set(np.unique(y)))[:5]}.")
    return y


def check_feature_width(X: np.ndarray, n_features: int, name: str) -> None:
    """scikit-learn style feature-count check."""
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[-1] if X.ndim else 0} features, but {name} is expecting {n_features} features as input.")
