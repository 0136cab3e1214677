"""The Predict tab's views, apart from its layout: a question and the controls' values in, the tab's outputs out (text, charts, the
JSON payload). Pure functions of the predictor's answer, so they are tested without a server; ``ui.py`` only lays them out and
turns a refused input into ``gr.Error``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import altair as alt
import pandas as pd

from probes_hub.constants import UNFAMILIAR_BELOW
from probes_hub.routing.suggest import Suggestion

from .predictor import Prediction, Predictor, Reading

MAX_LAMBDA = 10.0


def plain(text: str) -> str:
    """Text shown inside Markdown as written: Markdown and HTML characters escaped (names and messages can come from uploads)."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~])", r"\\\1", str(text))


def finite_number(value: object, name: str, low: float, high: float) -> float:
    """A slider value from the UI or the API: a real number within [low, high], else a ValueError saying what to send."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}; got {str(value)[:40]!r}.")
    return float(value)


def success_chart(prediction: Prediction, suggestion: Suggestion | None) -> alt.Chart | None:
    """P(correct) per model: the chosen pool's models when there is a suggestion, else every success probe."""
    readings = {r.label.removeprefix("correct:"): r for r in prediction.success}
    if suggestion is not None:
        rows = [{"model": m, "p_success": p, "test_auc": readings[m].metric.get("value") if m in readings else None,
                 "suggested": m == suggestion.model} for m, p in suggestion.p_correct.items()]
    else:
        rows = [{"model": m, "p_success": r.value, "test_auc": r.metric.get("value"), "suggested": False} for m, r in readings.items()]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("p_success:Q", scale=alt.Scale(domain=[0, 1]), title="P(correct)"), y=alt.Y("model:N", sort="-x", title=None),
        color=alt.Color("suggested:N", legend=None, scale=alt.Scale(domain=[False, True], range=["#9ecae1", "#e6550d"])),
        tooltip=["model", alt.Tooltip("p_success:Q", format=".2f"), alt.Tooltip("test_auc:Q", format=".3f", title="probe test AUC")]
    ).properties(height=max(120, 16 * len(frame)), width=420, title="Predicted success per model (orange: the suggestion)")


def layer_chart(prediction: Prediction) -> alt.Chart:
    frame = pd.DataFrame([{"probe": name, "layer": layer, "reading": value} for name, (layers, values) in prediction.layerwise.items()
                          for layer, value in zip(layers, values)])
    return alt.Chart(frame).mark_line(point=True).encode(
        x="layer:Q", y=alt.Y("reading:Q", scale=alt.Scale(zero=False)), color="probe:N",
        tooltip=["probe", "layer", alt.Tooltip("reading:Q", format=".2f")]
    ).properties(height=240, width=420, title="Difficulty read layer by layer (to the deepest layer the app reads)")


HUMAN_TERMS = {
    "level": lambda value, low, high, where: f"MATH level {value:.1f} of {high:.0f}",
    "grade": lambda value, low, high, where: f"school grade {value:.1f} (range {low:.0f} to {high:.0f})",
    "steps": lambda value, low, high, where: f"about {value:.1f} solution steps",
    "log_output_chars": lambda value, low, high, where: f"predicted answer length ~{math.exp(value):,.0f} characters",
    "success_rate": lambda value, low, high, where: f"{value:.0%} of the benchmark's models would answer correctly",
    "irt_difficulty": lambda value, low, high, where: f"IRT difficulty: {where or f'{value:.1f}'}",
}
"""How each known label reads in its own terms (value clipped to the label's training range)."""


def describe(reading: Reading) -> str:
    """A difficulty reading in the label's own human terms, e.g. "MATH level 3.2 of 5" or "harder than 80% of MATH-500"."""
    low, high = reading.label_range
    value = min(max(reading.value, low), high)
    where = f"harder than {reading.percentile:.0%} of its {reading.dataset} questions" if not math.isnan(reading.percentile) else ""
    if reading.label in HUMAN_TERMS:
        return HUMAN_TERMS[reading.label](value, low, high, where)
    return f"{value:.2f} on a scale of {low:.1f} to {high:.1f}" + (f" ({where})" if where else "")


