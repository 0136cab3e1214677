"""Perceptual control: add ``alpha x`` the probe's unit direction to the residual stream at its layer and watch what changes.

Two measurements per alpha, each against a seeded random unit direction of the same norm (the control):
the probe's own reading on its test questions (a sanity check: it should move by ``alpha x |w|``, and the
layer-wise probes of deeper layers show whether the push survives the blocks after it), and greedy GSM8K
generations: answer length and accuracy (math-verify). ``alpha`` is in units of the natural spread along the probe
direction (the standard deviation of the test questions' activations projected on it, at the read position), so
alpha 8 pushes every token eight spreads along it; the mean residual-stream norm is reported beside it for scale.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from probes_hub.analysis import DEFAULT_ALPHAS
from probes_hub.analysis.runner import add_to_residual, record_reads, run_to
from probes_hub.analysis.target import ProbeTarget, linear_reader
from probes_hub.data.datasets import load_dataset
from probes_hub.data.labeling import GenerationOptions, answers_match, extract_answer, transformers_generate
from probes_hub.extract.prompts import PromptFormat
from probes_hub.metrics import Metric, accuracy_metric, mean_metric
from probes_hub.progress import progress_bar

DIRECTIONS = ("probe", "random")
EXAMPLES = 3


@dataclass
class SteerPoint:
    """One (direction, alpha): the reading's shift at the probe's layer and at the deepest layer-wise probe, and generation outcomes."""

    direction: str
    alpha: float
    reading_shift: Metric
    downstream_shift: Metric | None
    answer_tokens: Metric | None = None
    accuracy: Metric | None = None


@dataclass
class SteerReport:
    """Steering curves for the probe direction and the random control, their slopes, and example generations."""

    probe: str
    model: str
    layer: int
    position: int
    downstream_layer: int | None
    spread: float
    """Standard deviation of the test questions' activations along the probe's unit direction (alpha's unit)."""
    residual_norm: float
    """Mean norm of the residual stream at the read position (for scale: the largest push is ``max |alpha| x spread``)."""
    direction_norm: float
    """|w|: how far a unit step along the probe direction moves its reading."""
    points: list[SteerPoint]
    shift_per_alpha: float
    random_shift_per_alpha: float
    downstream_shift_per_alpha: float | None
    random_downstream_shift_per_alpha: float | None
    n_reading: int
    n_generate: int
    examples: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> pd.DataFrame:
        rows = []
        for p in self.points:
            row = {"direction": p.direction, "alpha": p.alpha}
            for name in ("reading_shift", "downstream_shift", "answer_tokens", "accuracy"):
                metric = getattr(p, name)
                row.update({name: metric.value if metric else None, f"{name}_low": metric.low if metric else None,
                            f"{name}_high": metric.high if metric else None, f"{name}_n": metric.n if metric else None})
            rows.append(row)
        return pd.DataFrame(rows)

    def to_json(self) -> dict:
        return asdict(self)


def unit_directions(target: ProbeTarget, seed: int = 0) -> dict[str, torch.Tensor]:
    """The probe's unit direction and a seeded random unit direction (same norm: the control)."""
    w = target.direction
    random = np.random.default_rng(seed).standard_normal(len(w))
    return {"probe": torch.tensor(w / np.linalg.norm(w), dtype=torch.float32), "random": torch.tensor(random / np.linalg.norm(random), dtype=torch.float32)}


def layerwise_reader(target: ProbeTarget) -> tuple[int, Callable] | None:
    """The deepest layer-wise probe the linear probe keeps beyond its own layer: ``(layer, read)``, or None."""
    probe = target.probe
    index = getattr(probe, "layer_index_", None)
    if index is None or int(max(index)) <= target.layer:
        return None
    i = int(np.argmax(index))
    return int(index[i]), linear_reader(probe.layer_mean_[i], probe.layer_scale_[i], probe.layer_coef_[i], float(probe.layer_intercept_[i]))


@dataclass
class SteeredReadings:
    """Per question readings, clean (key ``("none", 0.0)``) and with each steering vector added, at the probe's layer and downstream."""

    vectors: dict[tuple[str, float], torch.Tensor]
    here: dict[tuple[str, float], np.ndarray]
    downstream: dict[tuple[str, float], np.ndarray]
    downstream_layer: int | None
    spread: float
    residual_norm: float


@torch.inference_mode()
def steered_readings(target: ProbeTarget, units: dict[str, torch.Tensor], alphas, *, progress: bool = True) -> SteeredReadings:
    """The probe's readings with ``alpha x spread x unit`` added at its layer, for every unit direction and nonzero alpha.

    The clean pass comes first: it measures the spread along the probe direction at the read position, alpha's unit.
    """
    lm, layer = target.lm, target.layer
    downstream = layerwise_reader(target)
    deepest = downstream[0] if downstream else layer
    batches = target.batches()
    result = SteeredReadings({}, {}, {}, downstream[0] if downstream else None, 0.0, 0.0)

    def run(key: tuple[str, float], vector: torch.Tensor | None) -> np.ndarray:
        here, deeper = np.zeros(len(target.prompt_ids)), np.zeros(len(target.prompt_ids))
        states = np.zeros((len(target.prompt_ids), len(target.direction)))
        for batch in batches:
            store: dict[int, torch.Tensor] = {}
            steer = [add_to_residual(lm, layer, vector)] if vector is not None else []
            out = run_to(lm, batch, deepest, [*steer, record_reads(lm, [layer], batch, store)])  # recorded after the vector is added
            here[batch.rows] = target.read(store[layer]).numpy()
            states[batch.rows] = store[layer].double().numpy()
            if downstream:
                deeper[batch.rows] = downstream[1](out).numpy()
        result.here[key] = here
        if downstream:
            result.downstream[key] = deeper
        return states

    keys = [(name, float(a)) for name in units for a in alphas if a != 0]
    with progress_bar(total=len(keys) + 1, desc="Steered readings", unit="alpha", disable=not progress) as bar:
        clean = run(("none", 0.0), None)
        result.spread = float((clean @ units["probe"].double().numpy()).std())
        result.residual_norm = float(np.linalg.norm(clean, axis=1).mean())
        bar.update(1)
        for key in keys:
            result.vectors[key] = key[1] * result.spread * units[key[0]]
            run(key, result.vectors[key])
            bar.update(1)
    return result


def steered_generations(lm, fmt: PromptFormat, questions: list[str], answers: list[str], layer: int, vector: torch.Tensor | None, *,
                        max_new_tokens: int, batch_size: int) -> list[dict]:
    """Greedy completions in the probe's prompt format ``fmt`` with ``vector`` added at block ``layer``'s output at every token
    (None: unsteered), checked with math-verify."""
    options = GenerationOptions(k=1, temperature=0.0, max_new_tokens=max_new_tokens, batch_size=batch_size)
    results = []
    for start in range(0, len(questions), batch_size):
        chunk = questions[start:start + batch_size]
        if vector is None:
            completions = transformers_generate(lm, chunk, options, fmt)
        else:
            with lm.forward_lock, add_to_residual(lm, layer, vector):
                completions = transformers_generate(lm, chunk, options, fmt)
        for question, gold, [(text, tokens)] in zip(chunk, answers[start:start + batch_size], completions):
            answer = extract_answer(text)
            results.append({"question": question, "gold": gold, "text": text, "answer": answer, "correct": answers_match(answer, gold), "tokens": tokens})
    return results


def analyze_steering(target: ProbeTarget, *, alphas=DEFAULT_ALPHAS, n_generate: int = 24, max_new_tokens: int = 256, batch_size: int = 24,
                     data_dir: str | None = None, seed: int = 0, progress: bool = True) -> SteerReport:
    """Reading shifts on the probe's test questions and greedy GSM8K generations for each alpha, probe direction vs random control."""
    started = time.time()
    readings = steered_readings(target, unit_directions(target, seed), alphas, progress=progress)
    here, deeper, vectors = readings.here, readings.downstream, readings.vectors
    generations = {}
    if n_generate:
        gsm8k = load_dataset("gsm8k", data_dir=data_dir).frame
        sample = gsm8k[gsm8k["split"] == "test"].sample(n=min(n_generate, int((gsm8k["split"] == "test").sum())), random_state=seed)
        questions, answers = sample["question"].tolist(), sample["final_answer"].astype(str).tolist()
        for key in progress_bar([("none", 0.0), *vectors], desc="Steered generations", unit="alpha", disable=not progress):
            generations[key] = steered_generations(target.lm, target.fmt, questions, answers, target.layer, vectors.get(key), max_new_tokens=max_new_tokens,
                                                   batch_size=batch_size)
    points = []
    for direction in DIRECTIONS:
        for alpha in sorted(float(a) for a in alphas):
            key = (direction, alpha) if alpha != 0 else ("none", 0.0)
            shift = mean_metric(here[key] - here[("none", 0.0)], "reading_shift")
            down = mean_metric(deeper[key] - deeper[("none", 0.0)], "downstream_shift") if deeper else None
            made = generations.get(key)
            points.append(SteerPoint(direction, alpha, shift, down, mean_metric([g["tokens"] for g in made], "answer_tokens") if made else None,
                                     accuracy_metric([g["correct"] for g in made]) if made else None))
    slopes = {(direction, field_name): _slope(points, direction, field_name) for direction in DIRECTIONS for field_name in ("reading_shift", "downstream_shift")}
    return SteerReport(target.name, target.lm.display_id, target.layer, target.position, readings.downstream_layer, readings.spread, readings.residual_norm,
                       float(np.linalg.norm(target.direction)),
                       points, slopes[("probe", "reading_shift")], slopes[("random", "reading_shift")],
                       slopes[("probe", "downstream_shift")] if deeper else None, slopes[("random", "downstream_shift")] if deeper else None,
                       len(target.prompt_ids), len(generations.get(("none", 0.0), [])), _examples(generations, alphas), time.time() - started)


def _slope(points: list[SteerPoint], direction: str, name: str) -> float:
    """Least-squares slope of a measurement's mean against alpha (the clean point included)."""
    pairs = [(p.alpha, getattr(p, name).value) for p in points if p.direction == direction and getattr(p, name) is not None]
    alphas, values = np.array(pairs).T
    return float(np.polyfit(alphas, values, 1)[0])


def _examples(generations: dict, alphas) -> list[dict]:
    """The first questions' completions side by side: clean, and the probe direction and random control at the extreme alphas."""
    if not generations:
        return []
    low, high = min(alphas), max(alphas)
    columns = {"clean": ("none", 0.0), f"probe {low:+g}": ("probe", float(low)), f"probe {high:+g}": ("probe", float(high)),
               f"random {high:+g}": ("random", float(high))}
    examples = []
    for i, clean in enumerate(generations[("none", 0.0)][:EXAMPLES]):
        examples.append({"question": clean["question"], "gold": clean["gold"],
                         **{name: {k: generations[key][i][k] for k in ("text", "answer", "correct", "tokens")} for name, key in columns.items() if key in generations}})
    return examples


def steering_charts(report: SteerReport) -> dict:
    """Reading shift, answer length and accuracy against alpha, probe direction vs random control, with 95% CIs."""
    import altair as alt

    table = report.table()
    charts = {}
    for name, title in (("reading_shift", f"change of the probe's reading at layer {report.layer}"),
                        ("downstream_shift", f"change of the layer-{report.downstream_layer} probe's reading"),
                        ("answer_tokens", "answer length (tokens)"), ("accuracy", "GSM8K accuracy (math-verify)")):
        part = table.dropna(subset=[name])
        if not len(part):
            continue
        base = alt.Chart(part).encode(x=alt.X("alpha:Q", title="alpha (x spread along the probe direction)"), color=alt.Color("direction:N"))
        charts[name] = alt.layer(base.mark_line(point=True).encode(y=alt.Y(f"{name}:Q", title=title, scale=alt.Scale(zero=False)),
                                                                  tooltip=["direction", "alpha", alt.Tooltip(f"{name}:Q", format=".3f"), f"{name}_n"]),
                                 base.mark_errorband().encode(y=f"{name}_low:Q", y2=f"{name}_high:Q")).properties(width=300, height=220, title=title)
    return {"steering_curves": alt.concat(*charts.values(), columns=2)}
