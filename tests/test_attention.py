"""Attention probes and token activations: chunked extraction, save/load, and a signal only attention can find."""

import numpy as np
import torch

from probes_hub.extract.activations import extract, extract_tokens
from probes_hub.extract.features import Features, TokenStates
from probes_hub.extract.prompts import encode_prompts, prompt_format
from probes_hub.extract.tokens import cache_bytes, token_cache_folder, token_states
from probes_hub.metrics import spearman_metric
from probes_hub.probes import AttentionProbe, LinearProbe, Probe
from probes_hub.schema.records import ModelInfo, PromptInfo

from .test_activations import QUESTIONS


def test_chunked_token_extraction_matches_the_in_memory_path_and_the_model(tiny):
    fmt = prompt_format(tiny.tokenizer)
    ids, _ = encode_prompts(QUESTIONS, fmt, tiny.tokenizer)
    memory = token_states(tiny, fmt, ids, 2, max_length=1024, use_cache=False, progress=False)
    chunked = token_states(tiny, fmt, ids, 2, max_length=1024, data_hash="questions", chunk_questions=2,
                           max_batch_tokens=40, progress=False)
    folder = token_cache_folder(tiny, fmt, "questions", 2, 1024)
    assert len(list(folder.glob("chunk-*.safetensors"))) >= 2 and cache_bytes(folder) > 0
    again = token_states(tiny, fmt, ids, 2, max_length=1024, data_hash="questions", progress=False)  # read back from disk
    np.testing.assert_array_equal(chunked.values, memory.values)
    np.testing.assert_array_equal(again.values, memory.values)
    padded = {i: part for batch, parts in extract_tokens(tiny, ids, 2, shared_prefix=fmt.prefix_ids, packed=False, progress=False)
              for i, part in zip(batch, parts)}  # the GPU path: left-padded batches
    for row in range(len(ids)):
        np.testing.assert_allclose(padded[row], memory.question(row), atol=2e-3)
    assert memory.lengths.tolist() == [len(p) - len(fmt.prefix_ids) for p in ids]
    with torch.no_grad():
        for row, prompt in enumerate(ids):
            hidden = tiny.model(input_ids=torch.tensor([prompt]), output_hidden_states=True).hidden_states[3][0]
            np.testing.assert_allclose(memory.question(row), hidden[len(fmt.prefix_ids):].numpy(), atol=2e-3)  # float16 storage
    eoi = extract(tiny, ids, [2], fmt.eoi_positions, progress=False)[:, 0]
    last = np.stack([memory.question(row)[fmt.eoi_positions] for row in range(len(ids))])
    np.testing.assert_allclose(last, eoi, atol=2e-3)


def _model_info(hidden: int) -> ModelInfo:
    return ModelInfo("synthetic:0", "test/synthetic", hidden, 1, PromptInfo("chat", "t", ("x",), (-1,), 1024))