NOT_DIFFICULTY = ("log_output_chars",)
"""Graded labels that are not a question's difficulty (a cost signal): never the headline."""
DIFFICULTY_WORDS = ((1 / 3, "Easy"), (2 / 3, "Medium"), (1.01, "Hard"))
"""The headline's word by how hard the question reads among its dataset's questions (the share below it, under each bound)."""
EASIER_WHEN_HIGHER = ("success_rate",)
"""Difficulty labels whose higher values mean easier questions."""


def headline_reading(prediction: Prediction) -> Reading | None:
    """The one difficulty reading the tab leads with: of the readings that are a difficulty, the one whose probe had the best CV
    Spearman on its training questions (never a test score), so the choice is the one the probes' selection already trusts."""
    candidates = [r for r in prediction.difficulty if r.label not in NOT_DIFFICULTY and not math.isnan(r.cv_spearman)]
    return max(candidates, key=lambda r: r.cv_spearman, default=None)


def headline_markdown(reading: Reading | None) -> str:
    """"Hard: MATH level 4.6 of 5, harder than 83% of its math questions", and where the reading comes from."""
    if reading is None:
        return "### No difficulty reading\nThe registry has no difficulty probe for this model."
    harder_than = 1 - reading.percentile if reading.label in EASIER_WHEN_HIGHER else reading.percentile
    word = "" if math.isnan(harder_than) else next(w for bound, w in DIFFICULTY_WORDS if harder_than < bound) + ": "
    m = reading.metric
    trust = f"; test {m['name']} {m['value']:.2f} [{m['low']:.2f}, {m['high']:.2f}], n={m['n']}" if m else ""
    if reading.activations_add:
        with_them, without = reading.activations_add
        trust += (f". What the activations add: CV Spearman {with_them:.2f} with them, {without:.2f} from the text readings alone "
                  f"({with_them - without:+.2f})")
    caution = " ⚠️ Mostly question length." if reading.mostly_length else ""
    caution += " ⚠️ Unlike this probe's training questions." if reading.unfamiliar else ""
    return (f"### {word}{plain(describe(reading))}\nRead by the {plain(reading.dataset)} {plain(reading.label)} {plain(reading.probe_type)} probe, "
            f"chosen by its CV Spearman {reading.cv_spearman:.2f} on training questions{trust}.{caution} Every reading: *Details* below.")


def difficulty_markdown(prediction: Prediction) -> str:
    lines = []
    for r in prediction.difficulty:
        m = r.metric
        trust = f"test {m['name']} {m['value']:.2f} [{m['low']:.2f}, {m['high']:.2f}], n={m['n']}" if m else "no test metric"
        familiar = "" if math.isnan(r.in_distribution) else f" · in-distribution {r.in_distribution:.2f}"
        warning = " · ⚠️ this question is unlike what this probe was trained on" if r.unfamiliar else ""
        p = r.partial_length
        beyond = f" · beyond length: partial ρ {p['value']:.2f} [{p['low']:.2f}, {p['high']:.2f}]" if p else ""
        if r.mostly_length:
            beyond = " · ⚠️ this reading is mostly question length" + (f" (partial ρ given length {p['value']:.2f} [{p['low']:.2f}, {p['high']:.2f}])" if p else "")
        lines.append(f"- **{plain(r.dataset)} {plain(r.label)}** ({plain(r.probe_type)}): {plain(describe(r))} · {trust}{beyond}{familiar}{warning}")
    return "\n".join(lines) or "No difficulty probe for this model."


UTILITY, CHEAPEST = "utility", "cheapest"
ROUTING_RULES = [("utility: p - lambda x cost", UTILITY), ("cheapest with p >= target", CHEAPEST)]
"""Radio choices as (label, value): callbacks key on the value, never on the display text."""


def routing_markdown(suggestion: Suggestion | None, pool: str, pool_dataset: str | None = None) -> str:
    if suggestion is None:
        return f"No routing: the registry lacks a success probe for some model of pool '{pool}' on this model."
    p = suggestion.p_correct
    text = (f"**Route to {suggestion.model}**: P(correct) {p[suggestion.model]:.2f}, expected cost {suggestion.cost_ratio:.1%} of the pool's most "
            f"accurate model {suggestion.most_accurate} (P {p[suggestion.most_accurate]:.2f}): {1 - suggestion.cost_ratio:.0%} cheaper.")
    if suggestion.length_factor != 1.0:
        text += f" Costs are each model's mean cost x {suggestion.length_factor:.2f}, this question's predicted answer length relative to the average."
    if pool_dataset and suggestion.probes_dataset != pool_dataset:
        text += (f" The question is unlike the pool's {pool_dataset} training questions, so the probabilities come from the probes "
                 f"trained on every benchmark ({suggestion.probes_dataset}).")
    if suggestion.in_distribution < UNFAMILIAR_BELOW:
        text += f" ⚠️ In-distribution score {suggestion.in_distribution:.2f}: this question is unlike what these probes were trained on."
    return text


