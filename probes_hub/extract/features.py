"""The one input type every probe reads: activations plus the question texts and prompt token counts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from probes_hub.schema.records import ModelInfo


@dataclass
class TokenStates:
    """One layer's activations at every prompt token after the template's shared prefix, for N questions.

    ``values [sum of T_i, hidden]`` holds the questions one after another (float16 to halve memory and cache
    size); question ``i`` is ``values[offsets[i]:offsets[i + 1]]``. What attention probes read.
    """

    layer: int
    values: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def question(self, index: int) -> np.ndarray:
        return self.values[self.offsets[index]:self.offsets[index + 1]]

    def take(self, rows: np.ndarray) -> TokenStates:
        """The questions at ``rows`` (indices), copied into one new array."""
        parts = [self.question(int(i)) for i in rows]
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        values = np.concatenate(parts) if parts else self.values[:0]
        return TokenStates(self.layer, values, offsets)

    def padded(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(X [B, T, hidden] float32, mask [B, T] bool)`` for the questions at ``rows``, right-padded to the longest."""
        lengths = self.lengths[rows]
        X = np.zeros((len(rows), int(lengths.max(initial=1)), self.values.shape[1]), dtype=np.float32)
        mask = np.zeros(X.shape[:2], dtype=bool)
        for slot, (index, length) in enumerate(zip(rows, lengths)):
            X[slot, :length] = self.question(int(index))
            mask[slot, :length] = True
        return X, mask


@dataclass
class Features:
    """What probes can read about N questions.

    ``activations`` has shape ``[N, len(layers), len(positions), hidden]`` and may be ``None`` for
    text-only probes; ``token_counts`` are the templated prompt lengths (the length baseline's input).
    ``model`` names the model and prompt format they came from (None for bare text), which a probe
    fitted on them records. ``tokens`` holds, per requested layer, the activations at every prompt token.
    """

    questions: list[str]
    token_counts: np.ndarray
    activations: np.ndarray | None = None
    layers: tuple[int, ...] = ()
    positions: tuple[int, ...] = ()
    model: ModelInfo | None = None
    tokens: dict[int, TokenStates] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.questions)

    def at(self, layer: int, position: int) -> np.ndarray:
        """Activations ``[N, hidden]`` at one (layer, position), with a clear error when not extracted."""
        if self.activations is None:
            raise ValueError("These features carry no activations; extract them with the probe's model first.")
        if layer not in self.layers or position not in self.positions:
            raise ValueError(f"Need layer {layer}, position {position}; extracted layers {list(self.layers)}, positions {list(self.positions)}.")
        return self.activations[:, self.layers.index(layer), self.positions.index(position)]

    def take(self, rows: np.ndarray) -> Features:
        """The subset of questions at ``rows`` (indices or boolean mask)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        acts = None if self.activations is None else self.activations[rows]
        tokens = {layer: states.take(rows) for layer, states in self.tokens.items()}
        return Features([self.questions[i] for i in rows], self.token_counts[rows], acts, self.layers, self.positions, self.model, tokens)

    def token_states(self, layer: int) -> TokenStates:
        """The per-token activations at ``layer``, with a clear error when they were not extracted."""
        if layer not in self.tokens:
            have = ", ".join(f"layer {v}" for v in self.tokens) or "none"
            raise ValueError(f"Need every prompt token's activations at layer {layer}; these features carry {have}. "
                             "Extract them with token_layers=[...] (the probe's token_layer() tells which).")
        return self.tokens[layer]
