"""Which attention heads a probe's reading depends on: exact ablation and attribution patching, and how well they agree.

Exact: each head in blocks ``<= layer`` is ablated in turn (its output set to zero, or to its mean over the test
tokens) and the model re-run to the probe's layer, starting from the recorded residual stream at the head's own
block (earlier blocks are unchanged, so they are not run again). Attribution patching estimates the same change
of the reading from one forward and one backward pass per batch: the gradient of the reading with respect to each
head's output times the ablation's change of that output. Exact ablation is what to trust; attribution is what is
affordable on big models, and the report says how well it matched here.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from probes_hub.analysis import ABLATIONS
from probes_hub.analysis.runner import (
    PromptBatch,
    n_heads,
    record_block_inputs,
    record_head_outputs,
    replace_head,
    resume_at,
    run_to,
)
from probes_hub.analysis.target import ProbeTarget
from probes_hub.metrics import BOOTSTRAP_SEED, N_BOOTSTRAP, Metric, spearman_metric, spearman_rows
from probes_hub.progress import progress_bar

TOP_K = 10


@dataclass
class HeadEffect:
    """One head's effect on the probe: exact change of the mean reading (95% CI over questions), its attribution estimate, and test Spearman."""

    layer: int
    head: int
    reading_shift: float
    shift_low: float
    shift_high: float
    attribution_shift: float
    spearman: float
    spearman_delta: float
    delta_low: float
    delta_high: float


@dataclass
class HeadsReport:
    """Every head's effect on one probe's test readings, and the agreement of attribution patching with exact ablation."""

    probe: str
    model: str
    layer: int
    position: int
    ablation: str
    n: int
    clean: Metric
    heads: list[HeadEffect]
    agreement_spearman: float
    """Spearman over heads between the exact and the attributed change of the mean reading."""
    top10_overlap: int
    """Heads shared by the exact and the attributed top 10 (by absolute change of the mean reading)."""
    seconds_exact: float
    seconds_attribution: float
    settings: dict = field(default_factory=dict)

    def top(self, k: int = TOP_K, key: str = "reading_shift") -> list[HeadEffect]:
        return sorted(self.heads, key=lambda h: -abs(getattr(h, key)))[:k]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(h) for h in self.heads])

    def to_json(self) -> dict:
        data = asdict(self)
        data["top_heads"] = [f"L{h.layer}H{h.head}" for h in self.top()]
        return data


def head_attribution(target: ProbeTarget, *, ablation: str = "zero", batches: list[PromptBatch] | None = None, progress: bool = True) -> np.ndarray:
    """Attribution-patching estimate of each question's change of reading when each head is ablated: ``[N, layer + 1, heads]``."""
    lm, layers = target.lm, list(range(target.layer + 1))
    batches = batches or target.batches()
    means = head_means(target, batches) if ablation == "mean" else None
    estimate = np.zeros((len(target.prompt_ids), len(layers), n_heads(lm)))
    embed = lm.model.get_input_embeddings()
    for batch in progress_bar(batches, desc="Attribution patching", unit="batch", disable=not progress):
        outputs: dict[int, torch.Tensor] = {}
        with torch.enable_grad():
            embeds = embed(batch.input_ids.to(lm.device)).detach().requires_grad_(True)
            reading = target.read(run_to(lm, batch, target.layer, [record_head_outputs(lm, layers, outputs)], inputs_embeds=embeds))
            grads = torch.autograd.grad(reading.sum(), [outputs[layer] for layer in layers])
        mask = batch.attention_mask.to(lm.device)[..., None, None]
        for layer, grad in zip(layers, grads):
            z = outputs[layer].detach()
            heads = z.view(*z.shape[:2], n_heads(lm), -1)
            replacement = torch.zeros_like(heads) if means is None else means[layer].view(n_heads(lm), -1).to(z.dtype).expand_as(heads)
            change = ((replacement - heads) * grad.view_as(heads) * mask).sum(dim=(1, 3))  # [B, heads]
            estimate[batch.rows, layer] = change.double().cpu().numpy()
    return estimate


@torch.inference_mode()
def head_means(target: ProbeTarget, batches: list[PromptBatch]) -> dict[int, torch.Tensor]:
    """Each block's heads' outputs averaged over every (non-pad) test token: the mean-ablation values."""
    lm, layers = target.lm, list(range(target.layer + 1))
    sums: dict[int, torch.Tensor] = {}
    tokens = 0
    for batch in batches:
        outputs: dict[int, torch.Tensor] = {}
        run_to(lm, batch, target.layer, [record_head_outputs(lm, layers, outputs)])
        mask = batch.attention_mask.to(lm.device)[..., None].to(torch.float64)
        for layer in layers:
            total = (outputs[layer].double() * mask).sum(dim=(0, 1))
            sums[layer] = sums[layer] + total if layer in sums else total
        tokens += batch.tokens
    return {layer: (total / tokens).float() for layer, total in sums.items()}


