"""Shared fixtures: a tiny random Llama with an in-memory word-level tokenizer (fast), and the real SmolLM2."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from probes_hub.extract.models import LoadedModel

WORDS = "the a of to and is what how many if x y z one two three four five six seven eight nine ten plus minus times find solve number apple apples cost total".split()
SPECIALS = ["<pad>", "<bos>", "<start_of_turn>", "<end_of_turn>", "user", "model", "\n", "<unk>"]
GEMMA_STYLE_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test session writes its caches to a temp folder, except the converted-GGUF cache (reused, slow to build)."""
    os.environ.setdefault("PROBES_HUB_NO_PROGRESS", "1")
    os.environ["PROBES_HUB_CACHE"] = str(tmp_path_factory.mktemp("cache"))


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.add_special_tokens(SPECIALS[:6] + ["\n"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>")
    tokenizer.chat_template = GEMMA_STYLE_TEMPLATE
    return tokenizer


def tiny_model(n_layers: int = 4, seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0)
    model = LlamaForCausalLM(config).eval()
    return LoadedModel(model, tokenizer, f"tiny-llama-{n_layers}-{seed}:float32", "test/tiny-llama", torch.device("cpu"), torch.float32)


def train_on_folder_model(root: Path, *, seed: int, longest: int, rows: int, words_per_level: int, cli_args: list[str]) -> tuple[Path, Path]:
    """(model folder, registry): the tiny model saved as a folder under ``root`` and probes trained on it by the CLI, on ``rows``
    random questions of 2 to ``longest`` words whose ``difficulty`` is their word count // ``words_per_level``."""
    from probes_hub.cli import main
    from probes_hub.hub.registry import write_index

    lm = tiny_model()
    lm.model.save_pretrained(root / "model")
    lm.tokenizer.save_pretrained(root / "model")
    rng = np.random.default_rng(seed)
    questions = [" ".join(rng.choice(WORDS, size=int(n))) for n in rng.integers(2, longest, size=rows)]
    pd.DataFrame({"question": questions, "difficulty": [len(q.split()) // words_per_level for q in questions]}).to_json(
        root / "toy.jsonl", orient="records", lines=True)
    assert main(["train", "--model", str(root / "model"), "--dataset", str(root / "toy.jsonl"), "--label-column", "difficulty", "--label",
                 "difficulty", "--cv-folds", "3", "--out", str(root / "registry"), *cli_args]) == 0
    write_index(root / "registry")
    return root / "model", root / "registry"


@pytest.fixture(scope="session")
def tiny() -> LoadedModel:
    return tiny_model()


@pytest.fixture(scope="session")
def smollm2() -> LoadedModel:
    """The real embedded model (converted GGUF cached in the user cache so later runs load in seconds)."""
    from probes_hub.extract.models import load_model

    saved = os.environ.pop("PROBES_HUB_CACHE")
    try:
        return load_model("smollm2")
    finally:
        os.environ["PROBES_HUB_CACHE"] = saved


@pytest.fixture(scope="session")
def toy_probes(tiny, tmp_path_factory):
    """(data file, {label: TrainResult}, out folder): every probe type trained on a small local file, graded + binary label."""
    from probes_hub.train import TrainOptions, train

    rng = np.random.default_rng(0)
    rows = []
    for _ in range(120):
        n = int(rng.integers(2, 12))
        rows.append({"question": " ".join(rng.choice(WORDS, size=n)), "difficulty": float(n // 2), "solved": int(n < 7)})
    data = tmp_path_factory.mktemp("data") / "toy.jsonl"
    pd.DataFrame(rows).to_json(data, orient="records", lines=True)
    out = tmp_path_factory.mktemp("probes")
    options = TrainOptions(dataset=str(data), labels=("difficulty", "solved"), label_columns=("difficulty", "solved"),
                           probes=("linear", "length", "tfidf"), out=str(out), cv_folds=3, progress=False)
    return data, train(options, lm=tiny), out


@pytest.fixture
def registry(toy_probes, tmp_path) -> Path:
    """A local registry holding every toy probe, indexed."""
    from probes_hub.hub.registry import write_index

    _, _, out = toy_probes
    root = tmp_path / "registry"
    shutil.copytree(out, root)
    write_index(root, about="toy registry for tests")
    return root


@pytest.fixture(scope="session")
def smollm2_source(smollm2):
    """The embedded model as a feature source (what the app and the upload checks read)."""
    from probes_hub.extract.feature_source import ModelFeatures

    return ModelFeatures(smollm2)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that needs the data folder and finds none fails with one line saying how to get it, not a traceback."""
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is not None and call.excinfo.errisinstance(FileNotFoundError) and "Data directory not found" in str(call.excinfo.value):
        report.longrepr = f"this test needs the data folder: {call.excinfo.value}"
