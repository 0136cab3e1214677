"""The app's engine: one model, every registry probe for it, one forward pass per question feeding them all.

The model sits behind a :class:`~probes_hub.feature_source.FeatureSource`: in this process, or in the
app's model worker process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from probes_hub.datasets import OUTPUT_LENGTH_LABEL
from probes_hub.feature_source import FeatureSource
from probes_hub.probes import LinearProbe
from probes_hub.registry import Registry
from probes_hub.routing import Recommendation, recommend

MAX_QUESTION_TOKENS = 1024
PROBE_PREFERENCE = ("shared", "linear", "tfidf", "length")
"""When one label has several probe types, the app reads the first available."""


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
        chosen: dict[tuple[str, str], str] = {}
        entries = [e for e in self.registry.list() if e.fingerprint == self.source.fingerprint or e.model == self.source.display_id]
        for entry in sorted(entries, key=lambda e: PROBE_PREFERENCE.index(e.probe_type) if e.probe_type in PROBE_PREFERENCE else len(PROBE_PREFERENCE)):
            chosen.setdefault((entry.dataset, entry.label), entry.name)
        report = self.registry.load_all(names=list(chosen.values()))
        with self._lock:
            self.probes = report.probes
            self.problems = report.problems
            self.layers = sorted({layer for p in report.probes.values() if isinstance(p, LinearProbe) for layer in (p.layer, *map(int, p.layer_index_))})

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
            info = probe.info
            reading = Reading(f"{info['data']['dataset']} {info['label']['name']}", info["data"]["dataset"], info["label"]["name"], probe.probe_type,
                              float(probe.predict(features)[0]), tuple(info["label"]["range"]), info["metrics"].get("test", {}))
            (success if probe.task == "binary" else difficulty).append(reading)
            if probe.task == "graded" and isinstance(probe, LinearProbe):
                probe_layers, values = probe.layerwise(features)
                layerwise[reading.name] = (probe_layers, [float(v) for v in values[0]])
                if reading.label == OUTPUT_LENGTH_LABEL:
                    length_factor = float(np.exp(reading.value - probe.intercept_[0]))
        notices = [f"The question was longer than {MAX_QUESTION_TOKENS} tokens; its beginning was cut (the end-of-instruction tokens are kept)."] if truncated[0] else []
        return Prediction(sorted(difficulty, key=lambda r: r.name), sorted(success, key=lambda r: -r.value), layerwise, forward_ms,
                          (time.perf_counter() - started) * 1000, int(features.token_counts[0]), truncated[0], notices, length_factor)

    def route(self, prediction: Prediction, *, lam: float | None = None, target: float | None = None) -> Recommendation | None:
        """The routing suggestion for this question, or None when no success probe has a cost in the pool."""
        p = prediction.success_by_model()
        if not set(p) & set(self.expected_cost):
            return None
        costs = {model: cost * prediction.length_factor for model, cost in self.expected_cost.items()}
        return recommend(p, costs, lam=lam, target=target, cost_scale=max(self.expected_cost.values()))
