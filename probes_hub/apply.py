"""Apply saved probes to questions: one forward pass (up to the deepest layer any probe needs) feeds them all."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probes_hub.constants import MAX_PROMPT_TOKENS
from probes_hub.extract.feature_source import FeatureSource
from probes_hub.extract.features import Features
from probes_hub.probes import PROBE_TYPES, Probe, probe_matches, serving_dtype
from probes_hub.schema.records import GRADED
from probes_hub.schema.validation import ProbeValidationError


def check_probe_matches_model(probe: Probe, source: FeatureSource, *, where: str) -> None:
    """Probes read one model's activations or tokens: refuse another model (by :func:`probe_matches`)."""
    if not probe_matches(probe, source):
        model = probe.record_.model
        raise ProbeValidationError(f"{where} was trained on {model.display_id} ({model.fingerprint}), "
                                   f"not on the loaded model {source.display_id} ({source.fingerprint}). Pass the matching --model.")


def source_for_probe(probe: Probe, model: str | None = None) -> FeatureSource:
    """The model a probe group reads: ``--model`` if given, the embedded one for its display id, else its Hub id (for a probe on
    two models, both: :func:`probes_hub.extract.paired.model_source`)."""
    from probes_hub.extract.paired import model_source

    source = model_source(model or (probe.record_.model.display_id if probe.record_.model else None))
    if not probe_matches(probe, source):
        raise ValueError(f"model {source.display_id} has fingerprint {source.fingerprint}, the probes need {probe.fingerprint}")
    return source


def choice_rank(probe_type: str, task: str, cv_spearman: float | None) -> tuple:
    """How a probe ranks among the probes of one (source model, dataset, label), lowest first: the one rule behind the app's,
    the API's and the leaderboard matrix's choice.

    Graded labels (difficulty): the activation probe with the best CV Spearman on the training rows (the test split never
    decides). Success labels, and graded ones without such a score: the type's ``preference`` (for success, the shared
    probes that routing reads).
    """
    probe_cls = PROBE_TYPES[probe_type]
    if task == GRADED and probe_cls.reads_activations and cv_spearman is not None and np.isfinite(cv_spearman):
        return (0, -float(cv_spearman))
    return (1, probe_cls.preference)


def choose_probes(entries, source) -> list[str]:
    """Names of the probes to read for ``source``: one per (dataset, label), by :func:`choice_rank`."""
    chosen: dict[tuple[str, str], tuple[tuple, str]] = {}
    for entry in entries:
        if not probe_matches(entry, source):
            continue
        rank = choice_rank(entry.probe_type, entry.task, entry.cv_score if entry.cv_metric == "spearman" else None)
        key = (entry.dataset, entry.label)
        if key not in chosen or rank < chosen[key][0]:
            chosen[key] = (rank, entry.name)
    return [name for _, name in chosen.values()]


def predict_questions(source: FeatureSource, probe_dirs: list[str | Path], questions: list[str], *, data_hash: str | None = None,
                      use_cache: bool = False) -> dict[str, np.ndarray]:
    """Predictions of each probe folder for each question, as ``{folder name: [N]}``."""
    probes = {Path(folder).name: Probe.from_pretrained(folder, hidden_size=source.hidden_size) for folder in probe_dirs}
    return predict_probes(source, probes, questions, data_hash=data_hash, use_cache=use_cache)


@dataclass(frozen=True)
class ProbeReading:
    """One probe's output for N questions: its predictions, and how typical each question is of its training questions."""

    prediction: np.ndarray
    in_distribution: np.ndarray


def predict_probes(source: FeatureSource, probes: dict[str, Probe], questions: list[str], *, data_hash: str | None = None,
                   use_cache: bool = False) -> dict[str, np.ndarray]:
    """Predictions of already loaded probes (``{name: probe}``) from one shared extraction, as ``{name: [N]}``."""
    readings = read_probes(source, probes, questions, data_hash=data_hash, use_cache=use_cache)
    return {name: reading.prediction for name, reading in readings.items()}


def read_probes(source: FeatureSource, probes: dict[str, Probe], questions: list[str], *, data_hash: str | None = None,
                use_cache: bool = False, own_dtype: bool = True) -> dict[str, ProbeReading]:
    """Predictions and in-distribution scores of loaded probes, one extraction per prompt rule (see :func:`probe_inputs`)."""
    inputs = probe_inputs(source, probes, questions, data_hash=data_hash, use_cache=use_cache, own_dtype=own_dtype)
    return {name: ProbeReading(probe.predict(inputs.of(name)), probe.in_distribution(inputs.of(name))) for name, probe in probes.items()}


PromptRule = tuple[bool | None, int]
"""How a probe's features are read: (chat template or raw prompt, None: the model's default; longest prompt in tokens)."""


def prompt_rule(probe: Probe) -> PromptRule:
    """The prompt rule ``probe`` was trained with (recorded in its config). A probe that reads only the question's text (TF-IDF, a
    sentence embedding) or records no model takes any rule: ``(None, ...)``, the model's default unless other probes ask for one."""
    prompt = probe.record_.model.prompt if probe.record_.model and probe.model_bound else None
    return (prompt.mode == "chat", prompt.max_length) if prompt else (None, MAX_PROMPT_TOKENS)


