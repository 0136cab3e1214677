"""The one input type every probe reads: activations plus the question texts and prompt token counts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probes_hub.hub.records import ModelInfo


@dataclass
class Features:
    """What probes can read about N questions.

    ``activations`` has shape ``[N, len(layers), len(positions), hidden]`` and may be ``None`` for
    text-only probes; ``token_counts`` are the templated prompt lengths (the length baseline's input).
    ``model`` names the model and prompt format they came from (None for bare text), which a probe
    fitted on them records.
    """

    questions: list[str]
    token_counts: np.ndarray
    activations: np.ndarray | None = None
    layers: tuple[int, ...] = ()
    positions: tuple[int, ...] = ()
    model: ModelInfo | None = None

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
        return Features([self.questions[i] for i in rows], self.token_counts[rows], acts, self.layers, self.positions, self.model)