def _synthetic(n: int, seed: int, hidden: int = 16) -> tuple[Features, np.ndarray]:
    """Questions whose label is carried by one token in the middle, marked by dimension 0; the last token carries nothing."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n)
    parts = []
    for row in range(n):
        length = int(rng.integers(6, 14))
        tokens = rng.normal(size=(length, hidden)).astype(np.float32)
        tokens[:, 0] = rng.normal(scale=0.3, size=length)
        marked = int(rng.integers(1, length - 2))
        tokens[marked, 0], tokens[marked, 1] = 4.0, y[row]
        parts.append(tokens)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
    states = TokenStates(0, np.concatenate(parts).astype(np.float16), offsets)
    last = np.stack([p[-1] for p in parts])[:, None, None, :]
    features = Features([f"q{i}" for i in range(n)], np.array([len(p) for p in parts]), last, (0,), (-1,), _model_info(hidden), {0: states})
    return features, y


def test_attention_probe_finds_a_signal_at_a_non_final_token_that_the_eoi_probe_cannot():
    train_features, y_train = _synthetic(500, seed=0)
    test_features, y_test = _synthetic(200, seed=1)
    attention = AttentionProbe(heads=2, weight_decays=(0.01,), max_epochs=30, learning_rate=0.01).fit(train_features, y_train)
    linear = LinearProbe(cv_folds=3).fit(train_features, y_train)
    attention_score = spearman_metric(y_test, attention.predict(test_features))
    linear_score = spearman_metric(y_test, linear.predict(test_features))
    assert attention_score.value > 0.8 and attention_score.low > 0.7, attention_score
    assert abs(linear_score.value) < 0.2, linear_score
    assert attention.selection_.cv_score > 0.7 and attention.selection_.layer == 0


def test_attention_probe_save_load_round_trip_gives_identical_predictions(tmp_path):
    features, y = _synthetic(120, seed=2)
    probe = AttentionProbe(heads=3, weight_decays=(0.1,), max_epochs=3).fit(features, y)
    probe.save_pretrained(tmp_path / "attention")
    loaded = Probe.from_pretrained(tmp_path / "attention", hidden_size=16)
    assert isinstance(loaded, AttentionProbe) and loaded.heads == 3 and loaded.token_layer() == 0 and loaded.layers_needed() == []
    np.testing.assert_array_equal(loaded.predict(features), probe.predict(features))


def test_attention_probe_on_binary_labels_gives_probabilities():
    features, y = _synthetic(600, seed=3)
    probe = AttentionProbe(task="binary", heads=1, weight_decays=(0.01,), max_epochs=30, learning_rate=0.03).fit(features, (y > 0).astype(float))
    probability = probe.predict(features)
    assert probability.min() >= 0 and probability.max() <= 1 and probe.selection_.cv_metric == "roc_auc"
    assert probe.selection_.cv_score > 0.8


def test_train_pipeline_fits_attention_and_multilayer_probes_that_predict_from_their_folders(tiny, toy_probes, tmp_path):
    from probes_hub.apply import predict_questions
    from probes_hub.data.datasets import load_dataset
    from probes_hub.extract.feature_source import ModelFeatures
    from probes_hub.train import TrainOptions, train

    data, _, _ = toy_probes
    options = TrainOptions(dataset=str(data), labels=("difficulty",), label_columns=("difficulty",), probes=("attention", "multilayer"),
                           out=str(tmp_path), cv_folds=3, progress=False)
    trained = train(options, lm=tiny)["difficulty"].probes
    attention, multilayer = trained["attention"], trained["multilayer"]
    assert attention.probe.token_layer() in range(tiny.n_layers) and attention.probe.selection_.details["train_seconds"] >= 0
    assert multilayer.probe.selection_["combine"] in ("mean", "concat") and len(multilayer.probe.layers_needed()) >= 2
    for result in (attention, multilayer):
        partial = result.metrics["test_partial_length"]
        assert partial.n == result.metrics["test"].n and partial.low <= partial.value <= partial.high
    dataset = load_dataset(str(data), label_columns=["difficulty"])
    test_questions = dataset.frame.loc[dataset.frame["split"] == "test", "question"].tolist()
    predictions = predict_questions(ModelFeatures(tiny), [attention.path, multilayer.path], test_questions)
    np.testing.assert_allclose(predictions[attention.path.name], attention.test_predictions, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(predictions[multilayer.path.name], multilayer.test_predictions, rtol=1e-6, atol=1e-6)


def test_the_app_reads_the_difficulty_probe_with_the_best_training_cv_score_not_the_best_test_score():
    from probes_hub.apply import choose_probes
    from probes_hub.hub.manifest import ProbeEntry

    def entry(probe_type: str, task: str, cv: float | None, test: float, label: str = "level") -> ProbeEntry:
        return ProbeEntry(name=f"{label}-{probe_type}", folder=f"{label}-{probe_type}", model="m", fingerprint="synthetic:0", hidden_size=16, dataset="d",
                          label=label, task=task, probe_type=probe_type, layer=1, position=-1, metric={"value": test},
                          cv_metric="spearman" if task == "graded" else "roc_auc", cv_score=cv)

    entries = [entry("linear", "graded", 0.59, 0.60), entry("multilayer", "graded", 0.61, 0.55), entry("attention", "graded", 0.60, 0.70),
               entry("tfidf", "graded", None, 0.80), entry("shared", "binary", 0.5, 0.7, "ok"), entry("linear", "binary", 0.9, 0.8, "ok")]
    assert sorted(choose_probes(entries, _model_info(16))) == ["level-multilayer", "ok-shared"]
