"""Apply saved probes to questions: one forward pass (up to the deepest layer any probe needs) feeds them all."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .feature_source import FeatureSource
from .probes import Probe
from .validation import ProbeValidationError


def check_probe_matches_model(probe: Probe, source: FeatureSource, *, where: str) -> None:
    """Probes read one model's activations: refuse another model (fingerprint) or prompt format."""
    recorded = probe.info["model"]
    if probe.probe_type != "tfidf" and recorded["fingerprint"] != source.fingerprint:
        raise ProbeValidationError(f"{where} was trained on {recorded['display_id']} ({recorded['fingerprint']}), "
                                   f"not on the loaded model {source.display_id} ({source.fingerprint}). Pass the matching --model.")


def predict_questions(source: FeatureSource, probe_dirs: list[str | Path], questions: list[str], *, data_hash: str | None = None,
                      use_cache: bool = False) -> dict[str, np.ndarray]:
    """Predictions of each probe folder for each question, as ``{folder name: [N]}``."""
    probes = {Path(folder).name: Probe.from_pretrained(folder, hidden_size=source.hidden_size) for folder in probe_dirs}
    return predict_probes(source, probes, questions, data_hash=data_hash, use_cache=use_cache)


def predict_probes(source: FeatureSource, probes: dict[str, Probe], questions: list[str], *, data_hash: str | None = None,
                   use_cache: bool = False) -> dict[str, np.ndarray]:
    """Predictions of already loaded probes (``{name: probe}``) from one shared extraction, as ``{name: [N]}``."""
    for name, probe in probes.items():
        check_probe_matches_model(probe, source, where=name)
    prompts = {(p.info["model"]["prompt"]["mode"], p.info["model"]["prompt"]["max_length"]) for p in probes.values()}
    first = next(iter(probes.values())).info["model"]["prompt"]
    if len(prompts) != 1:
        raise ValueError("All probes given to one predict call must share the prompt mode and max length.")
    layers = sorted({layer for p in probes.values() for layer in _layers_needed(p, data_hash is not None)})
    features, _ = source.features(questions, layers, chat=first["mode"] == "chat", max_length=first["max_length"], data_hash=data_hash,
                                  use_cache=use_cache, progress=len(questions) > 16)
    return {name: probe.predict(features) for name, probe in probes.items()}


def _layers_needed(probe: Probe, whole_sweep: bool) -> list[int]:
    """The probe's layer; for datasets, the layers it was swept over (so training's activation cache is reused)."""
    if probe.layer is None:
        return []
    return list(probe.info["selection"]["layers_searched"]) if whole_sweep else [probe.layer]
