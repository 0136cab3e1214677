"""The probe base class: scikit-learn style estimator plus safetensors + JSON persistence, written once.

Subclasses implement ``fit``, ``decision_function`` and small hooks for their own arrays (``_arrays`` /
``_load_arrays`` with ``_expected_shapes``), and declare their facts as class attributes (what they read,
whether they are a baseline, whether they are bound to one model). Saving, loading, validation,
calibration and the model card live here. scikit-learn is imported only where probes are fitted, so loading
probes to predict (the app's start-up) does not pay for it.
"""

from __future__ import annotations

import copy
import inspect
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
from safetensors.numpy import load_file, save_file
from scipy.special import expit

from probes_hub.atomic import atomic_folder, atomic_write_bytes, atomic_write_json
from probes_hub.constants import CARD_NAME, CONFIG_NAME, LIBRARY_VERSION, REPORTS_DIR, WEIGHTS_NAME
from probes_hub.extract.features import Features
from probes_hub.extract.precision import fingerprint_dtype, weights_fingerprint
from probes_hub.schema.naming import is_hub_id
from probes_hub.schema.records import BINARY, GRADED, Calibration, DataInfo, LabelInfo, ProbeConfig, ProbeRecord, Selection
from probes_hub.schema.validation import ProbeValidationError, check_arrays, check_hidden_size, check_labels, validate_probe_dir

PROBE_TYPES: dict[str, type[Probe]] = {}
"""Every probe type by name, filled as the types are defined (``probes_hub.probes`` imports them all)."""


class ModelIdentity(Protocol):
    """What :func:`probe_matches` compares: a feature source, or anything with a fingerprint."""

    fingerprint: str


