"""The "Inside the model" tab's data: the committed ``probes-hub analyze`` outputs of the bundled probes, and live attribution patching.

Precomputed results are read from ``analysis/<probe>/<heads|steer|transfer>/`` (result.json and the charts' Vega-Lite specs).
Only attribution patching runs live: one forward and one backward pass per batch, seconds for a few questions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from gradio.components.plot import PlotData

from probes_hub.analysis import DEFAULT_PROBE
from probes_hub.paths import BUNDLED_ANALYSIS
from probes_hub.schema.validation import read_json

KINDS = ("heads", "steer", "transfer")
LIVE_LIMITS = (4, 64)
"""Fewest and most test questions a live attribution run reads."""


@dataclass
class Section:
    """One analysis of one probe as committed: its result.json and its charts (by file stem)."""

    result: dict | None
    charts: dict[str, PlotData] = field(default_factory=dict)


def analyzed_probes(root: Path = BUNDLED_ANALYSIS) -> list[str]:
    """Probes with committed analyses, the default probe first."""
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    return sorted(names, key=lambda name: name != DEFAULT_PROBE)


def read_section(probe: str, kind: str, root: Path = BUNDLED_ANALYSIS) -> Section:
    """The committed outputs of ``analyze <kind>`` for ``probe`` (an empty section when there are none)."""
    folder = root / probe / kind
    if probe not in analyzed_probes(root) or kind not in KINDS or not (folder / "result.json").is_file():
        return Section(None)
    charts = {path.name[: -len(".vl.json")]: PlotData(type="altair", plot=path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.vl.json"))}
    return Section(read_json(folder / "result.json"), charts)


def _ci(metric: dict | None, digits: int = 3) -> str:
    if not metric or metric.get("value") is None or not np.isfinite(metric["value"]):
        return "n/a"
    return f"{metric['value']:.{digits}f} [{metric['low']:.{digits}f}, {metric['high']:.{digits}f}]"


def heads_markdown(result: dict | None) -> str:
    if not result:
        return "No head analysis committed for this probe (run `probes-hub analyze heads --probe NAME`)."
    clean = result["clean"]
    return (f"**{result['probe']}** reads layer {result['layer']}, position {result['position']}. Each of the {len(result['heads'])} heads in blocks "
            f"0-{result['layer']} was {result['ablation']}-ablated on n={result['n']} test questions (clean test Spearman {_ci(clean)}). "
            f"Attribution patching agreed with exact ablation at Spearman **{result['agreement_spearman']:.3f}** over heads, "
            f"**{result['top10_overlap']}/10** shared top heads. Time: exact {result['seconds_exact']:.0f} s, attribution {result['seconds_attribution']:.0f} s.")


def top_heads_frame(result: dict | None, k: int = 10) -> pd.DataFrame:
    """The heads that move the mean reading most, with 95% CIs (exact) and the attribution estimate."""
    if not result:
        return pd.DataFrame()
    heads = sorted(result["heads"], key=lambda h: -abs(h["reading_shift"]))[:k]
    return pd.DataFrame([{"head": f"L{h['layer']}H{h['head']}", "change of mean reading [95% CI]": f"{h['reading_shift']:+.3f} [{h['shift_low']:+.3f}, {h['shift_high']:+.3f}]",
                          "attribution estimate": round(h["attribution_shift"], 3),
                          "change of Spearman [95% CI]": f"{h['spearman_delta']:+.3f} [{h['delta_low']:+.3f}, {h['delta_high']:+.3f}]"} for h in heads])


def steer_markdown(result: dict | None) -> str:
    if not result:
        return "No steering analysis committed for this probe (run `probes-hub analyze steer --probe NAME`)."
    down = (f" The layer-{result['downstream_layer']} probe moves {result['downstream_shift_per_alpha']:.3f} per alpha "
            f"(random: {result['random_downstream_shift_per_alpha']:.3f}).") if result.get("downstream_shift_per_alpha") is not None else ""
    return (f"alpha = multiples of the spread along the probe direction ({result['spread']:.2f}; mean residual norm {result['residual_norm']:.1f}). "
            f"The probe's reading moves **{result['shift_per_alpha']:.3f}** per alpha along its direction and {result['random_shift_per_alpha']:.3f} along a random "
            f"direction of the same norm (n={result['n_reading']} test questions).{down} Generations: greedy, n={result['n_generate']} GSM8K test questions per alpha.")


def steering_examples_frame(result: dict | None) -> pd.DataFrame:
    """Example generations side by side: clean, the probe direction at both ends, the random control."""
    if not result or not result.get("examples"):
        return pd.DataFrame()
    rows = []
    for example in result["examples"]:
        row = {"question": example["question"][:300], "gold": example["gold"]}
        for name, value in example.items():
            if isinstance(value, dict):
                row[name] = f"[{'✓' if value['correct'] else '✗'} {value['tokens']} tokens] {value['text'][:600]}"
        rows.append(row)
    return pd.DataFrame(rows)


def transfer_markdown(result: dict | None) -> str:
    if not result:
        return "No transfer analysis committed for this probe (run `probes-hub analyze transfer --probe NAME`)."
    s = result["summary"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    return (f"Bins: {result['dataset']} `{result['bin_label']}`; predicted: `{result['label']}` ({'Spearman' if result['task'] == 'graded' else 'ROC-AUC'}) "
            f"at layer {result['layer']}, position {result['position']}. Mean over cells: same bin {fmt(s['mean_diagonal'])}, trained on easier bins "
            f"than tested {fmt(s['mean_easier_to_harder'])}, on harder {fmt(s['mean_harder_to_easier'])}, trained on all {fmt(s['mean_all_bins'])}.")


def transfer_frame(result: dict | None) -> pd.DataFrame:
    """The train-bin x test-bin matrix as text cells: value [95% CI] (n)."""
    if not result:
        return pd.DataFrame()
    cells = pd.DataFrame([{"train bin": c["train_bin"], "test": c["test_bin"], "cell": f"{_ci(c['metric'], 2)} (n={c['metric']['n']})"} for c in result["cells"]])
    table = cells.pivot(index="train bin", columns="test", values="cell").reindex(index=[*result["bins"], "all"], columns=result["bins"])
    return table.reset_index()


class LiveAttribution:
    """Attribution patching for one probe of the active model, on a seeded subset of its test questions, in this process.

    Keeps one copy of the model per spec (loaded on first use); one run at a time.
    """

    def __init__(self, registry, data_dir: str | None = None):
        self.registry, self.data_dir = registry, data_dir
        self._models: dict[str, object] = {}
        self._lock = threading.Lock()

    def probes_for(self, display_id: str) -> list[str]:
        """Names of the registry's single-cell linear probes that read ``display_id``."""
        return [e.name for e in self.registry.list(probe_type="linear") if e.model == display_id]

    def run(self, model: str, probe: str, limit: int):
        """``(markdown, heatmap chart, top-heads frame)`` of attribution patching for ``probe`` on ``limit`` test questions."""
        from probes_hub.analysis.heads import head_attribution, head_heatmap
        from probes_hub.analysis.target import load_target
        from probes_hub.extract.models import load_model

        with self._lock:
            lm = self._models.get(model) or self._models.setdefault(model, load_model(model))
            target = load_target(probe, registry=self.registry.spec, data_dir=self.data_dir, limit=limit, lm=lm)
            estimate = head_attribution(target, progress=False).mean(axis=0)  # [layers, heads]
        table = pd.DataFrame([{"layer": layer, "head": head, "attribution_shift": float(estimate[layer, head])}
                              for layer in range(estimate.shape[0]) for head in range(estimate.shape[1])])
        top = table.reindex(table["attribution_shift"].abs().sort_values(ascending=False).index).head(10)
        frame = pd.DataFrame({"head": [f"L{r.layer}H{r.head}" for r in top.itertuples()], "attribution estimate": top["attribution_shift"].round(4).tolist()})
        chart = head_heatmap(table, "attribution_shift", legend="estimated change", title=f"attribution patching: zero-ablating each head (n={len(target.y)})")
        note = (f"Attribution patching for **{probe}** (layer {target.layer}, position {target.position}) on {len(target.y)} seeded test questions: "
                "the first-order estimate of how much zero-ablating each head changes the mean reading. Check it against the exact ablation "
                "above before trusting a ranking.")
        return note, chart, frame