@dataclass
class PredictView:
    """Everything the Predict tab shows for one question, in the order of its outputs."""

    status: str
    headline: str
    difficulty: str
    routing: str
    layers_chart: alt.Chart | None
    success_chart: alt.Chart | None
    payload: dict


def predict_view(predictor: Predictor, text: str, pool_name: str, mode_value: str, lam_value: object, target_value: object) -> PredictView:
    """Check the controls' raw values (from the UI or the REST API), predict, route, and build the tab's outputs.

    Raises:
        ValueError: a value the tab refuses (an unknown pool or rule, a lambda or target out of range, a question without text),
            with what to send instead.
    """
    if predictor.pools and pool_name not in predictor.pools:
        raise ValueError(f"Unknown pool {str(pool_name)[:60]!r}; choose one of {', '.join(predictor.pools) or 'none'}.")
    if mode_value not in (UTILITY, CHEAPEST):
        raise ValueError(f"Routing rule must be {UTILITY!r} or {CHEAPEST!r}; got {str(mode_value)[:40]!r}.")
    lam = finite_number(lam_value, "lambda", 0.0, MAX_LAMBDA)
    target = finite_number(target_value, "target", 0.0, 1.0)
    prediction = predictor.predict(text)
    suggestion = predictor.route(prediction, pool_name, lam=lam if mode_value == UTILITY else None, target=target if mode_value == CHEAPEST else None)
    pool = predictor.pools.get(pool_name)
    return PredictView(status_line(prediction, predictor.layers), headline_markdown(headline_reading(prediction)), difficulty_markdown(prediction),
                       routing_markdown(suggestion, pool_name, getattr(pool, "dataset", None)),
                       layer_chart(prediction) if prediction.layerwise else None, success_chart(prediction, suggestion), payload(prediction, suggestion))


def status_line(prediction: Prediction, layers: list[int]) -> str:
    """Latency, tokens, where the forward pass stopped, batching, and the prediction's notices."""
    notice = plain(" ".join(prediction.notices))
    batch = f", batched with {prediction.batch_size - 1} other question(s)" if prediction.batch_size > 1 else ""
    return (f"Forward pass {prediction.forward_ms:.0f} ms in {prediction.dtype} ({prediction.n_tokens} tokens, stopped after layer "
            f"{max(layers) if layers else '-'}{batch}), probes {prediction.probes_ms:.0f} ms. {notice}")


def payload(prediction: Prediction, suggestion: Suggestion | None) -> dict:
    """The tab's raw output (JSON): the headline, every reading with its test metric, the success probabilities and the suggestion."""
    headline = headline_reading(prediction)
    return {"headline": {"probe": headline.name, "probe_type": headline.probe_type, "description": describe(headline), "value": headline.value,
                         "percentile": None if math.isnan(headline.percentile) else headline.percentile, "cv_spearman": headline.cv_spearman}
            if headline else None,
            "difficulty": [{"probe": r.name, "probe_type": r.probe_type, "value": r.value, "range": list(r.label_range), "test_metric": r.metric,
                            "description": describe(r), "in_distribution": None if math.isnan(r.in_distribution) else r.in_distribution,
                            "beyond_length": r.partial_length or None, "mostly_length": r.mostly_length} for r in prediction.difficulty],
            "in_distribution": {r.name: r.in_distribution for r in prediction.success if not math.isnan(r.in_distribution)},
            "success": {r.name: r.value for r in prediction.success},
            "routing": suggestion.to_json() if suggestion else None,
            "latency_ms": {"forward": prediction.forward_ms, "probes": prediction.probes_ms}, "batch_size": prediction.batch_size,
            "truncated": prediction.truncated, "notices": prediction.notices}
