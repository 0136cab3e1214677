"""Every prompt token's activations at one layer, streamed to a chunked disk cache so memory stays bounded.

Attention probes read all of a question's tokens, not only the EOI ones: for a dataset that is far more
than fits comfortably at once (MATH train: about 0.8 M tokens x 576 floats), so extraction writes float16
chunks of a few hundred questions each into a temp folder that is renamed into place when complete. A
read assembles one float16 array in dataset order (:class:`~probes_hub.extract.features.TokenStates`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from probes_hub.atomic import atomic_folder
from probes_hub.cache import cache_dir, sha256_text
from probes_hub.extract.activations import extract_tokens, shared_prefix_length
from probes_hub.extract.features import TokenStates
from probes_hub.extract.models import LoadedModel
from probes_hub.extract.prompts import PromptFormat

logger = logging.getLogger(__name__)

CHUNK_QUESTIONS = 256
"""Questions per cache chunk: what extraction holds in memory before writing (about 20 MB for MATH questions)."""
META_NAME = "meta.json"
STORED_DTYPE = np.float16


def token_cache_folder(lm: LoadedModel, fmt: PromptFormat, data_hash: str, layer: int, max_length: int) -> Path:
    """The cache folder of one (model, data, template, max length, layer)."""
    key = sha256_text(lm.fingerprint, data_hash, fmt.template_hash, str(max_length), f"tokens@{layer}")[:16]
    return cache_dir("tokens", sha256_text(lm.fingerprint)[:16]) / f"{data_hash}-{fmt.template_hash}-layer{layer}-{key}"


def token_states(lm: LoadedModel, fmt: PromptFormat, prompt_ids: list[list[int]], layer: int, *, max_length: int,
                 data_hash: str | None = None, use_cache: bool = True, progress: bool = True,
                 chunk_questions: int = CHUNK_QUESTIONS, max_batch_tokens: int | None = None) -> TokenStates:
    """Layer ``layer``'s output at every token after the shared prefix of each prompt, through the chunked cache.

    Without ``data_hash`` (or with ``use_cache=False``) nothing is written: batches go straight into the result.
    A chunk is written once it holds ``chunk_questions`` questions (or at the end).
    """
    prefix = shared_prefix_length(prompt_ids, fmt.prefix_ids)
    lengths = np.array([len(p) - prefix for p in prompt_ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    if not (use_cache and data_hash):
        values = np.zeros((int(offsets[-1]), lm.hidden_size), dtype=STORED_DTYPE)
        for batch, parts in extract_tokens(lm, prompt_ids, layer, shared_prefix=fmt.prefix_ids, max_batch_tokens=max_batch_tokens, progress=progress):
            for index, part in zip(batch, parts):
                values[offsets[index]:offsets[index + 1]] = part
        return TokenStates(layer, values, offsets)
    folder = token_cache_folder(lm, fmt, data_hash, layer, max_length)
    if not (folder / META_NAME).exists():
        _write_chunks(lm, fmt, prompt_ids, layer, folder, chunk_questions=chunk_questions, max_batch_tokens=max_batch_tokens, progress=progress)
    return read_token_cache(folder, offsets, lm.hidden_size, layer)


def _write_chunks(lm: LoadedModel, fmt: PromptFormat, prompt_ids: list[list[int]], layer: int, folder: Path, *,
                  chunk_questions: int, max_batch_tokens: int | None, progress: bool) -> None:
    """Extract and write chunk files into a temp folder, then rename it into place (a torn run leaves no cache behind)."""
    pending_index: list[int] = []
    pending_parts: list[np.ndarray] = []
    written = 0

    def flush() -> None:
        nonlocal written
        if not pending_index:
            return
        save_file({"index": np.array(pending_index, dtype=np.int64), "lengths": np.array([len(p) for p in pending_parts], dtype=np.int64),
                   "values": np.concatenate(pending_parts).astype(STORED_DTYPE)}, str(building / f"chunk-{written:05d}.safetensors"))
        written += 1
        pending_index.clear()
        pending_parts.clear()

    with atomic_folder(folder) as building:
        for batch, parts in extract_tokens(lm, prompt_ids, layer, shared_prefix=fmt.prefix_ids, max_batch_tokens=max_batch_tokens, progress=progress):
            pending_index.extend(batch)
            pending_parts.extend(parts)
            if len(pending_index) >= chunk_questions:
                flush()
        flush()
        meta = {"fingerprint": lm.fingerprint, "layer": layer, "n": len(prompt_ids), "chunks": written, "dtype": "float16"}
        (building / META_NAME).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    logger.info("Cached token activations: %s", folder)


def read_token_cache(folder: Path, offsets: np.ndarray, hidden_size: int, layer: int) -> TokenStates:
    """Assemble a complete cache folder's chunks in dataset order; a chunk that disagrees with ``offsets`` is an error."""
    values = np.zeros((int(offsets[-1]), hidden_size), dtype=STORED_DTYPE)
    seen = np.zeros(len(offsets) - 1, dtype=bool)
    for path in sorted(folder.glob("chunk-*.safetensors")):
        chunk = load_file(str(path))
        starts = np.concatenate([[0], np.cumsum(chunk["lengths"])])
        for slot, index in enumerate(chunk["index"]):
            if offsets[index + 1] - offsets[index] != chunk["lengths"][slot]:
                raise ValueError(f"Token cache {folder} does not match these prompts (question {index}); delete it to extract again.")
            values[offsets[index]:offsets[index + 1]] = chunk["values"][starts[slot]:starts[slot + 1]]
            seen[index] = True
    if not seen.all():
        raise ValueError(f"Token cache {folder} lacks {int((~seen).sum())} question(s); delete it to extract again.")
    return TokenStates(layer, values, offsets)


def cache_bytes(folder: Path) -> int:
    """Disk size of one token cache folder."""
    return sum(path.stat().st_size for path in folder.glob("*"))
