"""Inside-the-model analyses on the tiny random Llama: head ablation, attribution patching, steering and the transfer matrix."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from probes_hub.analysis.heads import ablation_readings, analyze_heads, head_attribution
from probes_hub.analysis.outputs import write_analysis
from probes_hub.analysis.runner import add_to_residual, prompt_batches, replace_head, resume_at, run_to
from probes_hub.analysis.steering import steered_generations, steered_readings, unit_directions
from probes_hub.analysis.target import ProbeTarget, load_target
from probes_hub.analysis.transfer import ALL, analyze_transfer, difficulty_bins, summarize, transfer_matrix
from probes_hub.extract.prompts import encode_prompts, prompt_format
from probes_hub.probes.linear import LinearProbe
from probes_hub.schema.records import Selection

from .conftest import WORDS, tiny_model

QUESTIONS = [" ".join(np.random.default_rng(i).choice(WORDS, size=3 + i % 7)) for i in range(10)]


def toy_target(lm, layer: int, seed: int = 0) -> ProbeTarget:
    """A linear probe with a random direction at ``layer``, position -1, over templated toy questions (labels: their length)."""
    rng = np.random.default_rng(seed)
    probe = LinearProbe(task="graded")
    hidden = lm.hidden_size
    probe.coef_, probe.intercept_ = rng.standard_normal(hidden), np.array([0.5])
    probe.mean_, probe.scale_ = rng.standard_normal(hidden) * 0.1, rng.uniform(0.5, 2.0, hidden)
    probe.selection_ = Selection(layer=layer, position=-1)
    fmt = prompt_format(lm.tokenizer, chat=True)
    prompt_ids, _ = encode_prompts(QUESTIONS, fmt, lm.tokenizer)
    return ProbeTarget("toy", probe, lm, fmt, None, np.arange(len(QUESTIONS)), prompt_ids, np.array([len(q) for q in QUESTIONS], dtype=float))


@pytest.fixture()
def silent_head_model():
    """Heads 0 and 1 of block 1 output exactly zero: they share key/value head 0, whose value projection is zeroed."""
    lm = tiny_model(n_layers=3, seed=1)
    attention = lm.decoder_layers[1].self_attn
    head_dim = attention.head_dim
    with torch.no_grad():
        attention.v_proj.weight[:head_dim] = 0.0
        if attention.v_proj.bias is not None:
            attention.v_proj.bias[:head_dim] = 0.0
    return lm


def test_ablating_a_silent_head_changes_nothing(silent_head_model):
    target = toy_target(silent_head_model, layer=2)
    clean, ablated = ablation_readings(target, progress=False)
    assert ablated.shape == (len(QUESTIONS), 3, 4)
    np.testing.assert_allclose(ablated[:, 1, 0], clean, atol=1e-9)
    np.testing.assert_allclose(ablated[:, 1, 1], clean, atol=1e-9)
    assert np.abs(ablated[:, 1, 2:] - clean[:, None]).max() > 1e-3  # the live heads of the same block do matter
    assert np.abs(ablated[:, 0] - clean[:, None]).max() > 1e-3


def test_resuming_from_the_recorded_residual_equals_a_full_run(tiny):
    """Skipping the unchanged blocks is only a shortcut: the ablated reading equals a full forward pass with the same ablation."""
    target = toy_target(tiny, layer=3)
    clean, ablated = ablation_readings(target, progress=False)
    batch = prompt_batches(target.prompt_ids, -1, pad_id=0)[0]
    with torch.inference_mode():
        full = target.read(run_to(tiny, batch, 3, [replace_head(tiny, 2, 1)])).numpy()
        unedited = target.read(run_to(tiny, batch, 3)).numpy()
    np.testing.assert_allclose(ablated[batch.rows, 2, 1], full, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(clean[batch.rows], unedited, rtol=1e-6, atol=1e-7)


def test_padding_does_not_change_a_reading(tiny):
    target = toy_target(tiny, layer=2)
    together = prompt_batches(target.prompt_ids, -1, pad_id=0, max_batch_tokens=10_000)
    alone = prompt_batches(target.prompt_ids, -1, pad_id=0, max_batch_tokens=1, max_batch_size=1)
    assert len(together) == 1 and len(alone) == len(QUESTIONS)
    with torch.inference_mode():
        batched = target.read(run_to(tiny, together[0], 2)).numpy()
        single = np.concatenate([target.read(run_to(tiny, b, 2)).numpy() for b in sorted(alone, key=lambda b: b.rows[0])])
    np.testing.assert_allclose(batched[np.argsort(together[0].rows)], single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_attribution_patching_equals_exact_ablation_when_the_reading_is_linear_in_the_heads(ablation):
    """With the probe at block 0 and that block's MLP silenced, the reading is linear in block 0's head outputs: the
    first-order estimate is exact."""
    lm = tiny_model(n_layers=2, seed=2)
    with torch.no_grad():
        lm.decoder_layers[0].mlp.down_proj.weight.zero_()
    target = toy_target(lm, layer=0)
    clean, ablated = ablation_readings(target, ablation=ablation, progress=False)
    estimate = head_attribution(target, ablation=ablation, progress=False)
    assert np.abs(ablated - clean[:, None, None]).max() > 1e-3
    np.testing.assert_allclose(estimate, ablated - clean[:, None, None], rtol=1e-4, atol=1e-6)


def test_attribution_tracks_exact_ablation_on_a_nonlinear_model(tiny):
    report = analyze_heads(toy_target(tiny, layer=3), n_boot=100, progress=False)
    assert len(report.heads) == 16 and report.n == len(QUESTIONS)
    assert report.agreement_spearman > 0.5, report.agreement_spearman
    assert 0 <= report.top10_overlap <= 10
    head = report.heads[0]
    assert head.shift_low <= head.reading_shift <= head.shift_high


def test_steering_with_alpha_zero_is_the_identity(tiny):
    target = toy_target(tiny, layer=2)
    batch = prompt_batches(target.prompt_ids, -1, pad_id=0)[0]
    zero = torch.zeros(tiny.hidden_size)
    with torch.inference_mode():
        clean = run_to(tiny, batch, 3)
        steered = run_to(tiny, batch, 3, [add_to_residual(tiny, 2, zero)])
    assert torch.equal(clean, steered)
    questions, answers = QUESTIONS[:3], ["1", "2", "3"]
    plain = steered_generations(tiny, target.fmt, questions, answers, 2, None, max_new_tokens=6, batch_size=3)
    assert steered_generations(tiny, target.fmt, questions, answers, 2, zero, max_new_tokens=6, batch_size=3) == plain


def test_steering_moves_the_reading_along_the_probe_direction_only(tiny):
    target = toy_target(tiny, layer=2)
    units = unit_directions(target)
    readings = steered_readings(target, units, (-2.0, 0.0, 2.0), progress=False)
    clean = readings.here[("none", 0.0)]
    norm = float(np.linalg.norm(target.direction))
    shift = readings.here[("probe", 2.0)] - clean
    np.testing.assert_allclose(shift, 2.0 * readings.spread * norm, rtol=1e-4)  # exactly alpha x spread x |w| at the probe's own layer
    random_shift = readings.here[("random", 2.0)] - clean
    assert np.abs(random_shift).mean() < np.abs(shift).mean()
    assert readings.spread > 0 and readings.residual_norm > 0


def test_transfer_matrix_shows_a_planted_shift():
    """Bin "a" questions' label follows feature 0, bin "b"'s feature 1: each bin's probe transfers to its own bin only."""
    rng = np.random.default_rng(0)
    n = 400
    X = rng.standard_normal((n, 6))
    bins = np.where(np.arange(n) % 2 == 0, "a", "b")
    y = np.where(bins == "a", X[:, 0], X[:, 1]) + 0.1 * rng.standard_normal(n)
    is_train = np.arange(n) < 300
    cells = {(c.train_bin, c.test_bin): c for c in transfer_matrix(X, y, bins, is_train, ["a", "b"], "graded")}
    assert cells[("a", "a")].metric.value > 0.9 and cells[("b", "b")].metric.value > 0.9
    assert abs(cells[("a", "b")].metric.value) < 0.3 and abs(cells[("b", "a")].metric.value) < 0.3
    assert 0.3 < cells[(ALL, "a")].metric.value < cells[("a", "a")].metric.value
    assert cells[("a", "a")].metric.n == 50 and cells[("a", "a")].n_train == 150
    summary = summarize(list(cells.values()), ["a", "b"])
    assert summary["mean_diagonal"] > 0.9 > 0.3 > summary["mean_easier_to_harder"]


