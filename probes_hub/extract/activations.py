"""Residual-stream activations at chosen layers x EOI positions, with early exit and a disk cache.

Forward hooks on the decoder blocks keep the block outputs at the requested positions; the hook on the
deepest requested block raises to stop the forward pass there, so deeper blocks and the LM head are
never computed. Every templated prompt starts with the same tokens (system turn, user header): with
``shared_prefix`` their keys and values are computed once per model and reused, so each forward pass
covers only the question and EOI tokens.

Two ways to batch prompts:
- packed (CPU default): prompts concatenated into rows of up to ``max_batch_tokens`` tokens, attention
  run per prompt (:mod:`probes_hub.extract.packing`); long matmuls, no padding, bit-identical to the naive pass.
- padded (GPU default): prompts sorted by length and right-padded, with explicit position ids so padding
  does not shift rotary positions; each prompt's EOI tokens are read at its own end.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save

from probes_hub.atomic import atomic_write_bytes, atomic_write_text
from probes_hub.cache import cache_dir, sha256_text
from probes_hub.constants import MAX_PROMPT_TOKENS
from probes_hub.extract.engine import current_extractor
from probes_hub.extract.features import TokenStates
from probes_hub.extract.models import LoadedModel
from probes_hub.extract.packing import Packing, PackingUnsupported, pack_groups, packed_attention
from probes_hub.extract.prompts import PromptFormat, encode_prompts
from probes_hub.progress import progress_bar

logger = logging.getLogger(__name__)

PACKED_BATCH_TOKENS = 1024
"""Tokens per packed row: the fastest of 512-4096 on a 2-core CPU (eval/bench_extract.py)."""
PADDED_BATCH_TOKENS = 16384


class _StopForward(Exception):
    """Raised by the deepest hook to end the forward pass early."""


def length_batches(lengths: list[int], *, max_batch_tokens: int = 8192, max_batch_size: int = 64) -> list[list[int]]:
    """Group prompt indices of similar length so that padded batches stay under a token budget."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches, current = [], []
    for index in order:
        widest = max(lengths[index], *(lengths[j] for j in current[-1:])) if current else lengths[index]
        if current and (len(current) + 1 > max_batch_size or (len(current) + 1) * widest > max_batch_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


class _RowsOnly(torch.nn.Module):
    """``inner`` applied only at the rows being kept (zeros elsewhere): the deepest block's MLP, whose other rows nobody reads."""

    def __init__(self, inner: torch.nn.Module, outputs: _BlockOutputs):
        super().__init__()
        self.inner, self.outputs = inner, outputs

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        flat = hidden.reshape(-1, hidden.shape[-1])
        rows = self.outputs.rows.to(hidden.device)
        result = torch.zeros_like(flat)
        result[rows] = self.inner(flat[rows])
        return result.view_as(hidden)


class _BlockOutputs:
    """Forward hooks that keep chosen rows of the requested blocks' outputs and stop after the deepest block.

    The deepest block's MLP (most of a block's work) runs only on the kept rows.
    """

    def __init__(self, lm: LoadedModel, layers: list[int]):
        self.layers, self.deepest = layers, max(layers)
        self.rows = torch.zeros(0, dtype=torch.long)
        self.kept: dict[int, torch.Tensor] = {}
        self.handles = [lm.decoder_layers[layer].register_forward_hook(self._hook(layer)) for layer in sorted(set(layers))]
        self.last_block = lm.decoder_layers[self.deepest]
        self.full_mlp = getattr(self.last_block, "mlp", None)
        if isinstance(self.full_mlp, torch.nn.Module):
            self.last_block.mlp = _RowsOnly(self.full_mlp, self)

    def _hook(self, layer: int):
        def hook(_module, _inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            self.kept[layer] = hidden.reshape(-1, hidden.shape[-1])[self.rows].float().cpu()
            if layer == self.deepest:
                raise _StopForward

        return hook

    def run(self, forward: Callable[[], object], rows: torch.Tensor) -> torch.Tensor:
        """``[len(rows), len(layers), hidden]``: the blocks' outputs at flat (batch x sequence) ``rows``."""
        self.rows = rows
        self.kept.clear()
        try:
            forward()
        except _StopForward:
            pass
        return torch.stack([self.kept[layer] for layer in self.layers], dim=1)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        if isinstance(self.full_mlp, torch.nn.Module):
            self.last_block.mlp = self.full_mlp


def extract(
    lm: LoadedModel,
    prompt_ids: list[list[int]],
    layers: list[int],
    positions: list[int],
    *,
    shared_prefix: Sequence[int] = (),
    packed: bool | None = None,
    max_batch_tokens: int | None = None,
    max_batch_size: int = 64,
    progress: bool = True,
) -> np.ndarray:
    """Activations of shape ``[N, len(layers), len(positions), hidden]`` (float32).

    Args:
        layers: decoder block indices in ``[0, n_layers)``; the value is the block's output (residual stream).
        positions: negative offsets from the end of each prompt (e.g. the EOI positions).
        shared_prefix: tokens every prompt starts with (the template's prefix); their keys and values are
            computed once and reused. Ignored when a prompt does not start with them or a position would fall inside them.
        packed: pack prompts into unpadded rows (default on CPU) rather than pad them (default on GPU).
            Models whose attention cannot be packed fall back to padding.
        max_batch_tokens: tokens per forward pass (default 1024 packed, 16384 padded).
        max_batch_size: prompts per padded batch.
    """
    if not positions or max(positions) >= 0 or min(positions) < -min(len(p) for p in prompt_ids):
        raise ValueError(f"positions must be negative offsets within every prompt, got {positions}")
    out = np.zeros((len(prompt_ids), len(layers), len(positions), lm.hidden_size), dtype=np.float32)
    for batch, rows in _batched_outputs(lm, prompt_ids, layers, positions, shared_prefix=shared_prefix, packed=packed,
                                        max_batch_tokens=max_batch_tokens, max_batch_size=max_batch_size, progress=progress):
        out[batch] = rows.reshape(len(batch), len(positions), len(layers), -1).transpose(1, 2).numpy()
    return out


def extract_tokens(lm: LoadedModel, prompt_ids: list[list[int]], layer: int, *, shared_prefix: Sequence[int] = (),
                   packed: bool | None = None, max_batch_tokens: int | None = None, progress: bool = True) -> Iterator[tuple[list[int], list[np.ndarray]]]:
    """Block ``layer``'s output at every token after the shared prefix, one batch at a time: ``(indices, [T_i, hidden] arrays)``.

    A generator, so a caller can write each batch to disk and hold no more than one batch (what attention
    probes read: the question's tokens and the template's end-of-instruction tokens).
    """
    skipped = shared_prefix_length(prompt_ids, shared_prefix)
    for batch, rows in _batched_outputs(lm, prompt_ids, [layer], None, shared_prefix=shared_prefix, packed=packed,
                                        max_batch_tokens=max_batch_tokens, progress=progress):
        lengths = [len(prompt_ids[i]) - skipped for i in batch]
        yield batch, [part[:, 0].numpy() for part in torch.split(rows, lengths)]


def extract_with_tokens(lm: LoadedModel, prompt_ids: list[list[int]], layers: list[int], positions: list[int], token_layers: list[int], *,
                        shared_prefix: Sequence[int] = (), progress: bool = True) -> tuple[np.ndarray, dict[int, TokenStates]]:
    """:func:`extract`'s EOI activations and :func:`extract_tokens`' every-token states from one forward pass per batch.

    What serving needs for a few questions at a time (the attention probe reads every token, the others the EOI
    tokens): two passes would cost nearly twice as much. Datasets go through the caches instead.
    """
    every = sorted({*map(int, layers), *map(int, token_layers)})
    prefix = list(shared_prefix) if shared_prefix_length(prompt_ids, shared_prefix, positions) else []
    lengths = np.array([len(p) - len(prefix) for p in prompt_ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    acts = np.zeros((len(prompt_ids), len(layers), len(positions), lm.hidden_size), dtype=np.float32)
    values = {layer: np.zeros((int(offsets[-1]), lm.hidden_size), dtype=np.float16) for layer in token_layers}  # as the token cache keeps them
    eoi, columns = torch.tensor(positions), [every.index(int(layer)) for layer in layers]
    for batch, rows in _batched_outputs(lm, prompt_ids, every, None, shared_prefix=prefix, packed=None, progress=progress):
        for index, part in zip(batch, torch.split(rows, [int(lengths[i]) for i in batch])):  # part: [tokens, len(every), hidden]
            acts[index] = part[len(part) + eoi][:, columns].transpose(0, 1).numpy()
            for layer in token_layers:
                values[layer][offsets[index]:offsets[index + 1]] = part[:, every.index(int(layer))].numpy()
    return acts, {int(layer): TokenStates(int(layer), values[layer], offsets) for layer in token_layers}


def shared_prefix_length(prompt_ids: list[list[int]], shared_prefix: Sequence[int], positions: list[int] | None = None) -> int:
    """Length of the shared prefix the forward passes skip (0 when some prompt does not start with it or a position falls in it)."""
    prefix = list(shared_prefix)
    deepest = -min(positions) if positions else 1
    if any(list(p[: len(prefix)]) != prefix or len(p) - len(prefix) < deepest for p in prompt_ids):
        return 0
    return len(prefix)


def _batched_outputs(lm: LoadedModel, prompt_ids: list[list[int]], layers: list[int], positions: list[int] | None, *,
                     shared_prefix: Sequence[int], packed: bool | None, max_batch_tokens: int | None = None, max_batch_size: int = 64,
                     progress: bool = True) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Batches of prompts run to the deepest of ``layers``: ``(indices, rows)``, rows ordered (prompt, position, layer).

    ``positions=None`` keeps every token after the shared prefix. Falls back from packed to padded batches
    when the model's attention cannot be packed (and ``packed`` was not forced).
    """
    layers = [int(layer) for layer in layers]
    if not layers or min(layers) < 0 or max(layers) >= lm.n_layers:
        raise ValueError(f"layers must be within [0, {lm.n_layers}), got {layers}")
    auto = packed is None
    packed = lm.device.type == "cpu" if auto else packed
    max_batch_tokens = max_batch_tokens or (PACKED_BATCH_TOKENS if packed else PADDED_BATCH_TOKENS)
    prefix = list(shared_prefix)[: shared_prefix_length(prompt_ids, shared_prefix, positions)]
    questions = [p[len(prefix):] for p in prompt_ids]
    done = 0
    with lm.forward_lock:
        prefix_states = _prefix_states(lm, prefix, max(layers)) if prefix else None
        outputs = _BlockOutputs(lm, layers)
        try:
            with torch.inference_mode(), progress_bar(total=len(prompt_ids), desc="Extracting activations", disable=not progress) as bar:
                if packed:
                    batches = pack_groups([len(q) for q in questions], max_batch_tokens)
                    run_batch = _packed_batch
                else:
                    batches = length_batches([len(q) for q in questions], max_batch_tokens=max_batch_tokens, max_batch_size=max_batch_size)
                    run_batch = _padded_batch
                for batch in batches:
                    rows = run_batch(lm, outputs, [questions[i] for i in batch], positions, prefix_states)
                    done += 1
                    yield batch, rows
                    bar.update(len(batch))
        except PackingUnsupported as error:
            if not auto or done:
                raise ValueError(f"{lm.display_id} cannot be extracted packed ({error}); pass packed=False") from error
            logger.info("Packed extraction unsupported for %s (%s); padding instead", lm.display_id, error)
            packed = None
        finally:
            outputs.remove()
    if packed is None:
        yield from _batched_outputs(lm, prompt_ids, layers, positions, shared_prefix=shared_prefix, packed=False,
                                    max_batch_size=max_batch_size, progress=progress)


def _packed_batch(lm: LoadedModel, outputs: _BlockOutputs, questions: list[list[int]], positions: list[int] | None, prefix_states) -> torch.Tensor:
    """One forward pass over ``questions`` concatenated; rows ordered (question, position), every token when ``positions`` is None."""
    lengths = torch.tensor([len(q) for q in questions])
    ends = lengths.cumsum(0)
    starts = ends - lengths
    prefix_length = prefix_states[0][0].shape[2] if prefix_states else 0
    input_ids = torch.tensor([token for q in questions for token in q]).unsqueeze(0)
    position_ids = torch.cat([torch.arange(int(n)) for n in lengths]).unsqueeze(0) + prefix_length
    packing = Packing(list(zip(starts.tolist(), ends.tolist())), prefix_states)
    decoder = lm.model.get_decoder()

    def forward():
        with packed_attention(lm.model):
            decoder(input_ids=input_ids.to(lm.device), position_ids=position_ids.to(lm.device), use_cache=False, packing=packing)

    keep = torch.arange(int(ends[-1])) if positions is None else (ends[:, None] + torch.tensor(positions)[None, :]).reshape(-1)
    rows = outputs.run(forward, keep)
    if packing.calls == 0:
        raise PackingUnsupported(f"{type(lm.model).__name__} does not call the attention interface")
    return rows


def _padded_batch(lm: LoadedModel, outputs: _BlockOutputs, questions: list[list[int]], positions: list[int] | None, prefix_states) -> torch.Tensor:
    """One forward pass over ``questions`` right-padded to the longest; rows ordered (question, position), every token when ``positions`` is None.

    Right padding keeps each prompt contiguous after the shared prefix, at its natural positions: under causal attention its
    tokens never see the padding, so its activations do not depend on the other prompts of the batch (left padding put
    the pads between the prefix and the question, which sliding-window attention, e.g. Gemma-3's, does not mask exactly).
    """
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    input_ids, attention_mask = _right_pad(questions, pad_id)
    prefix_length = prefix_states[0][0].shape[2] if prefix_states else 0
    position_ids = torch.arange(input_ids.shape[1]).expand_as(input_ids) + prefix_length
    past = _repeat_cache(prefix_states, len(questions)) if prefix_states else None
    if prefix_states:
        attention_mask = torch.cat([torch.ones(len(questions), prefix_length, dtype=attention_mask.dtype), attention_mask], dim=1)
    width = input_ids.shape[1]

    def forward():
        lm.model.get_decoder()(input_ids=input_ids.to(lm.device), attention_mask=attention_mask.to(lm.device),
                               position_ids=position_ids.to(lm.device), past_key_values=past, use_cache=past is not None)

    if positions is None:
        return outputs.run(forward, torch.flatten(attention_mask[:, -width:]).nonzero()[:, 0])
    lengths = torch.tensor([len(q) for q in questions])
    rows = torch.arange(len(questions))[:, None] * width + lengths[:, None] + torch.tensor(positions)[None, :]
    return outputs.run(forward, rows.reshape(-1))


def _prefix_states(lm: LoadedModel, prefix: list[int], deepest: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Keys and values of ``prefix`` for blocks ``0..deepest``: computed once per (model, prefix) and kept on ``lm``.

    Uses the same early exit as extraction; a request deeper than what is stored recomputes them.
    """
    from transformers import DynamicCache

    key = tuple(prefix)
    stored = lm.prefix_states.get(key)
    if stored is None or len(stored) <= deepest:
        cache = DynamicCache()
        stop = lm.decoder_layers[deepest].register_forward_hook(_raise_stop)
        try:
            with torch.inference_mode():
                lm.model.get_decoder()(input_ids=torch.tensor([prefix], device=lm.device), past_key_values=cache, use_cache=True)
        except _StopForward:
            pass
        finally:
            stop.remove()
        stored = [(layer.keys, layer.values) for layer in cache.layers[: deepest + 1]]
        lm.prefix_states[key] = stored
    return stored[: deepest + 1]


def _repeat_cache(states: list[tuple[torch.Tensor, torch.Tensor]], batch_size: int):
    """A fresh cache (the forward pass appends to it) holding ``states`` for each of ``batch_size`` rows."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(k.expand(batch_size, -1, -1, -1), v.expand(batch_size, -1, -1, -1)) for k, v in states])


def _raise_stop(_module, _inputs, _output):
    raise _StopForward


def _right_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def cached_extract(
    lm: LoadedModel,
    fmt: PromptFormat,
    questions: list[str],
    layers: list[int],
    positions: list[int],
    *,
    max_length: int = MAX_PROMPT_TOKENS,
    data_hash: str | None = None,
    use_cache: bool = True,
    progress: bool = True,
    prompt_ids: list[list[int]] | None = None,
) -> np.ndarray:
    """:func:`extract` on templated questions with a disk cache (``prompt_ids``: the questions already encoded, if the caller has them).

    The cache file is keyed by model fingerprint + data hash + template + max length + positions and holds
    one array per layer, so a later request for any subset of cached layers is a pure read and a request
    for new layers extracts only those and adds them to the file.
    """
    data_hash = data_hash or sha256_text(*questions)[:16]
    key = sha256_text(lm.fingerprint, data_hash, fmt.template_hash, str(max_length), str(list(positions)))[:16]
    path = cache_dir("activations", sha256_text(lm.fingerprint)[:16]) / f"{data_hash}-{fmt.template_hash}-{key}.safetensors"
    wanted = [f"layer_{layer}" for layer in layers]
    cached = _read_layers(path, wanted) if use_cache and path.exists() else {}  # just the layers asked for, when the file has them all
    if use_cache and path.exists() and set(cached) != set(wanted):
        cached = _read_layers(path)  # some are missing: read every layer, so that the rewritten file keeps them
    if any(len(array) != len(questions) for array in cached.values()):  # the same key for other questions: never serve them
        logger.warning("Activation cache %s holds another number of questions than asked for; extracting again", path)
        cached = {}
    missing = [layer for layer in layers if f"layer_{layer}" not in cached]
    if not missing:
        logger.info("Loaded activations from cache: %s", path)
        if progress:
            print(f"Activations loaded from cache ({path})", file=sys.stderr)
        return np.stack([cached[f"layer_{layer}"] for layer in layers], axis=1)
    if prompt_ids is None:
        prompt_ids, _ = encode_prompts(questions, fmt, lm.tokenizer, max_length=max_length)
    fresh = (current_extractor() or extract)(lm, prompt_ids, missing, positions, shared_prefix=fmt.prefix_ids, progress=progress)
    cached.update({f"layer_{layer}": np.ascontiguousarray(fresh[:, i]) for i, layer in enumerate(missing)})
    if use_cache:
        atomic_write_bytes(path, save(cached))
        meta = {"fingerprint": lm.fingerprint, "data_hash": data_hash, "template_hash": fmt.template_hash,
                "max_length": max_length, "positions": list(positions), "n": len(questions),
                "layers": sorted(int(k.split("_")[1]) for k in cached)}
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2))
        logger.info("Cached activations: %s", path)
    return np.stack([cached[f"layer_{layer}"] for layer in layers], axis=1)


def _read_layers(path, keys: list[str] | None = None) -> dict[str, np.ndarray]:
    """The per-layer arrays of a cache file (``keys`` only, those it has; all by default); an unreadable file counts as empty
    (it is rewritten)."""
    try:
        with safe_open(str(path), framework="numpy") as handle:
            return {key: handle.get_tensor(key) for key in (keys if keys is not None else handle.keys()) if key in handle.keys()}
    except Exception as error:  # a torn or foreign file: extract again rather than fail
        logger.warning("Ignoring unreadable activation cache %s (%s)", path, error)
        return {}
