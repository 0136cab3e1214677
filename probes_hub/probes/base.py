"""The probe base class: scikit-learn style estimator plus safetensors + JSON persistence, written once.

Subclasses implement ``fit``, ``decision_function`` and two small hooks for their own arrays
(``_arrays`` / ``_load_arrays`` with ``_expected_shapes``); saving, loading, validation, calibration and
the model card live here. scikit-learn is imported only where probes are fitted, so loading probes to
predict (the app's start-up) does not pay for it.
"""

from __future__ import annotations

import inspect
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

import numpy as np
from safetensors.numpy import load_file, save_file
from scipy.special import expit

from ..cache import atomic_write_json, replace_folder
from ..constants import CARD_NAME, CONFIG_NAME, REPORTS_DIR, SCHEMA_VERSION, WEIGHTS_NAME
from ..features import Features
from ..validation import ProbeValidationError, check_arrays, check_hidden_size, validate_probe_dir

PROBE_TYPES: dict[str, type["Probe"]] = {}


class Probe:
    """Base estimator. ``predict`` gives the label-scale prediction (graded) or P(success) (binary).

    Fitted state ends in ``_``. ``info`` holds what the training pipeline records (model, label, data,
    metrics, selection) and goes to ``config.json`` next to the constructor parameters.
    """

    probe_type: ClassVar[str] = ""
    array_names: ClassVar[tuple[str, ...]] = ()
    tasks: ClassVar[tuple[str, ...]] = ("graded", "binary")
    """Label tasks this probe type can learn."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.probe_type:
            PROBE_TYPES[cls.probe_type] = cls

    def __init__(self, *, task: str = "graded"):
        self.task = task
        self.info: dict = {}
        self.calibration_: dict | None = None

    # -- scikit-learn conventions ------------------------------------------------------------------
    def get_params(self) -> dict:
        """Constructor arguments, as stored in ``config.json['params']``."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: _plain(getattr(self, name)) for name in names}

    def fit(self, features: Features, y: np.ndarray) -> "Probe":
        raise NotImplementedError

    def decision_function(self, features: Features) -> np.ndarray:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError(f"This {type(self).__name__} is not fitted yet; call fit() or from_pretrained() first.")

    @property
    def is_fitted(self) -> bool:
        return all(getattr(self, name, None) is not None for name in self.array_names)

    def predict(self, features: Features) -> np.ndarray:
        """Graded: predicted label. Binary: calibrated probability of success (raw sigmoid if uncalibrated)."""
        score = self.decision_function(features)
        return score if self.task == "graded" else self.calibrate(score)

    def predict_uncalibrated(self, features: Features) -> np.ndarray:
        """Binary: the probe's own probability before Platt calibration (for reporting ECE before/after)."""
        return expit(self.decision_function(features))

    def calibrate(self, score: np.ndarray) -> np.ndarray:
        """Map decision values to probabilities with the stored Platt parameters (sigmoid if none)."""
        if not self.calibration_:
            return expit(score)
        return expit(self.calibration_["a"] * score + self.calibration_["b"])

    def fit_calibration(self, features: Features, y: np.ndarray, *, note: str) -> "Probe":
        """Platt scaling on data not used to fit or select the probe (binary labels only).

        A negative slope would mean the probe ranks held-out questions backwards; rather than flip its
        ranking, the slope is clipped to 0 (every question gets the held-out success rate) and noted.
        """
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y).astype(int)
        score = self.decision_function(features)[:, None]
        platt = LogisticRegression(C=1e6, max_iter=1000).fit(score, y)
        a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
        self.calibration_ = {"method": "platt", "a": a, "b": b, "fitted_on": note, "n": int(len(y))}
        if a < 0:
            rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
            self.calibration_.update(a=0.0, b=float(np.log(rate / (1 - rate))), note=f"fitted slope {a:.3g} < 0 clipped to 0: no held-out signal")
        return self

    # -- config ------------------------------------------------------------------------------------
    @property
    def layer(self) -> int | None:
        return None

    @property
    def position(self) -> int | None:
        return None

    def to_config(self) -> dict:
        """The full ``config.json`` content for this fitted probe."""
        from .. import __version__

        config = {
            "schema_version": SCHEMA_VERSION,
            "probe_type": self.probe_type,
            "params": self.get_params(),
            "layer": self.layer,
            "position": self.position,
            "calibration": self.calibration_,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "library_version": __version__,
            **{k: {} for k in ("model", "label", "selection", "metrics", "data")},
        }
        config.update(self.info)
        config.update(self._fitted_config())
        return config

    def _fitted_config(self) -> dict:
        """Extra JSON fields of a fitted probe (e.g. TF-IDF vocabulary)."""
        return {}

    # -- persistence -------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | Path, *, reports: dict[str, str] | None = None) -> Path:
        """Write ``config.json``, ``model.safetensors``, ``README.md`` (+ ``reports/``) atomically.

        The folder is built in a temp folder beside the target and renamed into place, so a failed save
        leaves any previous probe there untouched.
        """
        from ..card import probe_card

        self._check_fitted()
        target = Path(save_directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            config = self.to_config()
            arrays = {k: np.ascontiguousarray(v) for k, v in self._arrays().items()}
            check_arrays(arrays, self._expected_shapes(config), where=f"{type(self).__name__} being saved to {target}")
            atomic_write_json(tmp / CONFIG_NAME, config)
            save_file(arrays, str(tmp / WEIGHTS_NAME))
            (tmp / CARD_NAME).write_text(probe_card(config), encoding="utf-8")
            for name, text in (reports or {}).items():
                (tmp / REPORTS_DIR).mkdir(exist_ok=True)
                (tmp / REPORTS_DIR / name).write_text(text, encoding="utf-8")
            validate_probe_dir(tmp)
            replace_folder(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def push_to_hub(self, registry: str | Path, *, folder_name: str | None = None, commit_message: str | None = None,
                    token: str | None = None, reports: dict[str, str] | None = None) -> str:
        """Save this probe and add it to a registry (Hub repo id or local folder); returns its name there."""
        from ..naming import probe_folder_name
        from ..registry import Registry

        name = folder_name or probe_folder_name(self.info["model"]["display_id"], self.info["data"]["dataset"], self.info["label"]["name"], self.probe_type)
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / name, reports=reports)
            return Registry(registry, token=token).push([folder], commit_message=commit_message)[0]

    @classmethod
    def from_pretrained(cls, path: str | Path, *, name: str | None = None, revision: str | None = None,
                        hidden_size: int | None = None, **filters) -> "Probe":
        """Load and validate a probe (schema, safe files, array shapes, optional hidden size).

        ``path`` is a probe folder, or a registry (local folder or Hub repo id) with ``name=`` or filters
        (``model``, ``dataset``, ``label``, ``probe_type``) that pick one probe.

        >>> probe = Probe.from_pretrained("runs/smollm2-135m-instruct--math500--level--linear")  # doctest: +SKIP
        >>> probe = Probe.from_pretrained("registry", dataset="math500", label="level", probe_type="linear")  # doctest: +SKIP
        """
        if name is not None or filters or not (Path(path) / CONFIG_NAME).is_file():
            from ..registry import Registry

            probe = Registry(path, revision=revision).load(name, hidden_size=hidden_size, **filters)
            if cls is not Probe and not isinstance(probe, cls):
                raise ProbeValidationError(f"{path}: the chosen probe is a {probe.probe_type} probe, not a {cls.probe_type} probe.")
            return probe
        config = validate_probe_dir(path)
        where = str(path)
        probe_cls = PROBE_TYPES.get(config["probe_type"])
        if probe_cls is None:
            raise ProbeValidationError(f"{where}: unknown probe_type {config['probe_type']!r}; known: {sorted(PROBE_TYPES)}.")
        if cls is not Probe and probe_cls is not cls:
            raise ProbeValidationError(f"{where} holds a {config['probe_type']} probe, not a {cls.probe_type} probe.")
        if hidden_size is not None:
            check_hidden_size(config, hidden_size, where=where)
        try:
            probe = probe_cls(**config["params"])
        except TypeError as error:
            raise ProbeValidationError(f"{where}: params do not match {probe_cls.__name__}: {error}") from error
        try:
            arrays = load_file(str(Path(path) / WEIGHTS_NAME))
        except Exception as error:  # safetensors raises its own error types for corrupt headers
            raise ProbeValidationError(f"{where}: {WEIGHTS_NAME} is not a readable safetensors file ({error}).") from error
        check_arrays(arrays, probe._expected_shapes(config), where=where)
        probe._load_arrays(arrays, config)
        probe.calibration_ = config["calibration"]
        probe.info = {k: config[k] for k in ("model", "label", "selection", "metrics", "data")}
        return probe

    # -- subclass hooks ----------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(getattr(self, name), dtype=np.float64) for name in self.array_names}

    def _load_arrays(self, arrays: dict[str, np.ndarray], config: dict) -> None:
        for name, value in arrays.items():
            setattr(self, name, value)

    def _expected_shapes(self, config: dict) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError


def load_probe(path: str | Path, *, hidden_size: int | None = None) -> Probe:
    """Load any probe folder (alias of :meth:`Probe.from_pretrained`)."""
    return Probe.from_pretrained(path, hidden_size=hidden_size)


def read_config(path: str | Path) -> dict:
    """Validated ``config.json`` of a probe folder without loading weights."""
    return validate_probe_dir(path)


def _plain(value):
    """Constructor values as JSON-friendly plain types."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value
