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


def test_one_ability_per_model_across_benchmarks_places_every_benchmark_on_one_scale():
    """Three simulated benchmarks of different hardness, each answered by an overlapping subset of 40 models (some in one
    benchmark only); the benchmark without training questions (like GSM8K here) is placed through the shared models."""
    rng = np.random.default_rng(3)
    ability = rng.normal(0, 1, 40)
    shifts, sizes = (-1.5, 0.0, 1.5), (200, 200, 200)
    difficulty = np.concatenate([rng.normal(shift, 0.7, size) for shift, size in zip(shifts, sizes)])
    benchmark = np.repeat([0, 1, 2], sizes)
    answered = np.zeros((3, 40), dtype=bool)
    answered[0, :25], answered[1, 10:35], answered[2, 20:] = True, True, True  # models 0-9 and 35-39 answer one benchmark only
    p = 1 / (1 + np.exp(-2 * (ability[None, :] - difficulty[:, None])))
    Y = np.where(answered[benchmark], (rng.random(p.shape) < p).astype(float), np.nan)
    train = (rng.random(len(Y)) < 0.6) & (benchmark != 0)  # benchmark 0 is test-only
    fit = fit_2pl(Y, train)
    assert pearsonr(fit.difficulty, difficulty).statistic >= 0.9  # across benchmarks: their hardness is on the one scale
    assert fit.difficulty[benchmark == 0].mean() < fit.difficulty[benchmark == 1].mean() < fit.difficulty[benchmark == 2].mean()
    seen = answered[1:].any(axis=0)  # models with training responses (120 to 240 questions each)
    assert pearsonr(fit.ability[seen], ability[seen]).statistic >= 0.9


def test_sources_spellings_of_one_model_meet_and_one_benchmark_keeps_its_two_servings_apart():
    from probes_hub.data.model_names import common_name, match_models

    spellings = ["Meta-Llama-3.1-8B-Instruct", "meta_llama_Llama_3.1_8B_Instruct", "Meta-Llama-3_1-8B-Instruct"]
    assert {common_name(s) for s in spellings} == {"llama-3-1-8b-instruct"}
    assert common_name("Qwen_Qwen2.5_7B_Instruct") == common_name("Qwen2.5-7B-Instruct") == "qwen2-5-7b-instruct"
    assert common_name("gemma-2-27b-it@together") == common_name("google_gemma_2_27b_it")
    matched = match_models({"a": ["Meta-Llama-3.1-70B-Instruct", "Meta-Llama-3.1-70B-Instruct@hyperbolic"], "b": ["Meta-Llama-3_1-70B-Instruct"]})
    assert matched["a", "Meta-Llama-3.1-70B-Instruct"] == matched["b", "Meta-Llama-3_1-70B-Instruct"] == "llama-3-1-70b-instruct"
    assert matched["a", "Meta-Llama-3.1-70B-Instruct@hyperbolic"] == "meta-llama-3-1-70b-instruct@hyperbolic"


def test_model_matching_doc_is_generated_from_the_data():
    from probes_hub.data.datasets import resolve_data_dir
    from probes_hub.data.model_matching_doc import matching_markdown
    from probes_hub.data.outcomes import benchmark_models
    from probes_hub.paths import PROJECT_ROOT

    assert (PROJECT_ROOT / "docs" / "model-matching.md").read_text() == matching_markdown(benchmark_models(resolve_data_dir())), \
        "regenerate: python -m probes_hub.data.model_matching_doc > docs/model-matching.md"
