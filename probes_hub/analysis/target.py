"""A trained linear probe with its model, data and test questions: what every analysis reads.

The test questions are the probe's own held-out split (the same rows its recorded metric used), optionally a
seeded subset of them for a quick look; nothing here is fitted on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from probes_hub.analysis import DEFAULT_PROBE
from probes_hub.analysis.runner import PromptBatch, prompt_batches
from probes_hub.data.datasets import QuestionSet, row_roles, training_dataset
from probes_hub.extract.models import LoadedModel
from probes_hub.extract.prompts import PromptFormat, encode_prompts
from probes_hub.probes.linear import LinearProbe


@dataclass
class ProbeTarget:
    """A single-cell linear probe, the model it reads, and its test questions templated as the probe saw them."""

    name: str
    probe: LinearProbe
    lm: LoadedModel
    fmt: PromptFormat
    dataset: QuestionSet
    test_rows: np.ndarray
    """Indices into ``dataset.frame`` of the (possibly subsetted) test questions."""
    prompt_ids: list[list[int]]
    y: np.ndarray

    @property
    def layer(self) -> int:
        return int(self.probe.layer)

    @property
    def position(self) -> int:
        return int(self.probe.position)

    @property
    def direction(self) -> np.ndarray:
        """The reading's gradient in raw activation space, ``coef / scale``: a unit step along it moves the reading by its norm."""
        return np.asarray(self.probe.coef_, dtype=np.float64) / np.asarray(self.probe.scale_, dtype=np.float64)

    def batches(self) -> list[PromptBatch]:
        """The test prompts in right-padded, length-grouped batches, read at the probe's position."""
        pad = self.lm.tokenizer.pad_token_id
        return prompt_batches(self.prompt_ids, self.position, pad_id=pad if pad is not None else 0)

    @cached_property
    def read(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The probe's reading of block-``layer`` outputs ``[B, hidden]`` at its position (built once: it runs per batch and head)."""
        return linear_reader(self.probe.mean_, self.probe.scale_, self.probe.coef_, float(self.probe.intercept_[0]))


def linear_reader(mean, scale, coef, intercept: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """``h -> ((h - mean) / scale) @ coef + intercept`` in torch (differentiable; float64, as probes keep their weights)."""
    with torch.inference_mode(False):  # plain tensors, usable by the attribution's backward pass even when built under inference mode
        mean, scale, coef = (torch.tensor(np.asarray(a, dtype=np.float64)) for a in (mean, scale, coef))
    return lambda hidden: ((hidden.double() - mean) / scale) @ coef + intercept


def resolve_probe(spec: str, registry: str | None = None) -> tuple[str, LinearProbe]:
    """A probe folder path, or the name of a probe in ``registry`` (default: the bundled one), loaded and validated.

    Raises:
        ValueError: the probe is not a single-cell linear probe (the analyses follow one direction at one layer).
    """
    from probes_hub.hub.registry import Registry
    from probes_hub.probes import Probe

    probe = Probe.from_pretrained(spec) if Path(spec).is_dir() else Registry(registry).load(spec)
    name = Path(spec).name
    if type(probe) is not LinearProbe:
        raise ValueError(f"{name} is a {probe.probe_type!r} probe; these analyses need a 'linear' probe (one direction at one layer and position).")
    return name, probe


def load_target(spec: str = DEFAULT_PROBE, *, model: str | None = None, registry: str | None = None, data_dir: str | None = None,
                limit: int | None = None, seed: int = 0, lm: LoadedModel | None = None) -> ProbeTarget:
    """Load a probe, its model (``model`` or the one it records) and its test questions (``limit``: a seeded subset of them)."""
    from probes_hub.apply import source_for_probe
    from probes_hub.probes import probe_matches

    name, probe = resolve_probe(spec, registry)
    if lm is None:
        from probes_hub.extract.paired import PairedFeatures

        source = source_for_probe(probe, model)
        if isinstance(source, PairedFeatures):
            raise ValueError(f"{name} reads two models together ({source.display_id}); the analyses look inside one model: pick a probe "
                             "trained on one of them.")
        lm = source.lm
    elif not probe_matches(probe, lm):
        raise ValueError(f"{name} was trained on {probe.fingerprint}, not on {lm.fingerprint}.")
    record = probe.record_
    dataset = training_dataset(record.data, [record.label.name], data_dir=data_dir)
    test = row_roles(dataset, record.label.name, seed=record.data.seed)["test"]
    if limit is not None and limit < len(test):
        test = np.sort(np.random.default_rng(seed).choice(test, size=limit, replace=False))
    prompt = record.model.prompt
    fmt = lm.prompt_format(prompt.mode == "chat")
    if fmt.template_hash != prompt.template_hash:
        raise ValueError(f"{name} was read through prompt template {prompt.template_hash}; this tokenizer gives {fmt.template_hash}.")
    questions = dataset.frame["question"].to_numpy()[test].tolist()
    prompt_ids, _ = encode_prompts(questions, fmt, lm.tokenizer, max_length=prompt.max_length)
    y = dataset.frame[record.label.name].to_numpy(dtype=float)[test]
    return ProbeTarget(name, probe, lm, fmt, dataset, test, prompt_ids, y)
