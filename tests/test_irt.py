"""2PL IRT recovers known parameters from a simulated response matrix, and respects the training split."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from probes_hub.data.irt import fit_2pl


def _simulate(n_items: int = 500, n_models: int = 40, seed: int = 0, missing: float = 0.0):
    """Abilities and difficulties N(0, 1); discriminations log-normal around 2, as benchmark questions separate models sharply."""
    rng = np.random.default_rng(seed)
    ability, difficulty = rng.normal(0, 1, n_models), rng.normal(0, 1, n_items)
    discrimination = np.exp(rng.normal(0.7, 0.3, n_items))
    p = 1 / (1 + np.exp(-discrimination[:, None] * (ability[None, :] - difficulty[:, None])))
    Y = (rng.random(p.shape) < p).astype(float)
    Y[rng.random(Y.shape) < missing] = np.nan
    return Y, ability, difficulty, discrimination


def test_fit_recovers_difficulty_and_ability_of_simulated_data():
    Y, ability, difficulty, discrimination = _simulate()
    train = np.arange(300)  # abilities from 300 training questions; 200 questions fitted with abilities fixed
    fit = fit_2pl(Y, train)
    assert pearsonr(fit.difficulty, difficulty).statistic >= 0.95
    assert pearsonr(fit.difficulty[300:], difficulty[300:]).statistic >= 0.95  # questions that never informed the abilities
    assert pearsonr(fit.ability, ability).statistic >= 0.95
    assert spearmanr(fit.discrimination, discrimination).statistic > 0.5
    assert abs(fit.ability.mean()) < 1e-6 and abs(fit.ability.std() - 1) < 1e-6


def test_missing_responses_are_skipped():
    Y, _, difficulty, _ = _simulate(missing=0.2)
    assert np.isnan(Y).mean() > 0.15
    assert pearsonr(fit_2pl(Y, np.arange(300)).difficulty, difficulty).statistic >= 0.93


def test_test_responses_never_move_the_abilities():
    Y, *_ = _simulate(n_items=200, seed=1, missing=0.1)
    train = np.arange(120)
    changed = Y.copy()
    changed[120:] = 1 - np.nan_to_num(changed[120:], nan=0.0)  # flip every test response
    first, second = fit_2pl(Y, train), fit_2pl(changed, train)
    np.testing.assert_allclose(first.ability, second.ability)
    np.testing.assert_allclose(first.difficulty[:120], second.difficulty[:120], atol=1e-4)  # items are independent given the abilities


def test_items_answered_by_all_or_none_stay_finite_and_ordered():
    Y, *_ = _simulate(n_items=60, n_models=20, seed=2, missing=0.0)
    Y[0], Y[1] = 1.0, 0.0  # every model right on item 0, every model wrong on item 1
    fit = fit_2pl(Y)
    assert np.all(np.isfinite(fit.difficulty)) and fit.difficulty[0] < np.median(fit.difficulty) < fit.difficulty[1]


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        fit_2pl(np.array([[0.5, 1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="at least two training questions"):
        fit_2pl(np.ones((5, 3)), [0])
