"""The app's engine: one model, every registry probe for it, one forward pass per question feeding them all.

The model sits behind a :class:`~probes_hub.extract.feature_source.FeatureSource`: in this process, or in the
app's model worker process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from probes_hub.apply import choose_probes
from probes_hub.data.datasets import OUTPUT_LENGTH_LABEL
from probes_hub.extract.feature_source import FeatureSource
from probes_hub.hub.records import BINARY, GRADED
from probes_hub.hub.registry import Registry
from probes_hub.routing.policies import Recommendation, recommend

MAX_QUESTION_TOKENS = 1024
UNFAMILIAR_BELOW = 0.02
"""An in-distribution score below this (fewer than 2% of the training questions were less typical) flags the reading."""


@dataclass
class Reading:
    """One probe's output for a question, with the test metric that says how far to trust it."""

    name: str
    dataset: str
    label: str
    probe_type: str
    value: float
    label_range: tuple[float, float]
    metric: dict
    in_distribution: float = float("nan")
    """Share of the probe's training questions less typical than this one (NaN: the probe keeps no summary)."""

    @property
    def unfamiliar(self) -> bool:
        return self.in_distribution < UNFAMILIAR_BELOW


@dataclass
class Prediction:
    """Everything the Predict tab shows for one question."""

    difficulty: list[Reading]
    success: list[Reading]
    layerwise: dict[str, tuple[list[int], list[float]]]
    forward_ms: float
    probes_ms: float
    n_tokens: int
    truncated: bool
    notices: list[str] = field(default_factory=list)
    length_factor: float = 1.0
    """How much longer than average the models' answers are predicted to be: exp(reading - the length probe's
    intercept), a linear probe's intercept being its training rows' mean label (1.0 without a length probe)."""

    def success_by_model(self) -> dict[str, float]:
        return {r.label.removeprefix("correct:"): r.value for r in self.success}


class Predictor:
    """Holds the model and its probes; ``reload()`` picks up probes added to the registry while running."""

    def __init__(self, source: FeatureSource, registry: Registry, expected_cost: dict[str, float] | None = None):
        self.source = source
        self.registry = registry
        self.expected_cost = expected_cost or {}
        self._lock = threading.Lock()
        self.probes: dict | None = None
        """Loaded on first use: choosing them needs the model's fingerprint, which a model worker may still be computing."""
        self.layers: list[int] = []
        self.problems: dict[str, str] = {}

    def reload(self) -> None:
        """(Re)load, per (dataset, label), the preferred probe that reads this model (by fingerprint; TF-IDF/length by display id).

        The choice is made from the manifest, so only the probes the app reads are loaded.
        """
        report = self.registry.load_all(names=choose_probes(self.registry.list(), self.source))
        with self._lock:
            self.probes = report.probes
            self.problems = report.problems
            self.layers = sorted({layer for p in report.probes.values() for layer in (*p.layers_needed(), *p.selection_.layers_searched)})

    def predict(self, question: str) -> Prediction:
        """Read every probe for one question; raises ValueError on an empty question."""
        question = (question or "").strip()
        if not question:
            raise ValueError("Type a question first.")
        if self.probes is None:
            self.reload()
        with self._lock:
            probes, layers = dict(self.probes), list(self.layers)
        started = time.perf_counter()
        features, truncated = self.source.features([question], layers, max_length=MAX_QUESTION_TOKENS)
        forward_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        difficulty, success, layerwise, length_factor = [], [], {}, 1.0
        for probe in probes.values():
            record = probe.record_
            test = record.test_metric
            reading = Reading(f"{record.data.dataset} {record.label.name}", record.data.dataset, record.label.name, probe.probe_type,
                              float(probe.predict(features)[0]), record.label.range, test.to_dict() if test else {},
                              float(probe.in_distribution(features)[0]))
            (success if probe.task == BINARY else difficulty).append(reading)
            per_layer = probe.layerwise(features) if probe.task == GRADED else None
            if per_layer is not None:
                probe_layers, values = per_layer
                layerwise[reading.name] = (probe_layers, [float(v) for v in values[0]])
                if reading.label == OUTPUT_LENGTH_LABEL:
                    length_factor = float(np.exp(reading.value - probe.intercept_[0]))
        notices = [f"The question was longer than {MAX_QUESTION_TOKENS} tokens; its beginning was cut (the end-of-instruction tokens are kept)."] if truncated[0] else []
        if success and sum(r.unfamiliar for r in success) > len(success) / 2:
            notices.append("This question is unlike the questions the success probes were trained on: read the success probabilities and the "
                           "routing suggestion with care.")
        return Prediction(sorted(difficulty, key=lambda r: r.name), sorted(success, key=lambda r: -r.value), layerwise, forward_ms,
                          (time.perf_counter() - started) * 1000, int(features.token_counts[0]), truncated[0], notices, length_factor)

    def route(self, prediction: Prediction, *, lam: float | None = None, target: float | None = None) -> Recommendation | None:
        """The routing suggestion for this question, or None when no success probe has a cost in the pool."""
        p = prediction.success_by_model()
        if not set(p) & set(self.expected_cost):
            return None
        costs = {model: cost * prediction.length_factor for model, cost in self.expected_cost.items()}
        return recommend(p, costs, lam=lam, target=target, cost_scale=max(self.expected_cost.values()))
