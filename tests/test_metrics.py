"""Metrics: vectorised bootstrap statistics agree with scipy / scikit-learn; CIs bracket the value; n is reported."""

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from probes_hub.metrics import auc_metric, auc_rows, ece, ece_metric, spearman_metric, spearman_rows


def test_row_statistics_match_library_values_with_ties():
    rng = np.random.default_rng(1)
    y = rng.integers(1, 6, size=(20, 50)).astype(float)
    pred = np.round(y + rng.normal(0, 2, size=y.shape))
    expected = [spearmanr(a, b).statistic for a, b in zip(y, pred)]
    np.testing.assert_allclose(spearman_rows(y, pred), expected, rtol=1e-12)
    labels = (y > 3).astype(float)
    np.testing.assert_allclose(auc_rows(labels, pred), [roc_auc_score(a, b) for a, b in zip(labels, pred)], rtol=1e-12)


def test_metric_reports_value_ci_and_n():
    rng = np.random.default_rng(0)
    y = rng.normal(size=300)
    pred = y + rng.normal(size=300)
    metric = spearman_metric(y, pred)
    assert metric.n == 300 and metric.low < metric.value < metric.high
    assert 0.55 < metric.value < 0.85 and metric.high - metric.low < 0.2
    assert spearman_metric(y, pred) == metric, "the bootstrap is seeded"
    labels = (y > 0).astype(int)
    auc = auc_metric(labels, pred)
    assert auc.name == "roc_auc" and auc.low < auc.value < auc.high and auc.value == roc_auc_score(labels, pred)
    assert "95% CI" in str(auc)


def test_ece_hand_computed():
    y = np.array([1, 0, 1, 1])
    prob = np.array([0.9, 0.9, 0.2, 0.2])
    # bin 0.9: acc 0.5 vs 0.9 -> 0.4; bin 0.2: acc 1.0 vs 0.2 -> 0.8; weighted 0.5*0.4 + 0.5*0.8
    assert abs(ece(y, prob) - 0.6) < 1e-12
    assert ece_metric(y, prob).value == ece(y, prob)
    assert ece(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0


def test_fast_resampled_auc_equals_rank_formula():
    from probes_hub.metrics import auc_resampled

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, size=150).astype(float)
    score = np.round(rng.normal(size=150) + y, 1)  # rounding makes ties
    index = rng.integers(0, 150, size=(300, 150))
    np.testing.assert_allclose(auc_resampled(y, score, index), auc_rows(y[index], score[index]), rtol=1e-12)


def test_partial_spearman_matches_the_closed_form_and_removes_a_shared_cause():
    from probes_hub.metrics import partial_spearman_metric, spearman_metric

    rng = np.random.default_rng(0)
    length = rng.permutation(2000).astype(float)
    # Prediction and label both follow length and nothing else: the partial correlation given length is ~0.
    label = length + rng.normal(scale=300, size=2000)
    prediction = length + rng.normal(scale=300, size=2000)
    assert spearman_metric(label, prediction).value > 0.7
    confounded = partial_spearman_metric(label, prediction, length)
    assert abs(confounded.value) < 0.06 and confounded.low < 0 < confounded.high and confounded.n == 2000
    # Closed form on ranks: r_xy.z = (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2)).
    x, y, z = rng.normal(size=(3, 500))
    y = y + x + z
    r = {pair: spearman_metric(a, b).value for pair, (a, b) in {"xy": (x, y), "xz": (x, z), "yz": (y, z)}.items()}
    expected = (r["xy"] - r["xz"] * r["yz"]) / np.sqrt((1 - r["xz"] ** 2) * (1 - r["yz"] ** 2))
    assert partial_spearman_metric(y, x, z).value == pytest.approx(expected, abs=1e-12)
    # With a control independent of both, the partial equals the plain Spearman up to noise.
    assert partial_spearman_metric(y, x, rng.normal(size=500)).value == pytest.approx(r["xy"], abs=0.03)
    # The length baseline itself (a monotone function of the control) says nothing beyond it.
    assert partial_spearman_metric(y, 2 * z + 1, z).value == 0.0


def test_mean_auc_over_labels_resamples_questions_and_counts_them():
    """The matrix's success cell: the mean of the labels' AUCs, a CI from resampling questions (shared by every label), n = questions."""
    from probes_hub.metrics import mean_auc_metric

    rng = np.random.default_rng(0)
    score = rng.normal(size=(400, 4))
    y = (score + rng.normal(size=(400, 4)) > 0).astype(float)
    y[:100, 3] = np.nan  # one label unknown on a quarter of the questions
    metric = mean_auc_metric(y, score)
    per_label = [auc_metric(y[np.isfinite(y[:, c]), c], score[np.isfinite(y[:, c]), c]) for c in range(4)]
    assert metric.value == pytest.approx(np.mean([m.value for m in per_label]), abs=1e-12) and metric.n == 400
    assert metric.low < metric.value < metric.high
    # the labels' errors are independent here, so the mean's interval is narrower than a single label's
    assert metric.high - metric.low < min(m.high - m.low for m in per_label)
