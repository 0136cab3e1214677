"""Every check on things loaded from outside: probe folders, configs, array shapes, hidden sizes, features.

Loading, upload, eval, the CLI and the app all call these; shape checks live nowhere else. Each error says
what was expected, what was found, and how to fix it.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from pathlib import Path

import numpy as np

from probes_hub.constants import (
    ALLOWED_REPORT_SUFFIXES,
    CARD_NAME,
    CONFIG_NAME,
    MAX_PROBE_FILE_BYTES,
    REPORTS_DIR,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    WEIGHTS_NAME,
)
from probes_hub.metrics import Metric
from probes_hub.schema.records import TASKS, Calibration, DataInfo, LabelInfo, ModelInfo, PrecisionCheck, ProbeConfig, ProbeRecord, Selection

UNSAFE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib", ".ckpt", ".npy", ".npz", ".h5"}
REQUIRED_FIELDS = {
    "schema_version": int,
    "probe_type": str,
    "params": dict,
    "model": (dict, type(None)),
    "label": dict,
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


NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+/@-]{0,99}$")
"""Dataset and label names: plain identifiers (they are shown to users and become folder names)."""
MAX_JSON_DEPTH = 16
"""Deepest nesting a config may have; probes_hub writes at most 4 levels."""
FLOAT_DTYPES = ("float32", "float64")
"""The dtypes probes_hub writes for real-valued arrays; a probe type declares any other array's dtype (``array_dtypes``)."""


class ProbeValidationError(ValueError):
    """A probe folder, config or array failed validation; the message says what and how to fix it."""


def validate_probe_dir(path: str | Path) -> ProbeConfig:
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
                f"{path}: unexpected file '{rel}'. Allowed: {CONFIG_NAME}, {WEIGHTS_NAME}, {CARD_NAME}, {REPORTS_DIR}/*.json|csv|safetensors."
            )
        if item.stat().st_size > MAX_PROBE_FILE_BYTES:
            raise ProbeValidationError(f"{path}: '{rel}' is {item.stat().st_size} bytes; the limit is {MAX_PROBE_FILE_BYTES}.")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (path / name).is_file():
            raise ProbeValidationError(f"{path}: missing {name}; a probe folder needs {CONFIG_NAME} and {WEIGHTS_NAME}.")
    return validate_config(read_json(path / CONFIG_NAME), where=str(path / CONFIG_NAME))