@dataclass
class ProbeInputs:
    """Features for a set of probes: one extraction per prompt rule (and per precision a probe falls back to), and which each probe reads."""

    by_rule: dict[PromptRule, Features]
    """In the source's precision."""
    rules: dict[str, PromptRule]
    truncated: list[bool]
    """Per question: cut to fit the max length of some rule."""
    in_own_dtype: dict[tuple[PromptRule, str], Features] = field(default_factory=dict)
    """Extractions in another precision, for the probes that must be read in their own (:func:`serving_dtype`)."""
    fallbacks: dict[str, str] = field(default_factory=dict)
    """Probes read in their own precision rather than the source's, by name: that precision."""

    def of(self, name: str) -> Features:
        """The features probe ``name`` reads."""
        return self.features(self.rules[name], self.fallbacks.get(name))

    def features(self, rule: PromptRule, dtype: str | None = None) -> Features:
        """The extraction for ``rule``, in precision ``dtype`` (None or the source's: :attr:`by_rule`)."""
        return self.in_own_dtype[(rule, dtype)] if (rule, dtype) in self.in_own_dtype else self.by_rule[rule]

    def extractions(self) -> list[tuple[PromptRule, Features]]:
        """Every extraction with its prompt rule, in any precision."""
        return [*self.by_rule.items(), *((rule, features) for (rule, _), features in self.in_own_dtype.items())]

    def take(self, rows: list[int]) -> ProbeInputs:
        """The same inputs for the questions at ``rows``."""
        return ProbeInputs({rule: features.take(rows) for rule, features in self.by_rule.items()}, self.rules, [self.truncated[r] for r in rows],
                           {key: features.take(rows) for key, features in self.in_own_dtype.items()}, self.fallbacks)


def probe_inputs(source: FeatureSource, probes: dict[str, Probe], questions: list[str], *, data_hash: str | None = None, use_cache: bool = False,
                 layerwise: bool = False, own_dtype: bool = True) -> ProbeInputs:
    """The features every one of ``probes`` reads for ``questions``, each with the prompt rule it was trained with (:func:`prompt_rule`):
    one extraction per rule, stopped at the deepest layer that rule's probes read (after checking the probes match the model).

    Probes that record no prompt join the first rule that others use. ``layerwise``: also the layers each graded probe searched
    (for the layer-wise chart). With ``data_hash`` (a whole dataset), training's activation cache is read. A probe that may not be read
    in the source's precision is read in its own (:func:`serving_dtype`), unless ``own_dtype=False`` (what verify-dtype measures).
    """
    for name, probe in probes.items():
        check_probe_matches_model(probe, source, where=name)
    rules = {name: prompt_rule(probe) for name, probe in probes.items()}
    recorded = [rule for rule in rules.values() if rule[0] is not None]
    rules = {name: rule if rule[0] is not None or not recorded else recorded[0] for name, rule in rules.items()}
    fallbacks = {name: dtype for name, probe in probes.items() if own_dtype and (dtype := serving_dtype(probe, source.dtype)) != source.dtype}
    by_rule, in_own_dtype, truncated = {}, {}, [False] * len(questions)
    for rule, dtype in dict.fromkeys((rule, fallbacks.get(name)) for name, rule in rules.items()):
        group = [probes[name] for name, r in rules.items() if r == rule and fallbacks.get(name) == dtype]
        layers = extraction_layers(group, layerwise=layerwise)
        chat, max_length = rule
        read = source if dtype is None else source.in_dtype(dtype)
        features, cut = read.features(questions, layers, chat=chat, max_length=max_length, data_hash=data_hash, use_cache=use_cache,
                                      progress=len(questions) > 16, token_layers=token_layers(group))
        if dtype is None:
            by_rule[rule] = features
        else:
            in_own_dtype[(rule, dtype)] = features
        truncated = [a or b for a, b in zip(truncated, cut)]
    return ProbeInputs(by_rule, rules, truncated, in_own_dtype, fallbacks)


def probe_features(source: FeatureSource, probes: dict[str, Probe], questions: list[str], *, data_hash: str | None = None,
                   use_cache: bool = False) -> tuple[Features, list[bool]]:
    """The features of probes that share one prompt rule (a dataset's probes, an upload), and which questions were cut to its max length."""
    inputs = probe_inputs(source, probes, questions, data_hash=data_hash, use_cache=use_cache)
    if len(inputs.by_rule) > 1:
        raise ValueError(f"These probes were trained with different prompt rules ({', '.join(map(str, inputs.by_rule))}); read them with probe_inputs.")
    return next(iter(inputs.by_rule.values())), inputs.truncated


def extraction_layers(probes, *, layerwise: bool = False) -> list[int]:
    """The layers to extract for ``probes``: those they read, plus with ``layerwise`` the searched layers no deeper than those,
    so the layer-wise chart never makes the forward pass deeper (serving cost follows the chosen layers, not the search)."""
    needed = {layer for p in probes for layer in p.layers_needed()}
    if not layerwise:
        return sorted(needed)
    deepest = max([*needed, *(t for t in token_layers(probes))], default=-1)
    return sorted(needed | {layer for p in probes for layer in p.selection_.layers_searched if layer <= deepest})


def token_layers(probes) -> list[int]:
    """The layers whose every-token activations the probes read (attention probes)."""
    return sorted({p.token_layer() for p in probes} - {None})
