"""Typed records of what a probe folder's ``config.json`` says: the model it reads, its prompt format, its
label, where its data came from, how it was selected and calibrated, and its test metrics.

Each record is a small frozen dataclass with ``to_dict`` (the JSON written to disk) and ``from_dict``
(used by :mod:`probes_hub.schema.validation`, which checks the input before building them), so no code reads a
probe's facts through nested dict lookups.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from probes_hub.metrics import Metric

GRADED, BINARY = "graded", "binary"
TASKS = (GRADED, BINARY)


@dataclass(frozen=True)
class PromptInfo:
    """How questions were turned into the model's input: chat template or raw text, and the EOI tokens read."""

    mode: str
    template_hash: str
    eoi_tokens: tuple[str, ...]
    eoi_positions: tuple[int, ...]
    max_length: int

    def to_dict(self) -> dict:
        return {"mode": self.mode, "template_hash": self.template_hash, "eoi_tokens": list(self.eoi_tokens),
                "eoi_positions": list(self.eoi_positions), "max_length": self.max_length}

    @classmethod
    def from_dict(cls, data: dict) -> PromptInfo:
        return cls(str(data["mode"]), str(data["template_hash"]), tuple(str(t) for t in data["eoi_tokens"]),
                   tuple(int(p) for p in data["eoi_positions"]), int(data["max_length"]))


@dataclass(frozen=True)
class ModelInfo:
    """The model whose activations (or tokenizer) a probe reads, identified by its weights' fingerprint."""

    fingerprint: str
    display_id: str
    hidden_size: int
    n_layers: int
    prompt: PromptInfo

    def to_dict(self) -> dict:
        return {"fingerprint": self.fingerprint, "display_id": self.display_id, "hidden_size": self.hidden_size,
                "n_layers": self.n_layers, "prompt": self.prompt.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> ModelInfo:
        return cls(str(data["fingerprint"]), str(data["display_id"]), int(data["hidden_size"]), int(data["n_layers"]),
                   PromptInfo.from_dict(data["prompt"]))


@dataclass(frozen=True)
class LabelInfo:
    """What the probe predicts: a graded label (e.g. MATH level) or a binary one (a model's success)."""

    name: str
    task: str
    range: tuple[float, float]

    def to_dict(self) -> dict:
        return {"name": self.name, "task": self.task, "range": list(self.range)}

    @classmethod
    def from_dict(cls, data: dict) -> LabelInfo:
        low, high = data["range"]
        return cls(str(data["name"]), str(data["task"]), (float(low), float(high)))


@dataclass(frozen=True)
class DataInfo:
    """Where the training data came from and how it was split (enough to rebuild the exact rows)."""

    dataset: str
    split_rule: str
    n_train: int
    n_test: int
    source: str = ""
    content_hash: str = ""
    limit: int | None = None
    seed: int = 0
    n_fit: int | None = None
    n_calibration: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DataInfo:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Selection:
    """How the probe's layer, position and regularization were chosen (on training rows only).

    ``details`` keeps the probe type's own facts (alpha, C, searched grids, shared-direction slope, ...),
    written flat beside the common fields.
    """

    method: str = "none"
    layer: int | None = None
    position: int | None = None
    cv_metric: str | None = None
    cv_score: float | None = None
    layers_searched: tuple[int, ...] = ()
    positions_searched: tuple[int, ...] = ()
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", dict(self.details))

    def __getitem__(self, key: str) -> Any:
        """``selection["alpha"]``: a common field or a detail."""
        if key in _SELECTION_FIELDS:
            return getattr(self, key)
        return self.details[key]

    def __contains__(self, key: object) -> bool:
        return key in self.details or (key in _SELECTION_FIELDS and getattr(self, str(key)) not in (None, ()))

    @property
    def activations_add(self) -> tuple[float, float] | None:
        """A stacked probe's nested CV score on its training rows with and without its activation input (what the activations
        add beyond the text); None for the other probe types."""
        if "cv_score_nested" not in self.details or "cv_score_without_activations" not in self.details:
            return None
        return float(self.details["cv_score_nested"]), float(self.details["cv_score_without_activations"])

    def to_dict(self) -> dict:
        common = {name: getattr(self, name) for name in _SELECTION_FIELDS if getattr(self, name) not in (None, ())}
        for name in ("layers_searched", "positions_searched"):
            if name in common:
                common[name] = list(common[name])
        return {**dict(self.details), **common}

    @classmethod
    def from_dict(cls, data: dict) -> Selection:
        common = {k: data[k] for k in _SELECTION_FIELDS if k in data and data[k] is not None}
        for name in ("layers_searched", "positions_searched"):
            if name in common:
                common[name] = tuple(int(v) for v in common[name])
        for name in ("layer", "position"):
            if name in common:
                common[name] = int(common[name])
        return cls(**common, details={k: v for k, v in data.items() if k not in _SELECTION_FIELDS})


_SELECTION_FIELDS = ("method", "layer", "position", "cv_metric", "cv_score", "layers_searched", "positions_searched")


@dataclass(frozen=True)
class Calibration:
    """Platt scaling ``p = sigmoid(a * score + b)``, fitted on rows unused for fitting and selection."""

    a: float
    b: float
    fitted_on: str
    n: int
    method: str = "platt"
    note: str = ""

    def to_dict(self) -> dict:
        data = asdict(self)
        if not self.note:
            data.pop("note")
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(float(data["a"]), float(data["b"]), str(data["fitted_on"]), int(data["n"]), str(data.get("method", "platt")),
                   str(data.get("note", "")))


MIN_DTYPE_SPEARMAN = 0.999
"""A probe may be read in another precision when its readings there rank the test questions as in its own (Spearman at least
this) and its test metric moves by no more than half the width of its own 95% CI."""


@dataclass(frozen=True)
class PrecisionCheck:
    """A probe read on its test rows in its own precision and in ``dtype`` (``probes-hub verify-dtype``): how far the readings moved."""

    dtype: str
    own_dtype: str
    n: int
    spearman: float
    """Between the two precisions' readings."""
    max_abs_diff: float
    """The largest change of a reading, in label units (graded) or probability (binary)."""
    own_metric: Metric
    metric: Metric
    """The test metric in the probe's own precision, and in ``dtype``."""
    checked_at: str

    @property
    def passed(self) -> bool:
        """Whether the probe may be read in ``dtype`` (:data:`MIN_DTYPE_SPEARMAN` and the metric inside its CI half-width)."""
        half_width = (self.own_metric.high - self.own_metric.low) / 2
        return self.spearman >= MIN_DTYPE_SPEARMAN and abs(self.metric.value - self.own_metric.value) <= half_width

    def summary(self) -> str:
        """One line for cards and tables."""
        return (f"{self.dtype}: {'passed' if self.passed else 'failed'} (Spearman with {self.own_dtype} {self.spearman:.4f}, largest change "
                f"{self.max_abs_diff:.4f}, {self.metric.name} {self.metric.value:.3f} vs {self.own_metric.value:.3f}, n={self.n})")

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}

    @classmethod
    def from_dict(cls, data: dict) -> PrecisionCheck:
        return cls(str(data["dtype"]), str(data["own_dtype"]), int(data["n"]), float(data["spearman"]), float(data["max_abs_diff"]),
                   Metric(**data["own_metric"]), Metric(**data["metric"]), str(data["checked_at"]))


