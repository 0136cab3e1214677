"""One question, one pool: which model to send it to. The app's suggestion and ``probes-hub suggest`` both call this.

A :class:`PoolRouter` holds a pool's success probes (one per model, the preferred type of the registry), its
output-length probe when there is one, and the pool's facts known in advance (each model's mean cost and
accuracy on the pool dataset's training questions). ``suggest`` reads them from one question's features:
``P(correct)`` per model, this question's expected cost per model (the mean cost scaled by the predicted
answer length), and the utility choice ``argmax p - lambda * cost / (this question's largest cost)``: lambda is
how much probability of success the pool's most expensive call on this question is worth, so a trivial question
goes to a cheap model even though every model would answer it for little.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import numpy as np

from probes_hub.apply import PromptRule, prompt_rule
from probes_hub.constants import UNFAMILIAR_BELOW
from probes_hub.data.datasets import OUTPUT_LENGTH_LABEL, DataChangedError
from probes_hub.extract.feature_source import FeatureSource
from probes_hub.extract.features import Features
from probes_hub.probes import PROBE_TYPES, Probe, serving_dtype
from probes_hub.routing.evaluate import Pool, expected_costs, load_pool, outcome_folder, outcome_tables
from probes_hub.routing.policies import recommend

logger = logging.getLogger(__name__)

BROADEST_DATASET = "mixed"
"""Success probes trained on every benchmark: the fallback for questions unlike a pool's own training questions."""
TYPICAL_ANSWER_TOKENS = 500
"""Without the outcome data, a model's expected cost is its price for an answer of this many tokens."""


@dataclass(frozen=True)
class PoolFacts:
    """What a router knows about a pool before any question: each model's mean cost and accuracy on training questions."""

    expected_cost: dict[str, float]
    accuracy: dict[str, float]
    """Mean accuracy on the pool dataset's training questions (NaN without the outcome data)."""
    train_ids: tuple[str, ...] = ()
    """Those training questions (every pool model answered them): where the mean costs come from."""

    @property
    def most_accurate(self) -> str | None:
        known = {m: a for m, a in self.accuracy.items() if np.isfinite(a)}
        return max(known, key=known.get) if known else None


def pool_facts(pool: Pool, data_dir: str | None = None) -> PoolFacts:
    """The pool's facts from its outcome data, cached on disk by the pool and the outcome files' contents; without
    the data, each model's price for a typical answer (and unknown accuracies)."""
    from probes_hub.atomic import atomic_write_json
    from probes_hub.cache import cache_dir, file_sha256, sha256_text
    from probes_hub.data.datasets import load_dataset, resolve_data_dir

    try:
        root = resolve_data_dir(data_dir)
        files = sorted(p for b in pool.benchmarks for p in outcome_folder(root, b).glob("*.*"))
        if not files:
            raise FileNotFoundError(f"no outcome files for {', '.join(pool.benchmarks)} under {root}")
        key = sha256_text(repr(pool), *(file_sha256(f) for f in files))
        cached = cache_dir("routing") / f"facts-{key[:24]}.json"
        if cached.exists():
            data = json.loads(cached.read_text())
            return PoolFacts(data["expected_cost"], data["accuracy"], tuple(data["train_ids"]))
        tables = outcome_tables(pool, root)
        costs = expected_costs(pool, data_dir, tables=tables)
        split = load_dataset(pool.dataset, data_dir=data_dir).frame.set_index("id")["split"]
        correct = tables[0]
        train_ids = [i for i in correct.index[correct.notna().all(axis=1)] if split.get(i) == "train"]
        facts = PoolFacts(costs, {m: float(v) for m, v in correct.loc[train_ids].mean().items()}, tuple(train_ids))
        atomic_write_json(cached, asdict(facts))
        return facts
    except (FileNotFoundError, ValueError, DataChangedError) as error:
        logger.warning("Pool %s: expected costs from prices alone (outcome data unavailable: %s).", pool.name, error)
        typical = pool.token_costs * TYPICAL_ANSWER_TOKENS
        return PoolFacts(dict(zip(pool.names, map(float, typical))), {m: float("nan") for m in pool.names})


