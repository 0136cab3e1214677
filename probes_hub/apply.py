"""Apply saved probes to questions: one forward pass (up to the deepest layer any probe needs) feeds them all."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probes_hub.constants import MAX_PROMPT_TOKENS
from probes_hub.extract.feature_source import FeatureSource
from probes_hub.extract.features import Features
from probes_hub.hub.records import GRADED
from probes_hub.hub.validation import ProbeValidationError
from probes_hub.probes import PROBE_TYPES, Probe, probe_matches


def check_probe_matches_model(probe: Probe, source: FeatureSource, *, where: str) -> None:
    """Probes read one model's activations or tokens: refuse another model (by :func:`probe_matches`)."""
    if not probe_matches(probe, source):
        model = probe.record_.model
        raise ProbeValidationError(f"{where} was trained on {model.display_id} ({model.fingerprint}), "
                                   f"not on the loaded model {source.display_id} ({source.fingerprint}). Pass the matching --model.")


def choose_probes(entries, source) -> list[str]:
    """Names of the probes to read for ``source``: one per (dataset, label).

    Graded labels (difficulty): the activation probe with the best selection score on the training rows (CV Spearman;
    the test split never decides). Success labels, and graded ones without such a score: the type that ranks first by
    ``preference`` (for success, the shared probes that routing reads).
    """
    chosen: dict[tuple[str, str], tuple[tuple, str]] = {}
    for entry in entries:
        if not probe_matches(entry, source):
            continue
        probe_cls = PROBE_TYPES[entry.probe_type]
        by_cv = entry.task == GRADED and probe_cls.reads_activations and entry.cv_metric == "spearman" and entry.cv_score is not None
        rank = (0, -entry.cv_score) if by_cv else (1, probe_cls.preference)
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
                use_cache: bool = False) -> dict[str, ProbeReading]:
    """Predictions and in-distribution scores of loaded probes from one shared extraction."""
    features, _ = probe_features(source, probes, questions, data_hash=data_hash, use_cache=use_cache)
    return {name: ProbeReading(probe.predict(features), probe.in_distribution(features)) for name, probe in probes.items()}


def probe_features(source: FeatureSource, probes: dict[str, Probe], questions: list[str], *, data_hash: str | None = None,
                   use_cache: bool = False) -> tuple[Features, list[bool]]:
    """The features every one of ``probes`` reads for ``questions``, from one extraction (after checking the probes match the model),
    and which questions were cut to the probes' max length.

    With ``data_hash`` (a whole dataset), training's activation cache is read (just the layers the probes need).
    """
    for name, probe in probes.items():
        check_probe_matches_model(probe, source, where=name)
    prompts = {(p.record_.model.prompt.mode, p.record_.model.prompt.max_length) for p in probes.values() if p.record_.model}
    if len(prompts) > 1:
        raise ValueError("All probes given to one predict call must share the prompt mode and max length.")
    mode, max_length = next(iter(prompts)) if prompts else ("chat", MAX_PROMPT_TOKENS)
    layers = sorted({layer for p in probes.values() for layer in p.layers_needed()})  # the cache file holds every layer; read only these
    return source.features(questions, layers, chat=mode == "chat", max_length=max_length, data_hash=data_hash,
                           use_cache=use_cache, progress=len(questions) > 16, token_layers=token_layers(probes.values()))


def token_layers(probes) -> list[int]:
    """The layers whose every-token activations the probes read (attention probes)."""
    return sorted({p.token_layer() for p in probes} - {None})
