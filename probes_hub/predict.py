"""Apply saved probes to questions: one forward pass (up to the deepest layer any probe needs) feeds them all."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .activations import cached_extract
from .features import Features
from .models import LoadedModel
from .probes import Probe
from .prompts import encode_prompts, prompt_format
from .validation import ProbeValidationError


def check_probe_matches_model(probe: Probe, lm: LoadedModel, *, where: str) -> None:
    """Probes read one model's activations: refuse another model (fingerprint) or prompt format."""
    recorded = probe.info["model"]
    if probe.probe_type != "tfidf" and recorded["fingerprint"] != lm.fingerprint:
        raise ProbeValidationError(f"{where} was trained on {recorded['display_id']} ({recorded['fingerprint']}), "
                                   f"not on the loaded model {lm.display_id} ({lm.fingerprint}). Pass the matching --model.")


def predict_questions(lm: LoadedModel, probe_dirs: list[str | Path], questions: list[str], *, data_hash: str | None = None,
                      use_cache: bool = False) -> dict[str, np.ndarray]:
    """Predictions of each probe folder for each question, as ``{folder name: [N]}``."""
    probes = {Path(folder).name: Probe.from_pretrained(folder, hidden_size=lm.hidden_size) for folder in probe_dirs}
    return predict_probes(lm, probes, questions, data_hash=data_hash, use_cache=use_cache)


def predict_probes(lm: LoadedModel, probes: dict[str, Probe], questions: list[str], *, data_hash: str | None = None,
                   use_cache: bool = False) -> dict[str, np.ndarray]:
    """Predictions of already loaded probes (``{name: probe}``) from one shared extraction, as ``{name: [N]}``."""
    for name, probe in probes.items():
        check_probe_matches_model(probe, lm, where=name)
    prompts = {(p.info["model"]["prompt"]["mode"], p.info["model"]["prompt"]["max_length"]) for p in probes.values()}
    first = next(iter(probes.values())).info["model"]["prompt"]
    if len(prompts) != 1:
        raise ValueError("All probes given to one predict call must share the prompt mode and max length.")
    fmt = prompt_format(lm.tokenizer, chat=first["mode"] == "chat")
    prompt_ids, _ = encode_prompts(questions, fmt, lm.tokenizer, max_length=first["max_length"])
    layers = sorted({layer for p in probes.values() for layer in _layers_needed(p, data_hash is not None)})
    acts = None
    if layers:
        acts = cached_extract(lm, fmt, questions, layers, fmt.eoi_positions, max_length=first["max_length"], data_hash=data_hash,
                              use_cache=use_cache, progress=len(questions) > 16)
    features = Features(questions, np.array([len(p) for p in prompt_ids]), acts, tuple(layers), tuple(fmt.eoi_positions))
    return {name: probe.predict(features) for name, probe in probes.items()}


def _layers_needed(probe: Probe, whole_sweep: bool) -> list[int]:
    """The probe's layer; for datasets, the layers it was swept over (so training's activation cache is reused)."""
    if probe.layer is None:
        return []
    return list(probe.info["selection"]["layers_searched"]) if whole_sweep else [probe.layer]