def test_difficulty_bins_by_value_or_by_training_quantile():
    names, order = difficulty_bins(np.array([1.0, 2.0, 2.0, 5.0, np.nan]), np.ones(5, bool))
    assert order == ["1", "2", "5"] and names.tolist() == ["1", "2", "2", "5", ""]
    values = np.arange(100, dtype=float)
    names, order = difficulty_bins(values, values < 50)  # quintiles of the training rows: 0-49
    assert order == ["q1", "q2", "q3", "q4", "q5"] and names[0] == "q1" and names[99] == "q5" and names[45] == "q5"


def test_a_saved_probe_runs_through_every_analysis_and_writes_its_outputs(tiny, toy_probes, tmp_path):
    _, results, _ = toy_probes
    folder = results["difficulty"].probes["linear"].path
    target = load_target(str(folder), lm=tiny, limit=8)
    assert len(target.prompt_ids) == 8 and target.y.shape == (8,)
    report = analyze_heads(target, n_boot=50, progress=False)
    assert len(report.heads) == (target.layer + 1) * 4
    transfer = analyze_transfer(target, label="solved", use_cache=False, progress=False)
    assert transfer.task == "binary" and transfer.bin_label == "difficulty"
    assert len(transfer.cells) == (len(transfer.bins) + 1) * len(transfer.bins)
    written = write_analysis(tmp_path / "heads", report.to_json(), {"heads": report.table()}, {})
    assert [p.name for p in written] == ["heads.csv", "result.json"]