@dataclass(frozen=True)
class ProbeRecord:
    """The facts a fitted probe carries besides its weights: model (None for text-only probes fitted on bare
    text), label, data provenance and test metrics (``test`` is the headline; ``baseline_<type>`` the baselines')."""

    label: LabelInfo
    data: DataInfo
    model: ModelInfo | None = None
    metrics: dict = field(default_factory=dict)
    created_at: str = ""
    """When the probe was trained (UTC, ISO 8601); empty until it is first saved."""
    precision: dict = field(default_factory=dict)
    """:class:`PrecisionCheck` by precision: how its readings move when its model runs in another precision."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", dict(self.metrics))
        object.__setattr__(self, "precision", dict(self.precision))

    @property
    def test_metric(self) -> Metric | None:
        return self.metrics.get("test")

    def baselines(self) -> dict[str, float]:
        """Headline test value of each baseline evaluated beside this probe, by probe type."""
        return {key.removeprefix("baseline_"): m.value for key, m in self.metrics.items() if key.startswith("baseline_")}


@dataclass(frozen=True)
class ProbeConfig:
    """A whole ``config.json``, typed: the probe type and its constructor arguments, plus everything it records.

    ``legacy`` holds fields of an older schema version that the probe type turns into arrays on load.
    """

    probe_type: str
    params: dict
    record: ProbeRecord
    selection: Selection
    calibration: Calibration | None
    library_version: str
    legacy: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The JSON written to ``config.json`` (current schema version)."""
        from probes_hub.constants import SCHEMA_VERSION

        record = self.record
        return {"schema_version": SCHEMA_VERSION, "probe_type": self.probe_type, "params": self.params,
                "model": None if record.model is None else record.model.to_dict(), "label": record.label.to_dict(),
                "data": record.data.to_dict(), "metrics": {key: m.to_dict() for key, m in record.metrics.items()},
                "selection": self.selection.to_dict(), "calibration": None if self.calibration is None else self.calibration.to_dict(),
                "created_at": record.created_at, "library_version": self.library_version,
                **({"precision": {dtype: check.to_dict() for dtype, check in record.precision.items()}} if record.precision else {})}
