"""Stacked probes: the activation probe and the text-only readings combined on out-of-fold predictions only, saved and loaded
like every probe, and the record of what the activations add."""

import numpy as np
from scipy.stats import spearmanr

from probes_hub.extract.features import Features
from probes_hub.probes import LinearProbe, Probe, StackedProbe
from probes_hub.schema.records import ModelInfo, PromptInfo

WORDS = ("apple", "river", "stone", "cloud", "green", "quick", "table", "light", "sound", "paper")


def _features(n: int, *, seed: int, signal: float, d: int = 12) -> tuple[Features, np.ndarray]:
    """Questions whose label rises with their length and, by ``signal``, with activation dimension 0 of layer 1."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n)
    lengths = np.clip(np.round(30 + 5 * y + 8 * rng.normal(size=n)), 3, None).astype(int)
    questions = [" ".join(rng.choice(WORDS, size=k)) + f" #{i}" for i, k in enumerate(lengths)]
    acts = rng.normal(size=(n, 3, 1, d))
    acts[:, 1, 0, 0] += signal * y
    model = ModelInfo("synthetic:0", "test/synthetic", d, 3, PromptInfo("chat", "t", ("x",), (-1,), 1024))
    return Features(questions, lengths, acts, (0, 1, 2), (-1,), model), y


def test_stacking_uses_the_activations_when_they_carry_signal_and_records_what_they_add():
    features, y = _features(300, seed=0, signal=1.0)
    probe = StackedProbe(cv_folds=3).fit(features, y)
    details = probe.selection_.details
    assert probe.selection_.layer == 1 and probe.layers_needed() == [1] and probe.selection_.cv_metric == "spearman"
    assert details["activations_add"] > 0.1 and details["cv_score_nested"] > details["cv_score_without_activations"]
    # comparable with the other types' CV (the score of the cell their search picked): the activation probe's own CV plus the
    # stack's gain over that probe's nested out-of-fold readings on the same folds
    linear = LinearProbe(cv_folds=3).fit(features, y)
    assert details["gain_over_activation"] == details["cv_score_nested"] - details["activation_cv_score_nested"]
    assert probe.selection_.cv_score == linear.selection_.cv_score + details["gain_over_activation"]
    test, y_test = _features(200, seed=1, signal=1.0)
    stacked = spearmanr(y_test, probe.predict(test)).statistic
    assert stacked > spearmanr(y_test, LinearProbe(cv_folds=3).fit(features, y).predict(test)).statistic  # length adds to the activations


def test_the_combiner_sees_only_out_of_fold_readings():
    """Activations of pure noise, wider than there are questions: an input probe reading the rows it was fitted on fits them
    closely, so a combiner fitted on such in-fold readings would lean on it and report a high CV score. Out of fold it cannot."""
    features, y = _features(90, seed=2, signal=0.0, d=200)
    linear = LinearProbe(cv_folds=3).fit(features, y)
    assert spearmanr(y, linear.decision_function(features)).statistic > 0.6  # in-fold readings: what a leak would feed the combiner
    probe = StackedProbe(cv_folds=3).fit(features, y)
    out_of_fold = probe.out_of_fold(features, y)[:, 0]
    assert abs(spearmanr(y, out_of_fold).statistic) < 0.3
    assert probe.selection_.details["activations_add"] < 0.1


def test_save_and_load_give_identical_readings_graded_and_binary(tmp_path):
    features, y = _features(150, seed=3, signal=1.0)
    for task, labels in (("graded", y), ("binary", (y > 0).astype(float))):
        probe = StackedProbe(task=task, cv_folds=3).fit(features, labels)
        probe.save_pretrained(tmp_path / task)
        loaded = Probe.from_pretrained(tmp_path / task, hidden_size=12)
        assert isinstance(loaded, StackedProbe) and loaded.layers_needed() == probe.layers_needed()
        np.testing.assert_array_equal(loaded.predict(features), probe.predict(features))
        np.testing.assert_array_equal(loaded.in_distribution(features), probe.in_distribution(features))
        assert loaded.selection_.activations_add == probe.selection_.activations_add is not None
        assert "What the activations add: CV score" in (tmp_path / task / "README.md").read_text()


def test_train_pipeline_fits_a_stacked_probe_that_predicts_from_its_folder(tiny, toy_probes, tmp_path):
    from probes_hub.apply import predict_questions
    from probes_hub.data.datasets import load_dataset
    from probes_hub.extract.feature_source import ModelFeatures
    from probes_hub.train import TrainOptions, train

    data, _, _ = toy_probes
    options = TrainOptions(dataset=str(data), labels=("difficulty",), label_columns=("difficulty",), probes=("stacked",), out=str(tmp_path),
                           cv_folds=3, progress=False)
    result = train(options, lm=tiny)["difficulty"].probes["stacked"]
    assert result.metrics["test_partial_length"].n == result.metrics["test"].n
    questions = load_dataset(str(data), label_columns=["difficulty"]).frame["question"].tolist()[:8]
    folder = next(tmp_path.glob("*stacked"))
    read = predict_questions(ModelFeatures(tiny), [folder], questions)[folder.name]
    np.testing.assert_allclose(read, result.probe.predict(ModelFeatures(tiny).features(questions, result.probe.layers_needed())[0]), rtol=1e-9)