def test_analyses_refuse_probes_that_are_not_one_direction(tiny, toy_probes):
    _, results, _ = toy_probes
    with pytest.raises(ValueError, match="need a 'linear' probe"):
        load_target(str(results["difficulty"].probes["tfidf"].path), lm=tiny)
    other = copy.copy(tiny)
    other.fingerprint = "another-model"
    with pytest.raises(ValueError, match="was trained on"):
        load_target(str(results["difficulty"].probes["linear"].path), lm=other)


def test_resume_at_restores_the_model(tiny):
    blocks = list(tiny.decoder_layers)
    with resume_at(tiny, 2, torch.zeros(1, 3, tiny.hidden_size)):
        assert tiny.decoder_layers[0] is not blocks[0]
    assert list(tiny.decoder_layers) == blocks


def test_cli_refuses_bad_analysis_options_before_loading_anything(capsys):
    from probes_hub.cli import main

    assert main(["analyze", "transfer", "--limit", "3"]) == 2
    assert "--limit does not apply" in capsys.readouterr().err
    for argv in (["analyze", "steer", "--alphas", "x"], ["analyze", "heads", "--limit", "0"], ["analyze", "heads", "--ablation", "half"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2


def test_cli_analyses_on_the_embedded_model_for_the_bundled_level_probe(smollm2, tmp_path, capsys, monkeypatch):
    """The three verbs end to end on SmolLM2 and the bundled MATH-500 level probe (small subsets; the committed outputs use more)."""
    import json

    from probes_hub.cli import main

    monkeypatch.setattr("probes_hub.extract.models.load_model", lambda spec=None: smollm2)  # the loaded real model, not reloaded
    runs = {"heads": ["--limit", "2"], "steer": ["--limit", "4", "--generate", "2", "--max-new-tokens", "16", "--alphas=-8,0,8"], "transfer": []}
    for verb, extra in runs.items():
        assert main(["analyze", verb, "--out", str(tmp_path / verb), *extra]) == 0
        result_line = capsys.readouterr().out.strip().splitlines()[-1]
        assert result_line.startswith("RESULT "), result_line
        values = dict(part.split("=") for part in result_line.split()[1:])
        result = json.loads((tmp_path / verb / "result.json").read_text())
        if verb == "heads":
            assert int(values["heads"]) == 135 == len(result["heads"])  # blocks 0-14 x 9 heads
            assert -1 <= float(values["exact_vs_attribution_spearman"]) <= 1 and 0 <= int(values["top10_overlap"]) <= 10
        elif verb == "steer":
            assert float(values["shift_per_alpha"]) > 5 * abs(float(values["random_shift_per_alpha"]))
            assert result["n_generate"] == 2 and len(result["points"]) == 6
        else:
            assert int(values["cells"]) == 30 and result["bins"] == ["1", "2", "3", "4", "5"]
        assert (tmp_path / verb / f"{verb if verb != 'steer' else 'steering'}.csv").exists()
