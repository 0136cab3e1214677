"""Probes on two models read together: depth-matched layers, features side by side, training, and a save/load round trip."""

import numpy as np
import pytest

from probes_hub.extract.feature_source import ModelFeatures
from probes_hub.extract.paired import PairedFeatures, depth_matched_layer, model_source
from probes_hub.probes import Probe

from .conftest import tiny_model


@pytest.fixture(scope="module")
def pair() -> PairedFeatures:
    """Two different random models: 4 layers and 6 layers, hidden 32 each."""
    return PairedFeatures(ModelFeatures(tiny_model(4, seed=0)), ModelFeatures(tiny_model(6, seed=1)))


def test_layers_match_by_relative_depth():
    assert [depth_matched_layer(k, 4, 6) for k in range(4)] == [0, 2, 3, 5]
    assert [depth_matched_layer(k, 4, 4) for k in range(4)] == [0, 1, 2, 3]
    assert depth_matched_layer(0, 1, 30) == 29


def test_pair_features_are_both_models_features_side_by_side(pair):
    questions = ["two plus two", "what is the derivative of x squared times seven"]
    features, truncated = pair.features(questions, [1, 3])
    assert pair.n_layers == 4 and pair.hidden_size == 64 and truncated == [False, False]
    assert features.activations.shape == (2, 2, len(features.positions), 64) and features.layers == (1, 3)
    assert features.model.fingerprint == pair.fingerprint and features.model.display_id == "test/tiny-llama + test/tiny-llama"
    first, second = (source.features(questions, layers)[0] for source, layers in zip(pair.sources, ([1, 3], [2, 5])))
    for own, part in ((first, slice(0, 32)), (second, slice(32, 64))):
        columns = [own.positions.index(p) for p in features.positions]
        np.testing.assert_array_equal(features.activations[..., part], own.activations[:, :, columns])
    np.testing.assert_array_equal(features.token_counts, first.token_counts)  # the length baseline reads the first model's prompt
    with pytest.raises(ValueError, match="end-of-instruction activations only"):
        pair.features(questions, [], token_layers=[1])


def test_a_probe_on_two_models_trains_saves_and_loads_with_identical_readings(pair, toy_probes, tmp_path):
    from probes_hub.apply import predict_questions
    from probes_hub.data.datasets import load_dataset
    from probes_hub.train import TrainOptions, train

    data, _, _ = toy_probes
    options = TrainOptions(dataset=str(data), labels=("difficulty",), label_columns=("difficulty",), probes=("linear",), out=str(tmp_path),
                           cv_folds=3, progress=False)
    trained = train(options, lm=pair)["difficulty"].probes["linear"]
    folder = trained.path
    assert folder.name == "tiny-llama-tiny-llama--toy--difficulty--linear" and trained.probe.coef_.shape == (64,)
    loaded = Probe.from_pretrained(folder, hidden_size=64)
    assert loaded.record_.model.prompt.mode == "pair"
    questions = load_dataset(str(data), label_columns=["difficulty"]).frame["question"].tolist()[:10]
    features = pair.features(questions, loaded.layers_needed())[0]
    np.testing.assert_array_equal(loaded.predict(features), trained.probe.predict(features))
    np.testing.assert_array_equal(predict_questions(pair, [folder], questions)[folder.name], trained.probe.predict(features))
    with pytest.raises(Exception, match="hidden size 64 .* but this model has hidden size 32"):  # one model alone is refused
        predict_questions(pair.sources[0], [folder], questions)


def test_a_pair_spec_names_exactly_two_models():
    with pytest.raises(ValueError, match="'first\\+second'"):
        model_source("smollm2+gemma3-270m+other")
