"""Packed forward passes: several prompts in one unpadded row, each attending only to itself.

On CPU a forward pass per prompt leaves the matmuls short (about 100 rows) and padded batches spend
work on padding. Packing concatenates prompts into one row of up to a token budget (long matmuls, no
padding) and runs attention prompt by prompt through a registered ``transformers`` attention function,
so every prompt sees exactly what it would see alone. A shared template prefix is attended to from
stored keys and values. Each prompt's attention is the same square causal kernel call an unpacked pass
makes, so on CPU the activations are bit-identical to the naive forward pass (eval/bench_extract.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ATTENTION_NAME = "probes_hub_packed"


class PackingUnsupported(RuntimeError):
    """The model's attention cannot be run per packed prompt (it bypasses the attention interface, or uses
    sliding windows, logit soft-capping or attention sinks)."""


@dataclass
class Packing:
    """What one packed forward pass tells the attention function: where each prompt lies, and the prefix."""

    segments: list[tuple[int, int]]
    prefix_states: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    calls: int = 0


def pack_groups(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Consecutive prompt indices whose lengths sum to at most ``max_tokens`` (a longer prompt goes alone)."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index, length in enumerate(lengths):
        if current and used + length > max_tokens:
            groups.append(current)
            current, used = [], 0
        current.append(index)
        used += length
    if current:
        groups.append(current)
    return groups


def packed_sdpa(module, query, key, value, attention_mask, scaling=None, dropout=0.0, packing: Packing | None = None, **kwargs):
    """Causal attention within each packed prompt (plus the shared prefix); returns ``[1, T, heads, head_dim]``."""
    if packing is None:
        raise RuntimeError(f"The '{ATTENTION_NAME}' attention needs a `packing=` argument; use probes_hub.extract.activations.extract.")
    if getattr(module, "sliding_window", None) or getattr(module, "sinks", None) is not None \
            or getattr(module.config, "attn_logit_softcapping", None):
        raise PackingUnsupported(f"{type(module).__name__} uses sliding windows, sinks or soft-capping")
    packing.calls += 1
    prefix_keys = prefix_values = None
    if packing.prefix_states:
        prefix_keys, prefix_values = packing.prefix_states[module.layer_idx]
    outputs = []
    for start, end in packing.segments:
        q, k, v = query[:, :, start:end], key[:, :, start:end], value[:, :, start:end]
        if prefix_keys is not None:
            # Zero queries stand in for the prefix rows (their outputs are dropped), so the call stays the
            # square causal one an unpacked forward pass makes and the results stay bit-identical.
            q = torch.cat([q.new_zeros(*q.shape[:2], prefix_keys.shape[2], q.shape[3]), q], dim=2)
            k, v = torch.cat([prefix_keys, k], dim=2), torch.cat([prefix_values, v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, enable_gqa=True)
        outputs.append(out[:, :, out.shape[2] - (end - start):])
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


@contextmanager
def packed_attention(model: torch.nn.Module) -> Iterator[None]:
    """Switch ``model`` to :func:`packed_sdpa` for the duration (callers hold the model's forward lock)."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, packed_sdpa)
    config = model.config
    previous = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        config._attn_implementation = previous