@dataclass(frozen=True)
class Suggestion:
    """The model to call for one question, with everything the choice was made from."""

    pool: str
    model: str
    cost_ratio: float
    """This model's expected cost on the question over the pool's most accurate model's."""
    p_correct: dict[str, float]
    in_distribution: float
    """How typical the question is of the success probes' training questions (0-1; NaN when the probes keep no summary)."""
    lam: float
    expected_cost: dict[str, float]
    most_accurate: str
    length_factor: float
    """Predicted answer length over the mean on the questions the expected costs come from (1.0 without a length probe)."""
    probes_dataset: str
    """The dataset the success probes read were trained on: the pool's, or the broadest one when the question is out of
    distribution for the pool's (see :class:`PoolRouter`)."""

    def to_json(self) -> dict:
        return asdict(self)


class PoolRouter:
    """A pool's probes and facts; :meth:`suggest` picks a model for one question's features.

    ``fallback`` holds success probes for the same models trained on :data:`BROADEST_DATASET` (every benchmark);
    they answer instead when a question is out of distribution for the pool's own probes.
    """

    def __init__(self, pool: Pool, facts: PoolFacts, success: dict[str, Probe], length: Probe | None = None, *, default_lambda: float | None = None,
                 length_reference: float | None = None, fallback: dict[str, Probe] | None = None):
        missing = [m for m in pool.names if m not in success]
        if missing:
            raise ValueError(f"Pool '{pool.name}' has no success probe on {pool.dataset} for: {', '.join(missing)}.")
        self.pool, self.facts, self.success, self.length = pool, facts, success, length
        self.fallback = fallback if fallback and all(m in fallback for m in pool.names) else None
        self.length_reference = length_reference if length_reference is not None else (float(length.intercept_[0]) if length is not None else 0.0)
        """The length probe's mean reading on the questions the mean costs come from (its training mean when unknown)."""
        self.default_lambda = pool.default_lambda if default_lambda is None else default_lambda
        rules = {prompt_rule(p) for p in self._probes()}
        if len(rules) > 1:
            raise ValueError(f"Pool '{pool.name}': its probes were trained with different prompt rules ({', '.join(map(str, rules))}); "
                             "a router reads one extraction.")
        self.prompt_rule: PromptRule = rules.pop()
        """The prompt rule (chat or raw, max length) its probes were trained with: the features :meth:`suggest` takes are read so."""

    def _probes(self) -> list[Probe]:
        return [*self.success.values(), *(self.fallback or {}).values(), *([self.length] if self.length else [])]

    @classmethod
    def from_probes(cls, pool: Pool, facts: PoolFacts, probes: dict[str, Probe], registry=None, **kwargs) -> PoolRouter:
        """Pick the pool's probes from loaded ones (``{name: probe}``): per model the preferred type trained on the pool's
        dataset (and on :data:`BROADEST_DATASET`, as the fallback).

        With the ``registry`` they came from, the length probe's saved readings on the pool's training questions set
        :attr:`length_reference`.
        """
        chosen: dict[tuple[str, str], tuple[int, Probe]] = {}
        length = length_name = None
        labels = {m.label: m.name for m in pool.models}
        for name, probe in probes.items():
            record = probe.record_
            if record is None or record.data.dataset not in (pool.dataset, BROADEST_DATASET):
                continue
            if record.label.name in labels:
                key, rank = (record.data.dataset, labels[record.label.name]), PROBE_TYPES[probe.probe_type].preference
                if key not in chosen or rank < chosen[key][0]:
                    chosen[key] = (rank, probe)
            elif record.label.name == OUTPUT_LENGTH_LABEL and probe.reads_activations and record.data.dataset == pool.dataset:
                length, length_name = probe, name
        reference = _mean_reading(registry, length_name, facts.train_ids) if registry is not None and length_name else None
        success = {model: probe for (dataset, model), (_, probe) in chosen.items() if dataset == pool.dataset}
        fallback = {model: probe for (dataset, model), (_, probe) in chosen.items() if dataset == BROADEST_DATASET != pool.dataset}
        return cls(pool, facts, success, length, length_reference=reference, fallback=fallback, **kwargs)

    def layers_needed(self) -> list[int]:
        return sorted({layer for p in self._probes() for layer in p.layers_needed()})

    def read_dtype(self, dtype: str) -> str:
        """The precision its probes are read in when the model runs in ``dtype``: ``dtype`` when every one of them may be read so
        (:func:`~probes_hub.probes.serving_dtype`), else their own (one extraction feeds them all)."""
        others = {serving_dtype(p, dtype) for p in self._probes()} - {dtype}
        return others.pop() if others else dtype

    def features(self, source: FeatureSource, questions: list[str]) -> Features:
        """What :meth:`suggest_many` reads for ``questions``: one extraction with the probes' prompt rule, in :meth:`read_dtype`."""
        chat, max_length = self.prompt_rule
        features, _ = source.in_dtype(self.read_dtype(source.dtype)).features(questions, self.layers_needed(), chat=chat, max_length=max_length)
        return features

    def suggest(self, features: Features, *, lam: float | None = None, target: float | None = None) -> Suggestion:
        """The suggestion for the single question in ``features``: by utility with ``lam`` (default: the pool's), or with
        ``target`` the cheapest model whose P(correct) reaches it (the most likely to succeed when none does)."""
        return self.suggest_many(features, lam=lam, target=target)[0]

    def suggest_many(self, features: Features, *, lam: float | None = None, target: float | None = None) -> list[Suggestion]:
        """:meth:`suggest` for every question in ``features``, each probe read once for all of them (a workload's batches).

        A question out of distribution for the pool's own probes is read by the fallback probes (when the pool has them)."""
        lam = self.default_lambda if lam is None else float(lam)
        if lam < 0:
            raise ValueError(f"lambda must be >= 0, got {lam}.")
        names = self.pool.names
        p, in_distribution = _success(self.success, names, features)
        datasets = np.full(len(p), _dataset(self.success))
        if self.fallback is not None:
            unfamiliar = in_distribution < UNFAMILIAR_BELOW  # NaN (no training summary) keeps the pool's own probes
            if unfamiliar.any():
                p_fallback, in_fallback = _success(self.fallback, names, features.take(unfamiliar))
                p[unfamiliar], in_distribution[unfamiliar], datasets[unfamiliar] = p_fallback, in_fallback, _dataset(self.fallback)
        factors = np.exp(self.length.predict(features) - self.length_reference) if self.length is not None else np.ones(len(p))
        base_cost = np.array([self.facts.expected_cost[m] for m in names])
        suggestions = []
        for row in range(len(p)):
            cost = base_cost * float(factors[row])
            choice = recommend(dict(zip(names, p[row])), dict(zip(names, cost)), lam=None if target is not None else lam, target=target)
            pick = names.index(choice.model)
            strongest = self.facts.most_accurate or names[int(np.argmax(p[row]))]
            suggestions.append(Suggestion(self.pool.name, names[pick], float(cost[pick] / cost[names.index(strongest)]),
                                          dict(zip(names, map(float, p[row]))), float(in_distribution[row]), lam, dict(zip(names, map(float, cost))),
                                          strongest, float(factors[row]), str(datasets[row])))
        return suggestions