def read_json(path: Path) -> object:
    """Parse a JSON file, naming the file, line and column of a syntax error and refusing nesting deeper than MAX_JSON_DEPTH: the one
    reader of JSON that comes from outside (probe configs, manifests, pools, leaderboards, analysis results)."""
    try:
        value = json.loads(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ProbeValidationError(f"{path} is not UTF-8 text (byte {error.start}): save it as UTF-8 JSON.") from error
    except json.JSONDecodeError as error:
        raise ProbeValidationError(f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}.") from error
    except RecursionError as error:
        raise ProbeValidationError(f"{path}: JSON nested too deeply (the limit is {MAX_JSON_DEPTH} levels).") from error
    if _depth(value) > MAX_JSON_DEPTH:
        raise ProbeValidationError(f"{path}: JSON nested {_depth(value)} levels deep; the limit is {MAX_JSON_DEPTH}.")
    return value


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def validate_config(config: object, *, where: str = CONFIG_NAME) -> ProbeConfig:
    """Check a parsed ``config.json`` (schema version, required fields, their types and meaning) and return it typed.

    Version-1 configs (the first format) are upgraded on the fly; their fields that moved into the weights
    file (the TF-IDF vocabulary) are handed over in :attr:`ProbeConfig.legacy`.
    """
    if not isinstance(config, dict):
        raise ProbeValidationError(f"{where}: expected a JSON object, found {type(config).__name__}.")
    version = config.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS or isinstance(version, bool):
        raise ProbeValidationError(f"{where}: schema_version {version!r} is not supported (this probes_hub reads {list(SUPPORTED_SCHEMA_VERSIONS)}). "
                                   "Upgrade probes_hub, or re-save the probe with this version.")
    missing = [key for key in REQUIRED_FIELDS if key not in config]
    if missing:
        raise ProbeValidationError(f"{where}: missing field(s) {missing}. Re-save the probe with this version of probes_hub.")
    for key, kind in REQUIRED_FIELDS.items():
        if not isinstance(config[key], kind) or isinstance(config[key], bool):
            raise ProbeValidationError(f"{where}: field '{key}' should be {_kind_name(kind)}, found {config[key]!r}.")
    legacy = {}
    if version == 1:
        config, legacy = _upgrade_v1(config, where)
    for key, subkeys in REQUIRED_SUBFIELDS.items():
        if config[key] is None:
            continue
        absent = [sub for sub in subkeys if sub not in config[key]]
        if absent:
            raise ProbeValidationError(f"{where}: '{key}' is missing {absent}.")
    _check_meaning(config, where)
    try:
        record = ProbeRecord(label=LabelInfo.from_dict(config["label"]), data=DataInfo.from_dict(config["data"]),
                             model=None if config["model"] is None else ModelInfo.from_dict(config["model"]),
                             metrics={key: Metric(**value) for key, value in config["metrics"].items()}, created_at=config["created_at"],
                             precision={str(dtype): PrecisionCheck.from_dict(check) for dtype, check in config.get("precision", {}).items()})
        return ProbeConfig(probe_type=config["probe_type"], params=config["params"], record=record, selection=Selection.from_dict(config["selection"]),
                           calibration=None if config["calibration"] is None else Calibration.from_dict(config["calibration"]),
                           library_version=config["library_version"], legacy=legacy)
    except (KeyError, TypeError, ValueError) as error:
        raise ProbeValidationError(f"{where}: a field has the wrong shape or type ({type(error).__name__}: {error}).") from error


def _upgrade_v1(config: dict, where: str) -> tuple[dict, dict]:
    """A version-1 config as version 2: layer and position live in ``selection``; the TF-IDF vocabulary moves out."""
    config = dict(config)
    selection = dict(config["selection"])
    for key in ("layer", "position"):
        value = config.pop(key, None)
        if value is not None:
            selection.setdefault(key, value)
    config["selection"] = selection
    legacy = {key: config.pop(key) for key in ("tfidf",) if key in config}
    if not isinstance(config["model"], dict):
        raise ProbeValidationError(f"{where}: field 'model' should be a JSON object in a version-1 config.")
    config["schema_version"] = SCHEMA_VERSION
    return config, legacy


def _check_meaning(config: dict, where: str) -> None:
    """Values that parse but make no sense: unknown tasks, empty ranges, negative counts, non-finite numbers."""
    label = config["label"]
    if label["task"] not in TASKS:
        raise ProbeValidationError(f"{where}: label.task must be one of {list(TASKS)}, found {label['task']!r}.")
    bounds = label["range"]
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(_is_number(v) for v in bounds) and bounds[0] < bounds[1]):
        raise ProbeValidationError(f"{where}: label.range must be [low, high], two finite numbers with low < high, found {bounds!r}.")
    for key, value in (("label.name", label["name"]), ("data.dataset", config["data"]["dataset"])):
        if not isinstance(value, str) or not NAME_PATTERN.match(value):
            raise ProbeValidationError(f"{where}: {key} must be a plain name (letters, digits and _.:+/@-, at most 100 characters), "
                                       f"found {str(value)[:120]!r}.")
    model = config["model"]
    if model is not None:
        for key in ("hidden_size", "n_layers"):
            if not isinstance(model[key], int) or isinstance(model[key], bool) or model[key] < 1:
                raise ProbeValidationError(f"{where}: model.{key} must be a positive integer, found {model[key]!r}.")
        if not isinstance(model["prompt"], dict):
            raise ProbeValidationError(f"{where}: model.prompt must be a JSON object, found {model['prompt']!r}.")
    for key in ("n_train", "n_test"):
        value = config["data"][key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ProbeValidationError(f"{where}: data.{key} must be a non-negative integer, found {value!r}.")
    limit = config["data"].get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ProbeValidationError(f"{where}: data.limit must be a positive integer or null, found {limit!r}.")
    for key in ("layer", "position"):
        value = config["selection"].get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ProbeValidationError(f"{where}: selection.{key} must be an integer or absent, found {value!r}.")
    if model is not None:
        _check_layers_and_positions(config["selection"], model, where)
    calibration = config["calibration"]
    if calibration is not None and not all(_is_number(calibration.get(k)) for k in ("a", "b")):
        raise ProbeValidationError(f"{where}: calibration.a and calibration.b must be finite numbers, found {calibration!r}.")
    for key, metric in config["metrics"].items():
        if not isinstance(metric, dict) or set(metric) != {"name", "value", "low", "high", "n"}:
            raise ProbeValidationError(f"{where}: metrics.{key} must have exactly name, value, low, high and n, found {metric!r}.")
    precision = config.get("precision", {})
    if not isinstance(precision, dict) or not all(isinstance(check, dict) and check.get("dtype") == dtype for dtype, check in precision.items()):
        raise ProbeValidationError(f"{where}: precision must map each precision to its check (as `probes-hub verify-dtype` writes it), "
                                   f"found {str(precision)[:200]!r}. Remove the field and run verify-dtype again.")


def _check_layers_and_positions(selection: dict, model: dict, where: str) -> None:
    """Layers the probe reads must exist in its model; its position must be one of the model's end-of-instruction positions."""
    layers = [selection.get("layer"), *(selection.get("layers_searched") or [])]
    bad = [layer for layer in layers if layer is not None and (not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < model["n_layers"])]
    if bad:
        raise ProbeValidationError(f"{where}: selection names layer(s) {bad[:5]}, but {model['display_id']} has layers 0 to {model['n_layers'] - 1}.")
    positions = model["prompt"].get("eoi_positions")
    position = selection.get("position")
    if position is not None and isinstance(positions, list) and position not in positions:
        raise ProbeValidationError(f"{where}: selection.position {position} is not one of the model's end-of-instruction positions {positions}.")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({dict: "a JSON object", str: "a string", int: "an integer", type(None): "null"}.get(k, k.__name__) for k in kinds)


def check_hidden_size(config: ProbeConfig, hidden_size: int, *, where: str = "probe") -> None:
    """Reject a probe trained on a model with another hidden size."""
    model = config.record.model
    if model is not None and model.hidden_size != hidden_size:
        raise ProbeValidationError(
            f"{where} was trained on activations of hidden size {model.hidden_size} ({model.display_id}), "
            f"but this model has hidden size {hidden_size}. Use a probe trained for this model."
        )


def check_arrays(arrays: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]], *, where: str, dtypes: dict[str, tuple[str, ...]] | None = None) -> None:
    """Each expected array must be present, finite, of the expected shape and dtype (``dtypes`` by name, else float32/float64);
    no extra arrays; scales (``*scale_``) strictly positive, since predictions divide by them."""
    extra = sorted(set(arrays) - set(expected))
    missing = sorted(set(expected) - set(arrays))
    if extra or missing:
        raise ProbeValidationError(f"{where}: weights file has unexpected arrays {extra} / lacks {missing}.")
    for name, shape in expected.items():
        if tuple(arrays[name].shape) != tuple(shape):
            raise ProbeValidationError(f"{where}: array '{name}' has shape {tuple(arrays[name].shape)}, expected {tuple(shape)}.")
        allowed = (dtypes or {}).get(name, FLOAT_DTYPES)
        if str(arrays[name].dtype) not in allowed:
            raise ProbeValidationError(f"{where}: array '{name}' has dtype {arrays[name].dtype}, expected {' or '.join(allowed)}.")
        if not np.all(np.isfinite(arrays[name])):
            raise ProbeValidationError(f"{where}: array '{name}' holds NaN or infinite values.")
        if name.endswith("scale_") and not np.all(arrays[name] > 0):
            raise ProbeValidationError(f"{where}: array '{name}' holds zero or negative scales; predictions would divide by them.")


INVISIBLE = {"Zs", "Zl", "Zp", "Cc", "Cf"}
"""Unicode categories that show nothing: spaces, controls and format characters (zero-width spaces and joiners)."""


def check_question(question: object, *, where: str = "The question") -> str:
    """The question stripped of surrounding whitespace; refuse non-text and text with nothing visible (e.g. only zero-width characters)."""
    if not isinstance(question, str):
        raise ValueError(f"{where} is not text ({type(question).__name__}); give each question as a string.")
    if all(unicodedata.category(ch) in INVISIBLE for ch in question):
        raise ValueError(f"{where} is empty{' (it holds only invisible characters)' if question else ''}: type a question first.")
    return question.strip()


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
