"""The app's engine: one model, every registry probe for it, one forward pass per question feeding them all.

The model sits behind a :class:`~probes_hub.extract.feature_source.FeatureSource`: in this process, or in the
app's model worker process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from probes_hub.apply import ProbeInputs, choose_probes, extraction_layers, probe_inputs
from probes_hub.constants import UNFAMILIAR_BELOW
from probes_hub.extract.feature_source import FeatureSource
from probes_hub.hub.registry import Registry
from probes_hub.hub.reports import prediction_values
from probes_hub.probes import serving_dtype
from probes_hub.routing.evaluate import Pool
from probes_hub.routing.suggest import PoolRouter, Suggestion, pool_facts
from probes_hub.schema.records import BINARY, GRADED
from probes_hub.schema.validation import check_question

from .batching import MicroBatcher
from .memory import release_free_memory


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
    percentile: float = float("nan")
    """Graded probes: share of the probe's dataset questions whose prediction is below this one."""
    partial_length: dict = field(default_factory=dict)
    """Graded probes: test partial Spearman given prompt length (value, low, high, n), what the reading tells beyond length."""
    length_baseline: float = float("nan")
    """The length baseline's test value on the same label (NaN when not recorded)."""
    cv_spearman: float = float("nan")
    """Graded probes: the CV Spearman on the training rows that chose the probe (what picks the headline; NaN when none)."""
    activations_add: tuple[float, float] | None = None
    """Stacked probes: their CV score on the training rows with and without the activation input (what the activations add)."""

    @property
    def unfamiliar(self) -> bool:
        return self.in_distribution < UNFAMILIAR_BELOW

    @property
    def mostly_length(self) -> bool:
        """The reading does not beat prompt length on its test split: its partial Spearman given length has a CI reaching 0,
        or its test value is no better than the length baseline's."""
        if self.partial_length and self.partial_length["low"] <= 0:
            return True
        return bool(self.metric) and self.metric["value"] <= self.length_baseline


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
    inputs: ProbeInputs | None = None
    """The question's features (per prompt rule), kept so that routing with other settings needs no second forward pass."""
    batch_size: int = 1
    """How many concurrent questions shared this question's forward pass."""
    dtype: str = "float32"
    """The precision the model ran in."""


def precision_notice(fallbacks: dict[str, str], dtype: str) -> str:
    """What the app says about probes read in their own precision rather than the model's (``fallbacks``: name -> precision)."""
    names = sorted(fallbacks)
    own = " or ".join(sorted(set(fallbacks.values())))
    return (f"The model runs in {dtype}; {len(names)} probe(s) have no passing {dtype} check (`probes-hub verify-dtype`), so they are read "
            f"in {own}, the precision they were trained in: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}.")