def _success(probes: dict[str, Probe], names: list[str], features: Features) -> tuple[np.ndarray, np.ndarray]:
    """P(correct) ``[N, M]`` and the mean in-distribution score ``[N]`` of the probes (NaN where none keeps a training summary)."""
    p = np.stack([np.asarray(probes[m].predict(features), dtype=float) for m in names], axis=1)
    scores = np.stack([np.asarray(probes[m].in_distribution(features), dtype=float) for m in names], axis=1)
    known = np.isfinite(scores).any(axis=1)
    mean = np.full(len(p), np.nan)
    mean[known] = np.nanmean(scores[known], axis=1)
    return p, mean


def _dataset(probes: dict[str, Probe]) -> str:
    return next(iter(probes.values())).record_.data.dataset


def router_for(pool_spec: str | None, registry, source, *, data_dir: str | None = None) -> PoolRouter:
    """A :class:`PoolRouter` for a pool (file or bundled name) from a registry's probes that read ``source``'s model."""
    from probes_hub.apply import choose_probes

    pool = load_pool(pool_spec)
    wanted = {m.label for m in pool.models} | {OUTPUT_LENGTH_LABEL}
    entries = [e for e in registry.list() if e.dataset in (pool.dataset, BROADEST_DATASET) and e.label in wanted]
    report = registry.load_all(names=choose_probes(entries, source))
    return PoolRouter.from_probes(pool, pool_facts(pool, data_dir), report.probes, registry)


def _mean_reading(registry, name: str, ids: tuple[str, ...]) -> float | None:
    """A probe's mean saved prediction over the given question ids (None when they cannot be read: no data folder)."""
    from probes_hub.hub.reports import read_predictions

    try:
        saved = read_predictions(registry.folder(name))["prediction"]
    except (FileNotFoundError, ValueError, DataChangedError):
        return None
    present = [i for i in ids if i in saved.index]
    return float(saved.loc[present].mean()) if present else None