@torch.inference_mode()
def ablation_readings(target: ProbeTarget, *, ablation: str = "zero", batches: list[PromptBatch] | None = None,
                      progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(clean [N], ablated [N, layer + 1, heads])``: the probe's test readings, clean and with each head ablated in turn."""
    lm, layers, heads = target.lm, list(range(target.layer + 1)), n_heads(target.lm)
    batches = batches or target.batches()
    means = head_means(target, batches) if ablation == "mean" else None
    clean = np.zeros(len(target.prompt_ids))
    ablated = np.zeros((len(target.prompt_ids), len(layers), heads))
    residuals: list[dict[int, torch.Tensor]] = []
    for batch in batches:
        inputs: dict[int, torch.Tensor] = {}
        clean[batch.rows] = target.read(run_to(lm, batch, target.layer, [record_block_inputs(lm, layers, inputs)])).cpu().numpy()
        residuals.append(inputs)
    tokens = sum(b.tokens for b in batches)
    with progress_bar(total=len(layers) * heads, desc=f"Ablating heads ({tokens} tokens each)", unit="head", disable=not progress) as bar:
        for layer in layers:
            for head in range(heads):
                value = None if means is None else means[layer].view(heads, -1)[head]
                for batch, inputs in zip(batches, residuals):
                    edits = [resume_at(lm, layer, inputs[layer]), replace_head(lm, layer, head, value)]
                    ablated[batch.rows, layer, head] = target.read(run_to(lm, batch, target.layer, edits)).cpu().numpy()
                bar.update(1)
    return clean, ablated


def analyze_heads(target: ProbeTarget, *, ablation: str = "zero", n_boot: int = N_BOOTSTRAP, progress: bool = True) -> HeadsReport:
    """Exact ablation and attribution patching of every head in blocks ``<= layer``, with Spearman deltas and their agreement."""
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation must be one of {', '.join(ABLATIONS)}, got {ablation!r}")
    batches = target.batches()
    started = time.time()
    clean, ablated = ablation_readings(target, ablation=ablation, batches=batches, progress=progress)
    seconds_exact = time.time() - started
    started = time.time()
    attributed = head_attribution(target, ablation=ablation, batches=batches, progress=progress)
    seconds_attribution = time.time() - started
    y, n = target.y, len(target.y)
    index = np.random.default_rng(BOOTSTRAP_SEED).integers(0, n, size=(n_boot, n))
    clean_boot = spearman_rows(y[index], clean[index])
    clean_spearman = float(spearman_rows(y, clean))
    effects = []
    for layer in range(ablated.shape[1]):
        for head in range(ablated.shape[2]):
            reading = ablated[:, layer, head]
            shift = reading - clean
            shift_boot = shift[index].mean(1)
            delta_boot = spearman_rows(y[index], reading[index]) - clean_boot  # paired: the same resamples for both
            spearman = float(spearman_rows(y, reading))
            effects.append(HeadEffect(layer, head, float(shift.mean()), *_ci(shift_boot), float(attributed[:, layer, head].mean()),
                                      spearman, spearman - clean_spearman, *_ci(delta_boot)))
    exact = np.array([e.reading_shift for e in effects])
    estimate = np.array([e.attribution_shift for e in effects])
    top_exact = set(np.argsort(-np.abs(exact))[:TOP_K])
    top_estimate = set(np.argsort(-np.abs(estimate))[:TOP_K])
    return HeadsReport(target.name, target.lm.display_id, target.layer, target.position, ablation, n, spearman_metric(y, clean), effects,
                       float(spearman_rows(exact, estimate)), len(top_exact & top_estimate), seconds_exact, seconds_attribution,
                       {"heads_per_layer": int(ablated.shape[2]), "test_rows": target.test_rows.tolist()})


def head_heatmap(table: pd.DataFrame, column: str, *, title: str, legend: str):
    """A heads x layers heatmap of one column of a per-head table (``layer``, ``head``, ``column``), centred on zero."""
    import altair as alt

    limit = float(np.nanmax(np.abs(table[column]))) if len(table) else 1.0
    return alt.Chart(table).mark_rect().encode(
        x=alt.X("layer:O", title="layer"), y=alt.Y("head:O", title="head"),
        color=alt.Color(f"{column}:Q", scale=alt.Scale(scheme="redblue", domain=[-(limit or 1.0), limit or 1.0], reverse=True), title=legend),
        tooltip=["layer", "head", alt.Tooltip(f"{column}:Q", format=".4f")]).properties(title=title, width=420, height=220)


def heads_charts(report: HeadsReport) -> dict:
    """Heads x layers heatmaps of the change of the mean reading and of test Spearman, and exact vs attribution."""
    import altair as alt

    table = report.table()
    shift = head_heatmap(table, "reading_shift", legend="change of mean reading",
                         title=f"{report.ablation}-ablating each head: change of the mean reading (n={report.n})")
    delta = head_heatmap(table, "spearman_delta", legend="change of test Spearman", title=f"change of test Spearman (clean {report.clean.value:.3f})")
    agreement = alt.Chart(table).mark_point().encode(
        x=alt.X("reading_shift:Q", title="exact ablation"), y=alt.Y("attribution_shift:Q", title="attribution patching"),
        tooltip=["layer", "head"]).properties(title=f"agreement over heads: Spearman {report.agreement_spearman:.3f}, top-10 overlap {report.top10_overlap}",
                                             width=320, height=320)
    return {"heads_heatmap": alt.vconcat(shift, delta), "heads_agreement": agreement}


def _ci(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if not values.size:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)