class Probe:
    """Base estimator. ``predict`` gives the label-scale prediction (graded) or P(success) (binary).

    Fitted state ends in ``_``: ``record_`` (:class:`~probes_hub.schema.records.ProbeRecord`: model, label,
    data, metrics), ``selection_`` and ``calibration_`` go to ``config.json`` next to the constructor
    parameters; the arrays go to ``model.safetensors``.
    """

    probe_type: ClassVar[str] = ""
    array_names: ClassVar[tuple[str, ...]] = ()
    tasks: ClassVar[tuple[str, ...]] = (GRADED, BINARY)
    """Label tasks this probe type can learn."""
    reads_activations: ClassVar[bool] = False
    """True when the probe reads the model's activations (so extraction must run for it)."""
    reads_tokens: ClassVar[bool] = False
    """True when the probe reads every prompt token's activations at one layer (``Features.tokens``), not only the EOI ones."""
    is_baseline: ClassVar[bool] = False
    """True for the text-only references every activation probe is compared with (always trained beside them)."""
    model_bound: ClassVar[bool] = True
    """True when the probe's input depends on the model (activations or its tokenizer): it applies to that model only."""
    preference: ClassVar[int] = 50
    """Where several probe types answer the same label, the app and ``probes_hub.predict`` read the lowest."""
    display_name: ClassVar[str] = ""
    """How tables and charts name the type's row when it is a baseline (e.g. "prompt length")."""
    array_dtypes: ClassVar[dict[str, tuple[str, ...]]] = {}
    """Dtypes of the arrays that are not real-valued (float32/float64), by name: checked on load and save."""
    joint_fit: ClassVar[bool] = False
    """True when ``fit_many`` learns all of a dataset's labels together, each known on its own rows (NaN elsewhere),
    and the probes are calibrated together (:func:`probes_hub.probes.shared.calibrate_jointly`)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.probe_type:
            PROBE_TYPES[cls.probe_type] = cls

    def __init__(self, *, task: str = GRADED):
        self.task = task
        self.record_: ProbeRecord | None = None
        self.selection_: Selection = Selection()
        self.calibration_: Calibration | None = None

    # -- scikit-learn conventions ------------------------------------------------------------------
    def get_params(self) -> dict:
        """Constructor arguments, as stored in ``config.json['params']``."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: _plain(getattr(self, name)) for name in names}

    @classmethod
    def for_training(cls, task: str, **settings) -> Probe:
        """A probe of this type for ``task``, given the training settings its constructor accepts (e.g. cv_folds, seed)."""
        accepted = inspect.signature(cls.__init__).parameters
        return cls(task=task, **{k: v for k, v in settings.items() if k in accepted})

    def fit(self, features: Features, y: np.ndarray) -> Probe:
        raise NotImplementedError

    def fit_many(self, features: Features, Y: np.ndarray) -> list[Probe]:
        """One fitted copy of this probe per column of ``Y [N, T]``; probe types that share work across labels override it."""
        return [copy.deepcopy(self).fit(features, Y[:, t]) for t in range(Y.shape[1])]

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
        return score if self.task == GRADED else self.calibrate(score)

    def predict_uncalibrated(self, features: Features) -> np.ndarray:
        """Binary: the probe's own probability before Platt calibration (for reporting ECE before/after)."""
        return expit(self.decision_function(features))

    def calibrate(self, score: np.ndarray) -> np.ndarray:
        """Map decision values to probabilities with the stored Platt parameters (sigmoid if none)."""
        if self.calibration_ is None:
            return expit(score)
        return expit(self.calibration_.a * score + self.calibration_.b)

    def fit_calibration(self, features: Features, y: np.ndarray, *, note: str) -> Probe:
        """Platt scaling on data not used to fit or select the probe (binary labels only).

        A negative slope would mean the probe ranks held-out questions backwards; rather than flip its
        ranking, the slope is clipped to 0 (every question gets the held-out success rate) and noted.
        """
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y).astype(int)
        score = self.decision_function(features)[:, None]
        platt = LogisticRegression(C=1e6, max_iter=1000).fit(score, y)
        a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
        self.calibration_ = Calibration(a=a, b=b, fitted_on=note, n=int(len(y)))
        if a < 0:
            rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
            self.calibration_ = replace(self.calibration_, a=0.0, b=float(np.log(rate / (1 - rate))),
                                        note=f"fitted slope {a:.3g} < 0 clipped to 0: no held-out signal")
        return self

    def _record_fit(self, features: Features, y: np.ndarray) -> None:
        """What a fit knows about itself: the features' model, the label's name, task and range, the row count.

        The training pipeline replaces the label and data facts with the dataset's, and adds test metrics.
        """
        values = check_labels(y, self.task)
        name = str(getattr(y, "name", None) or "label")
        self.record_ = ProbeRecord(label=LabelInfo(name, self.task, (float(values.min()), float(values.max()))),
                                   data=DataInfo(dataset="custom", split_rule="rows given to fit()", n_train=len(values), n_test=0, n_fit=len(values)),
                                   model=features.model)

    # -- facts -------------------------------------------------------------------------------------
    @property
    def layer(self) -> int | None:
        return self.selection_.layer

    @property
    def position(self) -> int | None:
        return self.selection_.position

    @property
    def fingerprint(self) -> str | None:
        """Fingerprint of the model this probe reads (None when fitted on bare text)."""
        return None if self.record_ is None or self.record_.model is None else self.record_.model.fingerprint

    def layers_needed(self) -> list[int]:
        """Activation layers ``predict`` reads (none for text-only probes)."""
        return [] if self.layer is None else [self.layer]

    def token_layer(self) -> int | None:
        """The layer whose every-token activations ``predict`` reads (attention probes); None for the others."""
        return None

    def in_distribution(self, features: Features) -> np.ndarray:
        """How typical each question is of the probe's training questions, 0-1; NaN for probes that keep no summary."""
        return np.full(len(features), np.nan)

    def layerwise(self, features: Features) -> tuple[list[int], np.ndarray] | None:
        """A reading per layer ``(layers, [N, L])`` for probes that keep one; None otherwise."""
        return None

    def sweep_report(self, test_features: Features, y_test: np.ndarray) -> list[dict] | None:
        """Rows of a per-cell selection table (``reports/sweep.csv``) for probe types that sweep cells; None otherwise."""
        return None

    def to_config(self) -> ProbeConfig:
        """The typed ``config.json`` content for this fitted probe."""
        if self.record_ is None:
            raise RuntimeError(f"This {type(self).__name__} has no record; fit it first.")
        record = self.record_ if self.record_.created_at else replace(self.record_, created_at=datetime.now(UTC).isoformat(timespec="seconds"))
        return ProbeConfig(probe_type=self.probe_type, params=self.get_params(), record=record, selection=self.selection_,
                           calibration=self.calibration_, library_version=LIBRARY_VERSION)

    # -- persistence -------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | Path, *, reports: dict[str, str | bytes] | None = None) -> Path:
        """Write ``config.json``, ``model.safetensors``, ``README.md`` (+ ``reports/``) atomically.

        The folder is built in a temp folder beside the target and renamed into place, so a failed save
        leaves any previous probe there untouched.

        >>> probe = LinearProbe().fit(features, y)  # doctest: +SKIP
        >>> probe.save_pretrained("runs/my-probe")  # doctest: +SKIP
        """
        from probes_hub.schema.card import probe_card

        self._check_fitted()
        config = self.to_config()
        target = Path(save_directory)
        if self.model_bound and config.record.model is None:
            raise ValueError(f"{type(self).__name__} reads one model's activations or tokens, but it was fitted on Features that name no model. "
                             "Fit it on features from ModelFeatures(load_model(...)).features(...), which record the model.")
        arrays = {k: np.ascontiguousarray(v) for k, v in self._arrays().items()}
        check_arrays(arrays, self._expected_shapes(config, arrays), where=f"{type(self).__name__} being saved to {target}", dtypes=self.array_dtypes)
        with atomic_folder(target) as tmp:
            atomic_write_json(tmp / CONFIG_NAME, config.to_dict())
            save_file(arrays, str(tmp / WEIGHTS_NAME))
            (tmp / CARD_NAME).write_text(probe_card(config), encoding="utf-8")
            for name, content in (reports or {}).items():
                atomic_write_bytes(tmp / REPORTS_DIR / name, content if isinstance(content, bytes) else content.encode("utf-8"))
            validate_probe_dir(tmp)
        self.record_ = config.record
        return target

    def push_to_hub(self, registry: str | Path, *, folder_name: str | None = None, commit_message: str | None = None,
                    token: str | None = None, reports: dict[str, str | bytes] | None = None) -> str:
        """Save this probe and add it to a registry (Hub repo id or local folder); returns its name there."""
        from probes_hub.hub.storage import RegistryStore
        from probes_hub.schema.naming import probe_folder_name

        self._check_fitted()
        record = self.record_
        model = record.model.display_id if record.model else "text"
        name = folder_name or probe_folder_name(model, record.data.dataset, record.label.name, self.probe_type)
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / name, reports=reports)
            return RegistryStore(registry, token=token, create=True).push([folder], commit_message=commit_message)[0]

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | Path, *, subfolder: str | None = None, revision: str | None = None,
                        token: str | None = None, hidden_size: int | None = None) -> Probe:
        """Load and validate one probe folder: a local path, or a Hub repo id (with ``subfolder`` and ``revision``).

        Validation covers the schema, safe files only, array shapes and, given ``hidden_size``, the model's
        hidden size. To pick a probe from a registry by name or filters, use ``Registry(...).load(...)``.

        >>> probe = Probe.from_pretrained("runs/smollm2-135m-instruct--math500--level--linear")  # doctest: +SKIP
        >>> probe = Probe.from_pretrained("org/difficulty-probes", subfolder="smollm2-135m-instruct--math500--level--linear")  # doctest: +SKIP
        """
        folder = _resolve_probe_folder(path_or_repo_id, subfolder=subfolder, revision=revision, token=token)
        config = validate_probe_dir(folder)
        where = str(folder)
        probe_cls = PROBE_TYPES.get(config.probe_type)
        if probe_cls is None:
            raise ProbeValidationError(f"{where}: unknown probe_type {config.probe_type!r}; known: {sorted(PROBE_TYPES)}.")
        if cls is not Probe and probe_cls is not cls:
            raise ProbeValidationError(f"{where} holds a {config.probe_type} probe, not a {cls.probe_type} probe.")
        if probe_cls.model_bound and config.record.model is None:
            raise ProbeValidationError(f"{where}: a {config.probe_type} probe must name the model it reads ('model' is null).")
        if hidden_size is not None:
            check_hidden_size(config, hidden_size, where=where)
        _check_params(probe_cls, config.params, where)
        try:
            probe = probe_cls(**config.params)
        except TypeError as error:
            raise ProbeValidationError(f"{where}: params do not match {probe_cls.__name__}: {error}") from error
        if probe.task != config.record.label.task:
            raise ProbeValidationError(f"{where}: params.task {probe.task!r} disagrees with label.task {config.record.label.task!r}.")
        try:
            arrays = load_file(str(folder / WEIGHTS_NAME))
        except Exception as error:  # safetensors raises its own error types for corrupt headers
            raise ProbeValidationError(f"{where}: {WEIGHTS_NAME} is not a readable safetensors file ({error}).") from error
        arrays = probe._upgrade_arrays(arrays, config)
        check_arrays(arrays, probe._expected_shapes(config, arrays), where=where, dtypes=probe.array_dtypes)
        probe.record_, probe.selection_, probe.calibration_ = config.record, config.selection, config.calibration
        probe._load_arrays(arrays, config)
        return probe

    # -- subclass hooks ----------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(getattr(self, name), dtype=np.float64) for name in self.array_names}

    def _load_arrays(self, arrays: dict[str, np.ndarray], config: ProbeConfig) -> None:
        for name, value in arrays.items():
            setattr(self, name, value)

    def _upgrade_arrays(self, arrays: dict[str, np.ndarray], config: ProbeConfig) -> dict[str, np.ndarray]:
        """Arrays an older schema kept in ``config.json`` (``config.legacy``), added to the weights; none by default."""
        return arrays

    def _expected_shapes(self, config: ProbeConfig, arrays: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError


def probe_matches(probe, source: ModelIdentity) -> bool:
    """The one rule for which probes apply to a model: model-bound types need the same weights (the fingerprint in any precision;
    :func:`serving_dtype` says in which precision they are read).

    ``probe`` is a :class:`Probe` or a manifest entry (anything with ``probe_type`` and ``fingerprint``).
    """
    probe_cls = PROBE_TYPES.get(probe.probe_type)
    if probe_cls is None:
        return False
    return not probe_cls.model_bound or weights_fingerprint(probe.fingerprint or "") == weights_fingerprint(source.fingerprint)


def serving_dtype(probe: Probe, dtype: str) -> str:
    """The one rule for the precision a probe is read in when its model runs in ``dtype``: ``dtype`` when it is the probe's own,
    when the probe reads no activations, or when its check for ``dtype`` passed (``probes-hub verify-dtype``); else its own."""
    own = fingerprint_dtype(probe.fingerprint or "") if probe.reads_activations else None
    if own is None or own == dtype:
        return dtype
    check = probe.record_.precision.get(dtype)
    return dtype if check is not None and check.passed else own


def baseline_types() -> tuple[str, ...]:
    """Names of the baseline probe types, in definition order."""
    return tuple(name for name, cls in PROBE_TYPES.items() if cls.is_baseline)


def load_probe(path: str | Path, *, hidden_size: int | None = None) -> Probe:
    """Load any probe folder (alias of :meth:`Probe.from_pretrained`)."""
    return Probe.from_pretrained(path, hidden_size=hidden_size)


def read_config(path: str | Path) -> ProbeConfig:
    """Validated, typed ``config.json`` of a probe folder without loading weights."""
    return validate_probe_dir(path)


def _resolve_probe_folder(spec: str | Path, *, subfolder: str | None, revision: str | None, token: str | None) -> Path:
    """One rule for a spec: an existing path, else a Hub repo id, else ``FileNotFoundError`` naming both."""
    local = Path(spec)
    if local.exists():
        return local / subfolder if subfolder else local
    if not is_hub_id(spec):
        raise FileNotFoundError(f"Probe folder {str(spec)!r} does not exist (a probe on the Hub is given as 'org/name').")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    from probes_hub.cache import cache_dir
    from probes_hub.schema.naming import slug

    patterns = [f"{subfolder}/*", f"{subfolder}/**"] if subfolder else None
    local_dir = cache_dir("hub-probes") / slug(f"{spec}@{revision or 'main'}")
    try:
        root = Path(snapshot_download(str(spec), revision=revision, allow_patterns=patterns, token=token, local_dir=local_dir))
    except RepositoryNotFoundError as error:
        raise FileNotFoundError(f"{str(spec)!r} is not an existing folder, and the Hub has no repo of that id ({error}).") from error
    return root / subfolder if subfolder else root


def _check_params(probe_cls: type[Probe], params: dict, where: str) -> None:
    """Each stored constructor argument must have the type of its default (a number where a number belongs, a list for a grid)."""
    defaults = inspect.signature(probe_cls.__init__).parameters
    for name, value in params.items():
        default = defaults[name].default if name in defaults else inspect.Parameter.empty
        if default is inspect.Parameter.empty or default is None:
            continue
        kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,), tuple: (list,), list: (list,)}.get(type(default), (type(default),))
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ProbeValidationError(f"{where}: params.{name} should be {' or '.join(k.__name__ for k in kinds)} like its default "
                                       f"{_plain(default)!r}, found {str(value)[:60]!r}.")


def _plain(value):
    """Constructor values as JSON-friendly plain types."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value
