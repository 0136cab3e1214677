"""Run a decoder on right-padded prompt batches up to one block, with edits on the way: the analyses' one forward path.

Edits are context managers over hooks, so a run is "clean run + these edits" and nothing else differs:
- :func:`replace_head`: one attention head's output (the input slice of the output projection) set to zero or a mean;
- :func:`add_to_residual`: a vector added to one block's output at every token (steering);
- :func:`resume_at`: blocks before ``layer`` skipped and their recorded output injected (an ablation in block ``l``
  leaves blocks ``< l`` unchanged, so they are not run again).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from probes_hub.extract.activations import length_batches
from probes_hub.extract.models import LoadedModel


class _Stop(Exception):
    """Raised after the deepest block needed: the rest of the model and the LM head never run."""


@dataclass
class PromptBatch:
    """Prompts right-padded to the longest (causal attention never lets a token see the pads after it)."""

    rows: np.ndarray
    """Indices of these prompts in the caller's list."""
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    read_at: torch.Tensor
    """``[B]`` token index where the probe reads each prompt (its position counted from the prompt's end)."""

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())


def prompt_batches(prompt_ids: list[list[int]], position: int, *, pad_id: int, max_batch_tokens: int = 1024, max_batch_size: int = 32) -> list[PromptBatch]:
    """Prompts grouped by length (little padding) into batches of at most ``max_batch_tokens`` padded tokens."""
    batches = []
    for group in length_batches([len(p) for p in prompt_ids], max_batch_tokens=max_batch_tokens, max_batch_size=max_batch_size):
        width = max(len(prompt_ids[i]) for i in group)
        ids = torch.full((len(group), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for slot, index in enumerate(group):
            ids[slot, : len(prompt_ids[index])] = torch.tensor(prompt_ids[index])
            mask[slot, : len(prompt_ids[index])] = 1
        read_at = mask.sum(1) + position
        batches.append(PromptBatch(np.array(group), ids, mask, read_at))
    return batches


def n_heads(lm: LoadedModel) -> int:
    return int(lm.model.config.num_attention_heads)


def attention_output_projection(lm: LoadedModel, layer: int) -> torch.nn.Module:
    """Block ``layer``'s attention output projection, whose input is the heads' outputs side by side."""
    attention = lm.decoder_layers[layer].self_attn
    projection = getattr(attention, "o_proj", None)
    if projection is None:
        raise ValueError(f"{type(attention).__name__} has no o_proj; head analyses support Llama-style attention (Llama, Qwen, Gemma, SmolLM).")
    return projection


def run_to(lm: LoadedModel, batch: PromptBatch, layer: int, edits: Sequence[contextlib.AbstractContextManager] = (), *,
           inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """Block ``layer``'s output at each prompt's read position, ``[B, hidden]``, with ``edits`` active (grad follows the caller's mode)."""
    kept: dict[str, torch.Tensor] = {}

    def stop(_module, _inputs, output):
        hidden = _block_output(output)
        kept["h"] = hidden[torch.arange(hidden.shape[0]), batch.read_at.to(hidden.device)]
        raise _Stop

    position_ids = torch.arange(batch.input_ids.shape[1]).expand_as(batch.input_ids)
    with contextlib.ExitStack() as stack:
        stack.enter_context(lm.forward_lock)  # hooks and swapped blocks live on the shared model: one run at a time
        for edit in edits:
            stack.enter_context(edit)
        handle = lm.decoder_layers[layer].register_forward_hook(stop)
        stack.callback(handle.remove)
        inputs = {"inputs_embeds": inputs_embeds} if inputs_embeds is not None else {"input_ids": batch.input_ids.to(lm.device)}
        try:
            lm.model.get_decoder()(**inputs, attention_mask=batch.attention_mask.to(lm.device), position_ids=position_ids.to(lm.device), use_cache=False)
        except _Stop:
            pass
    return kept["h"]


@contextlib.contextmanager
def _removed_after(handles: list[torch.utils.hooks.RemovableHandle]) -> Iterator[None]:
    """Keep hooks registered for the duration of a ``with`` block."""
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _block_output(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def record_block_inputs(lm: LoadedModel, layers: Sequence[int], store: dict[int, torch.Tensor]) -> contextlib.AbstractContextManager:
    """Keep the input (residual stream) of each of ``layers`` in ``store`` during a run."""
    return _removed_after([lm.decoder_layers[layer].register_forward_pre_hook(
        lambda _module, args, layer=layer: store.__setitem__(layer, args[0].detach())) for layer in layers])


def record_head_outputs(lm: LoadedModel, layers: Sequence[int], store: dict[int, torch.Tensor]) -> contextlib.AbstractContextManager:
    """Keep each of ``layers``' attention heads' outputs ``[B, T, heads x head_dim]`` (the output projection's input, graph kept)."""
    return _removed_after([attention_output_projection(lm, layer).register_forward_pre_hook(
        lambda _module, args, layer=layer: store.__setitem__(layer, args[0])) for layer in layers])


def record_reads(lm: LoadedModel, layers: Sequence[int], batch: PromptBatch, store: dict[int, torch.Tensor]) -> contextlib.AbstractContextManager:
    """Keep each of ``layers``' block outputs at the batch's read positions, ``[B, hidden]``, in ``store``."""

    def keep(layer: int, output) -> None:
        hidden = _block_output(output)
        store[layer] = hidden[torch.arange(hidden.shape[0]), batch.read_at.to(hidden.device)].detach()

    return _removed_after([lm.decoder_layers[layer].register_forward_hook(lambda _module, _inputs, output, layer=layer: keep(layer, output))
                           for layer in layers])


def replace_head(lm: LoadedModel, layer: int, head: int, value: torch.Tensor | None = None) -> contextlib.AbstractContextManager:
    """Block ``layer``'s head ``head`` outputs ``value`` (``[head_dim]``; None: zeros) at every token instead of its own."""

    def hook(_module, args):
        z = args[0].clone()
        width = z.shape[-1] // n_heads(lm)
        z[..., head * width:(head + 1) * width] = 0.0 if value is None else value.to(z.dtype)
        return (z, *args[1:])

    return _removed_after([attention_output_projection(lm, layer).register_forward_pre_hook(hook)])


def add_to_residual(lm: LoadedModel, layer: int, vector: torch.Tensor) -> contextlib.AbstractContextManager:
    """Add ``vector`` to block ``layer``'s output at every token (generated ones too, when generating)."""

    def hook(_module, _inputs, output):
        if isinstance(output, tuple):
            return (output[0] + vector.to(output[0].dtype), *output[1:])
        return output + vector.to(output.dtype)

    return _removed_after([lm.decoder_layers[layer].register_forward_hook(hook)])


class _PassThrough(torch.nn.Module):
    """A skipped block: returns its input (the run resumes from a recorded residual stream further on)."""

    def __init__(self, block: torch.nn.Module):
        super().__init__()
        self.attention_type = getattr(block, "attention_type", None)  # read by some decoders' loops (Gemma-3)

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


@contextlib.contextmanager
def resume_at(lm: LoadedModel, layer: int, residual: torch.Tensor) -> Iterator[None]:
    """Skip blocks ``< layer`` and start block ``layer`` from ``residual`` (its recorded input for the same batch)."""
    blocks = lm.decoder_layers
    originals = [blocks[i] for i in range(layer)]

    def inject(_module, args, kwargs):
        return (residual, *args[1:]), kwargs

    for i in range(layer):
        blocks[i] = _PassThrough(originals[i])
    handle = blocks[layer].register_forward_pre_hook(inject, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
        for i, block in enumerate(originals):
            blocks[i] = block

