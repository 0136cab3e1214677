"""The fast ridge sweep: equivalence with scikit-learn, honest selection, logistic probes."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from probes_hub.extract.features import Features
from probes_hub.probes import LinearProbe, SharedDirectionProbe
from probes_hub.probes.linear import ridge_coefs, ridge_fit, ridge_path, sweep


@pytest.mark.parametrize("n,d", [(80, 30), (25, 60)])  # primal (n > d) and kernel (n <= d) forms
def test_ridge_path_matches_sklearn(n, d):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10, size=d) + rng.normal(size=d)
    y = X[:, :3] @ [1.0, -2.0, 0.5] + rng.normal(size=n)
    X_eval = rng.normal(size=(7, d))
    alphas = [0.1, 3.0, 100.0]
    path = ridge_path(X, y, X_eval, alphas)
    scaler = StandardScaler().fit(X)
    for ai, alpha in enumerate(alphas):
        reference = Ridge(alpha=alpha).fit(scaler.transform(X), y)
        np.testing.assert_allclose(path[:, ai], reference.predict(scaler.transform(X_eval)), rtol=1e-6)
        coef, intercept, mean, scale = ridge_fit(X, y, alpha)
        np.testing.assert_allclose(coef, reference.coef_, rtol=1e-6)
        assert abs(intercept - reference.intercept_) <= 1e-6 * abs(reference.intercept_)


def test_ridge_coefs_batched_over_cells():
    rng = np.random.default_rng(2)
    Xs = rng.normal(size=(3, 40, 10))
    yc = rng.normal(size=40)
    batched = ridge_coefs(Xs, yc, [1.0, 10.0])
    for cell in range(3):
        np.testing.assert_allclose(batched[cell], ridge_coefs(Xs[cell], yc, [1.0, 10.0]), rtol=1e-10)


def _synthetic(n=240, layers=4, positions=2, d=16, signal_cell=(2, 1), seed=0, binary=False):
    rng = np.random.default_rng(seed)
    acts = rng.normal(size=(n, layers, positions, d))
    y = rng.integers(1, 6, size=n).astype(float)
    acts[:, signal_cell[0], signal_cell[1], 0] += y
    if binary:
        y = (y >= 3).astype(float)
    return Features([f"q{i}" for i in range(n)], np.full(n, 10), acts, tuple(range(10, 10 + layers)), (-2, -1)), y


def test_sweep_selects_the_informative_cell():
    features, y = _synthetic()
    result = sweep(features.activations, y, task="graded", layers=features.layers, positions=features.positions)
    assert result.best[:2] == (2, 1)
    assert result.cv_scores.shape == (4, 2, 13)


def test_linear_probe_graded_and_layerwise():
    features, y = _synthetic()
    train, test = features.take(np.arange(160)), features.take(np.arange(160, 240))
    probe = LinearProbe(task="graded").fit(train, y[:160])
    assert (probe.layer, probe.position) == (12, -1)
    prediction = probe.predict(test)
    assert np.corrcoef(prediction, y[160:])[0, 1] > 0.8
    layers, readings = probe.layerwise(test)
    assert layers == [10, 11, 12, 13] and readings.shape == (80, 4)
    np.testing.assert_allclose(readings[:, 2], prediction, rtol=1e-6)  # the chosen layer's per-layer probe is the probe (kept in float32)
    assert probe.layer_coef_.dtype == np.float32


def test_layerwise_reading_stops_at_the_deepest_layer_the_probes_read():
    """Serving extracts the searched layers only down to the chosen one, and the layer-wise reading covers those layers."""
    from probes_hub.apply import extraction_layers

    features, y = _synthetic()
    probe = LinearProbe(task="graded").fit(features.take(np.arange(160)), y[:160])
    assert extraction_layers([probe]) == [12]
    assert extraction_layers([probe], layerwise=True) == [10, 11, 12]  # layer 13 was searched, but is deeper than the chosen 12
    shallow = Features(features.questions, features.token_counts, features.activations[:, :3], (10, 11, 12), features.positions, features.model)
    layers, readings = probe.layerwise(shallow)
    assert layers == [10, 11, 12] and readings.shape == (240, 3)
    np.testing.assert_allclose(readings[:, 2], probe.predict(shallow), rtol=1e-6)


def test_linear_probe_binary_uses_logistic_and_calibrates():
    features, y = _synthetic(n=400, binary=True)
    probe = LinearProbe(task="binary").fit(features.take(np.arange(300)), y[:300])
    assert "C" in probe.selection_ and (probe.layer, probe.position) == (12, -1)
    prob = probe.predict(features.take(np.arange(300, 400)))
    assert ((prob > 0) & (prob < 1)).all()
    probe.fit_calibration(features.take(np.arange(300, 400)), y[300:], note="test")
    assert probe.calibration_.method == "platt" and probe.calibration_.n == 100


def test_predict_before_fit_and_wrong_width_are_clear_errors():
    features, y = _synthetic()
    with pytest.raises(RuntimeError, match="not fitted"):
        LinearProbe().predict(features)
    probe = LinearProbe().fit(features, y)
    narrow = Features(features.questions, features.token_counts, features.activations[..., :8], features.layers, features.positions)
    with pytest.raises(ValueError, match="features"):
        probe.predict(narrow)


def test_multi_target_ridge_matches_one_target_at_a_time():
    rng = np.random.default_rng(3)
    for n, d in [(60, 12), (10, 30)]:  # primal and kernel forms
        Xs, Y = rng.normal(size=(2, n, d)), rng.normal(size=(n, 3))
        many = ridge_coefs(Xs, Y, [0.5, 50.0])  # [2, A, T, d]
        for t in range(3):
            np.testing.assert_allclose(many[:, :, t], ridge_coefs(Xs, Y[:, t], [0.5, 50.0]), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("binary", [False, True])
def test_fit_many_equals_separate_fits(binary):
    features, y = _synthetic(n=200, binary=binary)
    rng = np.random.default_rng(1)
    other = rng.permutation(y)  # a second label on the same rows
    Y = np.column_stack([y, other])
    task = "binary" if binary else "graded"
    together = LinearProbe(task=task, cv_folds=3).fit_many(features, Y)
    for t, probe in enumerate(together):
        alone = LinearProbe(task=task, cv_folds=3).fit(features, Y[:, t])
        assert probe.selection_ == alone.selection_
        for name in probe.array_names:
            np.testing.assert_allclose(getattr(probe, name), getattr(alone, name), rtol=1e-8, atol=1e-10)
    assert (together[0].layer, together[0].position) == (12, -1)


def test_calibration_never_flips_a_ranking():
    features, y = _synthetic(n=300, binary=True)
    probe = LinearProbe(task="binary").fit(features.take(np.arange(200)), y[:200])
    probe.fit_calibration(features.take(np.arange(200, 300)), 1 - y[200:], note="labels flipped on purpose")
    assert probe.calibration_.a == 0.0 and "clipped" in probe.calibration_.note
    prob = probe.predict(features.take(np.arange(200, 300)))
    assert np.allclose(prob, (1 - y[200:]).mean())


def test_shared_direction_probes_read_one_direction_with_their_own_offsets():
    """Three models' success depends on one latent difficulty with different thresholds: one direction, one slope, three offsets."""
    features, difficulty = _synthetic(n=400)
    Y = np.column_stack([(difficulty <= k).astype(float) for k in (2, 3, 4)])  # easier to harder models' pass sets
    train, test = np.arange(300), np.arange(300, 400)
    probes = SharedDirectionProbe(task="binary", cv_folds=3).fit_many(features.take(train), Y[train])
    direction = probes[0].coef_ / np.linalg.norm(probes[0].coef_)
    for t, probe in enumerate(probes):
        assert (probe.layer, probe.position) == (12, -1) and probe.selection_["shared_labels"] == 3
        assert probe.selection_["slope"] == probes[0].selection_["slope"] > 0
        np.testing.assert_allclose(np.abs(probe.coef_ @ direction), np.linalg.norm(probe.coef_), rtol=1e-9)  # parallel coefficients
        assert roc_auc_score(Y[test, t], probe.predict(features.take(test))) > 0.85
    means = [probe.predict(features.take(test)).mean() for probe in probes]
    assert means[0] < means[1] < means[2]  # the model that passes more questions gets higher probabilities
    with pytest.raises(ValueError, match="binary"):
        SharedDirectionProbe(task="graded").fit(features, difficulty)



