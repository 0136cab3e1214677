"""The Leaderboard tab's table: the registry's manifest (always current) joined with the latest regenerated leaderboard."""

from __future__ import annotations

import pandas as pd

from probes_hub.registry import Registry

COLUMNS = ["name", "model", "dataset", "label", "probe_type", "metric", "value", "low", "high", "n", "baseline_length", "baseline_tfidf",
           "delta", "evaluated_value", "status"]


def read_leaderboard_source(source: str | None) -> dict | None:
    """leaderboard.json from a local folder or a Hub dataset repo; None when there is none yet."""
    if not source:
        return None
    from eval.leaderboard import read_leaderboard

    try:
        return read_leaderboard(source)
    except Exception:  # no leaderboard yet (or offline): the manifest's metrics are shown alone
        return None


def leaderboard_table(registry: Registry, leaderboard: dict | None) -> pd.DataFrame:
    """One row per registry probe with its recorded test metric, CI, n, baselines, and the regenerated value when known."""
    evaluated = {row["name"]: row for row in (leaderboard or {}).get("rows", [])}
    rows = []
    for entry in registry.list():
        m = entry.metric
        best_baseline = max(entry.baselines.values()) if entry.baselines else float("nan")
        row = evaluated.get(entry.name, {})
        rows.append({"name": entry.name, "model": entry.model, "dataset": entry.dataset, "label": entry.label, "probe_type": entry.probe_type,
                     "metric": m.get("name"), "value": m.get("value"), "low": m.get("low"), "high": m.get("high"), "n": m.get("n"),
                     "baseline_length": entry.baselines.get("length"), "baseline_tfidf": entry.baselines.get("tfidf"),
                     "delta": (m.get("value") or float("nan")) - best_baseline, "evaluated_value": row.get("value"),
                     "status": row.get("status", "not yet re-evaluated")})
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.round({c: 3 for c in ("value", "low", "high", "baseline_length", "baseline_tfidf", "delta", "evaluated_value")})


def filter_table(table: pd.DataFrame, *, model: str = "all", dataset: str = "all", label: str = "all", probe_type: str = "all", search: str = "") -> pd.DataFrame:
    """Rows matching the dropdown filters and a case-insensitive search over the probe name."""
    keep = pd.Series(True, index=table.index)
    for column, value in (("model", model), ("dataset", dataset), ("label", label), ("probe_type", probe_type)):
        if value and value != "all":
            keep &= table[column] == value
    if search:
        keep &= table["name"].str.contains(search, case=False, regex=False)
    return table[keep]


def refreshed_at(leaderboard: dict | None, registry: Registry) -> str:
    if leaderboard:
        return f"Leaderboard last refreshed {leaderboard.get('refreshed_at')} (registry index {registry.manifest().generated_at})."
    return f"No regenerated leaderboard yet: showing the metrics recorded at training (registry index {registry.manifest().generated_at})."