class Predictor:
    """Holds the model, its probes and one router per pool; ``reload()`` picks up probes added to the registry while running.

    Concurrent ``predict`` calls are batched (:class:`~space_app.batching.MicroBatcher`): one padded forward
    pass and one vectorized read of every probe answer all the questions that arrived within a few milliseconds.
    """

    def __init__(self, source: FeatureSource, registry: Registry, pools: list[Pool] | None = None, *, data_dir: str | None = None,
                 batch_wait_s: float = 0.01, max_batch: int = 32):
        self.source = source
        self.registry = registry
        self.pools = {pool.name: pool for pool in pools or []}
        self._facts = {name: pool_facts(pool, data_dir) for name, pool in self.pools.items()}
        self._lock = threading.Lock()
        self.probes: dict | None = None
        """Loaded on first use: choosing them needs the model's fingerprint, which a model worker may still be computing."""
        self.layers: list[int] = []
        self.problems: dict[str, str] = {}
        """Probes (and pools) that could not be used, by name, with the reason; the app shows them."""
        self.routers: dict[str, PoolRouter] = {}
        self.fallbacks: dict[str, str] = {}
        """Probes read in their own precision rather than the model's (no passing check for it), by name: that precision."""
        self.references: dict[str, np.ndarray] = {}
        """Graded probes' saved predictions on their whole dataset: where a reading falls among that dataset's questions."""
        self.batcher = MicroBatcher(self.predict_many, wait_s=batch_wait_s, max_batch=max_batch)

    def reload(self) -> None:
        """(Re)load, per (dataset, label), the preferred probe that reads this model (by fingerprint; TF-IDF/length by display id),
        and the routers of the pools whose models all have a success probe.

        The choice is made from the manifest, so only the probes the app reads are loaded. A chosen probe that fails to
        load (or reads a layer this model lacks) is skipped with its reason, and the next one for its label is tried.
        """
        entries = self.registry.list()
        loaded, broken = {}, dict(self.registry.problems)
        while True:
            names = choose_probes([e for e in entries if e.name not in broken], self.source)
            todo = [name for name in names if name not in loaded]
            if not todo:
                break
            report = self.registry.load_all(names=todo)
            broken.update(report.problems)
            for name, probe in report.probes.items():
                deepest = max([*probe.layers_needed(), *probe.selection_.layers_searched], default=-1)
                if deepest >= self.source.n_layers:
                    broken[name] = f"reads layer {deepest}, but {self.source.display_id} has layers 0 to {self.source.n_layers - 1}"
                else:
                    loaded[name] = probe
        probes = {name: loaded[name] for name in names}
        routers, problems = {}, broken
        for name, pool in self.pools.items():
            try:
                routers[name] = PoolRouter.from_probes(pool, self._facts[name], probes, self.registry)
            except ValueError as error:
                problems[f"pool {name}"] = str(error)
        references = {name: prediction_values(self.registry.folder(name)) for name, probe in probes.items() if probe.task == GRADED}
        fallbacks = {name: dtype for name, probe in probes.items() if (dtype := serving_dtype(probe, self.source.dtype)) != self.source.dtype}
        with self._lock:
            self.probes, self.problems, self.routers, self.fallbacks = probes, problems, routers, fallbacks
            self.references = {name: values for name, values in references.items() if values is not None}
            self.layers = extraction_layers(probes.values(), layerwise=True)

    def precision(self) -> dict:
        """The model's precision (None while a worker still loads it) and the probes read in their own instead."""
        status = getattr(self.source, "status", None)
        loaded = status is None or status()["state"] == "ready"
        return {"model": self.source.dtype if loaded else None, "probes_in_own_dtype": dict(self.fallbacks)}

    def predict(self, question: str) -> Prediction:
        """Read every probe for one question (batched with concurrent calls); raises ValueError on a question without visible text."""
        return self.batcher.submit(check_question(question))

    def predict_many(self, questions: list[str]) -> list[Prediction]:
        """One forward pass and one read of every probe for all ``questions`` (already checked)."""
        if self.probes is None:
            self.reload()
        with self._lock:
            probes, references = dict(self.probes), dict(self.references)
        started = time.perf_counter()
        inputs = probe_inputs(self.source, probes, questions, layerwise=True)  # each probe read with its own recorded prompt rule
        forward_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        readings: dict[str, tuple] = {}
        failed: list[str] = []
        for name, probe in probes.items():
            features = inputs.of(name)
            try:  # one probe that fails to read must not take the others down
                readings[name] = (probe.predict(features), probe.in_distribution(features), probe.layerwise(features) if probe.task == GRADED else None)
            except Exception as error:
                failed.append(f"{name} ({type(error).__name__}: {error})")
        probes_ms = (time.perf_counter() - started) * 1000
        notices = [f"Skipped probe(s) that failed to read this question: {'; '.join(failed)}."] if failed else []
        if inputs.fallbacks:
            notices.append(precision_notice(inputs.fallbacks, self.source.dtype))
        if self.problems:
            shown = "; ".join(f"{name}: {why}" for name, why in list(self.problems.items())[:3])
            notices.append(f"{len(self.problems)} registry entr{'y' if len(self.problems) == 1 else 'ies'} could not be used "
                           f"(their labels are read by other probes where there are any): {shown}{' ...' if len(self.problems) > 3 else ''}")
        predictions = [self._prediction(row, inputs, probes, readings, references, forward_ms, probes_ms, notices) for row in range(len(questions))]
        release_free_memory()
        return predictions

    def _prediction(self, row: int, inputs: ProbeInputs, probes: dict, readings: dict, references: dict,
                    forward_ms: float, probes_ms: float, notices: list[str]) -> Prediction:
        difficulty, success, layerwise = [], [], {}
        for name, (values, in_distribution, per_layer) in readings.items():
            probe = probes[name]
            record = probe.record_
            test = record.test_metric
            value = float(values[row])
            reference = references.get(name)
            partial = record.metrics.get("test_partial_length")
            reading = Reading(f"{record.data.dataset} {record.label.name}", record.data.dataset, record.label.name, probe.probe_type,
                              value, record.label.range, test.to_dict() if test else {}, float(in_distribution[row]),
                              float(np.mean(reference < value)) if reference is not None else float("nan"),
                              partial.to_dict() if partial else {}, record.baselines().get("length", float("nan")),
                              float(probe.selection_.cv_score) if probe.selection_.cv_metric == "spearman" and probe.selection_.cv_score is not None
                              else float("nan"), probe.selection_.activations_add)
            (success if probe.task == BINARY else difficulty).append(reading)
            if per_layer is not None:
                probe_layers, layer_values = per_layer
                layerwise[reading.name] = (probe_layers, [float(v) for v in layer_values[row]])
        notices = list(notices)
        truncated = inputs.truncated[row]
        if truncated:
            limit = " or ".join(sorted({str(max_length) for (_, max_length), _ in inputs.extractions()}))
            notices.insert(0, f"The question was longer than {limit} tokens; its beginning was cut (the end-of-instruction tokens are kept).")
        if success and sum(r.unfamiliar for r in success) > len(success) / 2:
            notices.append("This question is unlike the questions the success probes were trained on: read the success probabilities and the "
                           "routing suggestion with care.")
        return Prediction(sorted(difficulty, key=lambda r: r.name), sorted(success, key=lambda r: -r.value), layerwise, forward_ms, probes_ms,
                          int(max(f.token_counts[row] for _, f in inputs.extractions())), truncated, notices, inputs.take([row]), len(inputs.truncated),
                          self.source.dtype)

    def route(self, prediction: Prediction, pool: str, *, lam: float | None = None, target: float | None = None) -> Suggestion | None:
        """The suggestion for this question in ``pool`` (see :class:`~probes_hub.routing.suggest.PoolRouter`), or None without a router."""
        router = self.routers.get(pool)
        if router is None or prediction.inputs is None:
            return None
        dtype = router.read_dtype(self.source.dtype)
        return router.suggest(prediction.inputs.features(router.prompt_rule, None if dtype == self.source.dtype else dtype), lam=lam, target=target)
