"""The Leaderboard tab's data: the library's leaderboard table (registry manifest joined with the latest
regenerated leaderboard), filtered and laid out by the library's column specification."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from probes_hub.hub.registry import Registry
from probes_hub.leaderboard import COLUMNS, LeaderboardError, leaderboard_version, read_leaderboard

SHOWN = [c for c in COLUMNS if c.shown]
FILTERS = ("model", "dataset", "label", "probe_type")
"""Columns the tab's dropdowns filter on, in the order of the dropdowns."""
TITLES = {c.name: c.title for c in COLUMNS}


class LeaderboardReader:
    """Reads leaderboard.json for the tab and keeps the last good copy: a corrupt file is reported as corrupt (and the
    last good copy shown), a missing one as not there yet."""

    def __init__(self):
        self.last_good: dict | None = None

    def read(self, source: str | None) -> tuple[dict | None, str]:
        """(leaderboard or None, a notice for the user: empty when the file read fine)."""
        if not source:
            return None, ""
        try:
            self.last_good = read_leaderboard(source)
            return self.last_good, ""
        except FileNotFoundError:
            return None, ""
        except LeaderboardError as error:
            shown = f"showing the last good copy, refreshed {self.last_good.get('refreshed_at')}" if self.last_good else "showing the registry's recorded metrics"
            return self.last_good, f"⚠️ {error} ({shown})."
        except Exception as error:  # the Hub unreachable, for one
            return self.last_good, f"⚠️ Could not read the leaderboard ({type(error).__name__}: {error})."


def source_version(source: str | None) -> str | None:
    """Changes whenever the leaderboard file does (mtime or Hub etag); the tab re-reads only then."""
    return leaderboard_version(source) if source else None


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The shown columns of the library table, in specification order, under their display titles; numbers rounded to 3 places."""
    table = table[[c.name for c in SHOWN]]
    table = table.round({c.name: 3 for c in SHOWN if c.numeric})
    return table.sort_values(["dataset", "label", "value"], ascending=[True, True, False]).rename(columns={c.name: c.title for c in SHOWN})


def filter_table(table: pd.DataFrame, *, model: str = "all", dataset: str = "all", label: str = "all", probe_type: str = "all", search: str = "") -> pd.DataFrame:
    """Rows matching the dropdown filters and a case-insensitive search over the probe folder name."""
    keep = pd.Series(True, index=table.index)
    for column, value in zip(FILTERS, (model, dataset, label, probe_type)):
        if value and value != "all":
            keep &= table[TITLES[column]] == value
    if search:
        keep &= table[TITLES["name"]].str.contains(search, case=False, regex=False)
    return table[keep]


def chart_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The shown table back under column names, as the library's charts read it."""
    return table.rename(columns={title: name for name, title in TITLES.items()}).assign(status="ok")


def refreshed_at(leaderboard: dict | None, registry: Registry) -> str:
    if leaderboard:
        return f"Leaderboard last refreshed {leaderboard.get('refreshed_at')} (registry index {registry.manifest().generated_at})."
    return f"No regenerated leaderboard yet: showing the metrics recorded at training (registry index {registry.manifest().generated_at})."


@dataclass
class LeaderboardView:
    """Everything the Leaderboard tab shows, in the order of its outputs (the dropdowns' choices as lists)."""

    refreshed: str
    matrix_chart: object | None
    task_ci_chart: object | None
    scaling_chart: object | None
    table: pd.DataFrame
    chart: object | None
    choices: list[list[str]]
    version: str | None


def leaderboard_view(reader: LeaderboardReader, source: str | None, registry: Registry, problems: dict[str, str], *, search: str = "",
                     model: str = "all", dataset: str = "all", label: str = "all", probe_type: str = "all") -> LeaderboardView:
    """Read the leaderboard (the last good copy if it is corrupt), join it with the registry, filter the table and build the charts;
    the model x task overview always shows every model and task (the filters act on the table only)."""
    from probes_hub.charts import leaderboard_charts, overview_charts
    from probes_hub.leaderboard import leaderboard_table, task_metrics_of
    from probes_hub.matrix import model_task_cells

    from .predict_view import plain

    leaderboard, notice = reader.read(source)
    library = leaderboard_table(registry, leaderboard, problems=problems)
    full = display_table(library)
    shown = filter_table(full, model=model, dataset=dataset, label=label, probe_type=probe_type, search=search)
    charts = leaderboard_charts(chart_rows(shown)) if len(shown) else {}
    overview = overview_charts(model_task_cells(library, task_metrics_of(leaderboard)))
    choices = [["all", *sorted(full[TITLES[name]].dropna().unique())] for name in FILTERS]
    return LeaderboardView(plain(" ".join(filter(None, [notice, refreshed_at(leaderboard, registry)]))), overview.get("model_task_matrix"),
                           overview.get("task_ci"), overview.get("scaling"), shown, charts.get("metric_by_model_dataset"), choices,
                           source_version(source))
