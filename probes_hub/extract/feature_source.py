"""Where probes' inputs come from: questions in, :class:`Features` out (prompt lengths and EOI activations).

:class:`ModelFeatures` runs a loaded model in this process. The app can instead use a model in a worker
process (``space_app.model_worker``) through the same interface, so probes and their callers never
depend on where the model lives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from probes_hub.constants import MAX_PROMPT_TOKENS
from probes_hub.extract.features import Features
from probes_hub.schema.records import ModelInfo, PromptInfo

if TYPE_CHECKING:  # the module stays free of torch, so a process without the model can import it
    from probes_hub.extract.models import LoadedModel


class FeatureSource(Protocol):
    """A model's identity (what probes record) and the features it gives for questions."""

    fingerprint: str
    display_id: str
    hidden_size: int
    n_layers: int
    dtype: str
    """The precision of the model's forward pass (``"float32"``, ``"bfloat16"``)."""

    def in_dtype(self, dtype: str) -> FeatureSource:
        """The same model's features in precision ``dtype`` (itself when already in it)."""
        ...

    def features(self, questions: list[str], layers: list[int], *, chat: bool | None = None, max_length: int = MAX_PROMPT_TOKENS,
                 data_hash: str | None = None, use_cache: bool = False, progress: bool = False,
                 token_layers: list[int] = ()) -> tuple[Features, list[bool]]:
        """Features of ``questions`` at ``layers`` x the EOI positions (and every token at ``token_layers``), and which questions were truncated.

        ``chat``: the chat template (True) or the raw question/answer prompt (False); None: the model's own default."""
        ...


class ModelFeatures:
    """A :class:`FeatureSource` over a model loaded in this process."""

    def __init__(self, lm: LoadedModel):
        self.lm = lm
        self.fingerprint, self.display_id, self.hidden_size, self.n_layers = lm.fingerprint, lm.display_id, lm.hidden_size, lm.n_layers
        self.dtype = lm.dtype_name
        self._in_dtypes: dict[str, ModelFeatures] = {self.dtype: self}

    def in_dtype(self, dtype: str) -> ModelFeatures:
        """A converted copy of the model in ``dtype``, made on first use and kept."""
        if dtype not in self._in_dtypes:
            self._in_dtypes[dtype] = ModelFeatures(self.lm.in_dtype(dtype))
        return self._in_dtypes[dtype]

    def features(self, questions: list[str], layers: list[int], *, chat: bool | None = None, max_length: int = MAX_PROMPT_TOKENS,
                 data_hash: str | None = None, use_cache: bool = False, progress: bool = False,
                 token_layers: list[int] = ()) -> tuple[Features, list[bool]]:
        """Template and encode the questions, then extract (through the activation caches when ``use_cache``)."""
        from probes_hub.extract.activations import cached_extract, extract_with_tokens
        from probes_hub.extract.prompts import encode_prompts, eoi_tokens
        from probes_hub.extract.tokens import token_states

        fmt = self.lm.prompt_format(chat)
        model = ModelInfo(self.lm.fingerprint, self.lm.display_id, self.lm.hidden_size, self.lm.n_layers,
                          PromptInfo(fmt.mode, fmt.template_hash, tuple(eoi_tokens(fmt, self.lm.tokenizer)), tuple(fmt.eoi_positions), max_length))
        prompt_ids, truncated = encode_prompts(questions, fmt, self.lm.tokenizer, max_length=max_length)
        acts = None
        if layers and token_layers and not (use_cache and data_hash):  # serving: one forward pass for both
            acts, tokens = extract_with_tokens(self.lm, prompt_ids, list(layers), fmt.eoi_positions, list(token_layers),
                                               shared_prefix=fmt.prefix_ids, progress=progress)
            return Features(questions, np.array([len(p) for p in prompt_ids]), acts, tuple(layers), tuple(fmt.eoi_positions), model, tokens), list(truncated)
        if layers:
            acts = cached_extract(self.lm, fmt, questions, list(layers), fmt.eoi_positions, max_length=max_length, data_hash=data_hash,
                                  use_cache=use_cache, progress=progress, prompt_ids=prompt_ids)
        tokens = {int(layer): token_states(self.lm, fmt, prompt_ids, int(layer), max_length=max_length, data_hash=data_hash,
                                           use_cache=use_cache, progress=progress) for layer in token_layers}
        features = Features(questions, np.array([len(p) for p in prompt_ids]), acts, tuple(layers), tuple(fmt.eoi_positions), model, tokens)
        return features, list(truncated)
