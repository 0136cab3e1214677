"""Two source models read together: each question's end-of-instruction activations of both, side by side.

A probe trained on :class:`PairedFeatures` answers whether two small models read difficulty better than either alone. Each
model keeps its own prompt (SmolLM2 its chat template, Gemma its raw question/answer prompt) and its own activation cache, so a
pair costs no extraction that its two models' probes have not already paid for. Layer ``k`` of a pair of ``K`` layers (the
smaller model's count) is each model's layer at the same relative depth; the positions are the end-of-instruction offsets
both prompts have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from probes_hub.cache import sha256_text
from probes_hub.constants import MAX_PROMPT_TOKENS
from probes_hub.extract.feature_source import FeatureSource, ModelFeatures
from probes_hub.extract.features import Features
from probes_hub.schema.naming import PAIR_SEPARATOR
from probes_hub.schema.records import ModelInfo, PromptInfo

if TYPE_CHECKING:
    from probes_hub.extract.models import LoadedModel

PAIR_PREFIX = "pair:"
"""How a pair's fingerprint starts: ``pair:<first fingerprint>+<second fingerprint>``."""
PAIR_PROMPT = "pair"
"""The prompt mode a pair records: each model's own default prompt."""


def depth_matched_layer(layer: int, n_pair: int, n_model: int) -> int:
    """The layer of a model with ``n_model`` layers at the relative depth of layer ``layer`` of ``n_pair``."""
    return n_model - 1 if n_pair == 1 else round(layer * (n_model - 1) / (n_pair - 1))


class PairedFeatures:
    """A :class:`FeatureSource` over two models: activations concatenated along the hidden axis (hidden sizes add)."""

    def __init__(self, first: FeatureSource, second: FeatureSource):
        self.sources = (first, second)
        self.fingerprint = f"{PAIR_PREFIX}{first.fingerprint}+{second.fingerprint}"
        self.display_id = f"{first.display_id}{PAIR_SEPARATOR}{second.display_id}"
        self.hidden_size = first.hidden_size + second.hidden_size
        self.n_layers = min(first.n_layers, second.n_layers)
        self.dtype = first.dtype

    def in_dtype(self, dtype: str) -> PairedFeatures:
        """Both models in precision ``dtype``."""
        return self if all(source.dtype == dtype for source in self.sources) else PairedFeatures(*(s.in_dtype(dtype) for s in self.sources))

    def features(self, questions: list[str], layers: list[int], *, chat: bool | None = None, max_length: int = MAX_PROMPT_TOKENS,
                 data_hash: str | None = None, use_cache: bool = False, progress: bool = False,
                 token_layers: list[int] = ()) -> tuple[Features, list[bool]]:
        """Both models' features at the depth-matched ``layers``, joined at their shared EOI positions; ``chat`` is ignored (each
        model reads its own default prompt). Token counts are the first model's (what the length baseline reads)."""
        if token_layers:
            raise ValueError("A pair of models gives end-of-instruction activations only; train attention probes on one model.")
        parts, truncated = [], [False] * len(questions)
        for source in self.sources:
            own = [depth_matched_layer(int(layer), self.n_layers, source.n_layers) for layer in layers]
            features, cut = source.features(questions, sorted(set(own)), max_length=max_length, data_hash=data_hash, use_cache=use_cache,
                                            progress=progress)
            parts.append((features, own))
            truncated = [a or b for a, b in zip(truncated, cut)]
        positions = tuple(sorted(set.intersection(*(set(features.positions) for features, _ in parts))))
        activations = None
        if layers:
            activations = np.concatenate([np.stack([features.activations[:, features.layers.index(layer)][:, [features.positions.index(p) for p in positions]]
                                                    for layer in own], axis=1) for features, own in parts], axis=-1)
        first, second = (features.model for features, _ in parts)
        prompt = PromptInfo(PAIR_PROMPT, sha256_text(first.prompt.template_hash, second.prompt.template_hash)[:16],
                            (*first.prompt.eoi_tokens, *second.prompt.eoi_tokens), positions, max_length)
        model = ModelInfo(self.fingerprint, self.display_id, self.hidden_size, self.n_layers, prompt)
        return Features(questions, parts[0][0].token_counts, activations, tuple(int(layer) for layer in layers), positions, model), truncated


def is_pair(spec: object) -> bool:
    """Whether a model spec or display id names two models (``"smollm2+gemma3-270m"``, ``"A + B"``)."""
    return isinstance(spec, str) and "+" in spec


def model_source(spec: str | None | LoadedModel | FeatureSource) -> FeatureSource:
    """The features of a model spec (an alias, path or Hub id; ``"a+b"`` for a pair; None for the default), of a loaded model,
    or a :class:`FeatureSource` as it is."""
    from probes_hub.extract.models import LoadedModel, load_model
    from probes_hub.extract.packaged import alias_for

    if isinstance(spec, LoadedModel):
        return ModelFeatures(spec)
    if spec is not None and not isinstance(spec, str):
        return spec
    if is_pair(spec):
        names = [part.strip() for part in spec.split("+")]
        if len(names) != 2 or not all(names):
            raise ValueError(f"A pair of models is given as 'first+second' (e.g. 'smollm2+gemma3-270m'), not {spec!r}.")
        first, second = (ModelFeatures(load_model(alias_for(name) or name)) for name in names)
        return PairedFeatures(first, second)
    return ModelFeatures(load_model(alias_for(spec) or spec))