def test_shared_probe_extrapolates_a_model_seen_only_on_hard_questions():
    """Like a model with outcomes only on olympiad problems: its offset comes from the hard rows, the direction and slope from
    every model's rows, so it gets high probabilities on easy questions it was never labelled on; calibration keeps that."""
    from probes_hub.probes.shared import calibrate_jointly, success_logit

    rng = np.random.default_rng(1)
    features, difficulty = _synthetic(n=900, seed=1)  # difficulty 1 (easy) .. 5 (hard)
    features.activations[:, 2, 1, 0] += 2 * difficulty  # a clearly readable difficulty (a noisy score would bias the hard-only offset)
    abilities = np.array([1.0, 2.5, 4.0, 3.0])
    Y = (rng.random((900, 4)) < 1 / (1 + np.exp(2.0 * (difficulty[:, None] - abilities)))).astype(float)
    hard = difficulty >= 4
    Y[~hard, 3] = np.nan  # the last model was only run on the hard questions
    fit, calibration, test = np.arange(500), np.arange(500, 700), np.arange(700, 900)
    everyone = success_logit(Y[fit, :3])  # the direction learns from the models run on every question
    probes = SharedDirectionProbe(task="binary", cv_folds=3).fit_many(features.take(fit), Y[fit], direction_target=everyone)
    calibrate_jointly(probes, features.take(calibration), Y[calibration], note="held out")
    assert probes[3].record_.data.n_train == int(np.isfinite(Y[fit, 3]).sum())
    easy_test, hard_test = test[difficulty[test] <= 2], test[hard[test]]
    p_easy, p_hard = probes[3].predict(features.take(easy_test)).mean(), probes[3].predict(features.take(hard_test)).mean()
    assert np.nanmean(Y[fit, 3]) < 0.2 and p_hard < 0.2 and p_easy > 0.65  # truth on easy rows: 0.93; the score's noise biases it down
    assert probes[0].predict(features.take(easy_test)).mean() < p_easy < probes[2].predict(features.take(easy_test)).mean()
    assert probes[3].calibration_.a == probes[0].calibration_.a > 0 and probes[3].calibration_.method == "shared-slope platt"
    with pytest.raises(ValueError, match="both 0 and 1"):
        SharedDirectionProbe(task="binary", cv_folds=3).fit_many(features.take(fit), np.where(hard[fit, None], 1.0, np.nan))


def test_train_rejects_shared_probes_for_graded_labels_only(tiny):
    from probes_hub.train import TrainOptions, train

    with pytest.raises(ValueError, match="'shared' probes learn binary labels"):
        train(TrainOptions(dataset="math500", labels=("level",), probes=("shared",), progress=False), lm=tiny)


def test_in_distribution_score_falls_monotonically_with_a_shift():
    features, y = _synthetic(n=400)
    probe = LinearProbe(task="graded").fit(features.take(np.arange(300)), y[:300])
    held_out = features.take(np.arange(300, 400))
    typical = probe.in_distribution(held_out)
    assert typical.shape == (100,) and 0.3 < typical.mean() < 0.7  # new questions from the same source: percentiles spread over 0-1
    means = []
    for shift in (0.0, 0.25, 0.5, 1.0, 2.0):
        shifted = held_out.take(np.arange(100))
        shifted.activations = shifted.activations + shift  # every dimension moves away from the training mean
        means.append(probe.in_distribution(shifted).mean())
    assert all(later < earlier for earlier, later in zip(means, means[1:])) and means[-1] < 0.01
    assert np.isnan(LinearProbe.__mro__[1].in_distribution(probe, held_out)).all()  # text-only probe types keep no summary
