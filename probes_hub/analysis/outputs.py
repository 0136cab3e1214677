"""Write an analysis's outputs (JSON, CSV, charts) into a folder that appears complete or not at all."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd

from probes_hub.atomic import atomic_folder, atomic_write_json
from probes_hub.charts import save_chart


def write_analysis(out: str | Path, result: dict, tables: dict[str, pd.DataFrame], charts: dict[str, alt.TopLevelMixin]) -> list[Path]:
    """``out/result.json``, one CSV per table and ``.html`` + ``.vl.json`` per chart, built beside ``out`` and swapped in when done."""
    target = Path(out)
    with atomic_folder(target) as built:
        atomic_write_json(built / "result.json", result)
        for name, table in tables.items():
            table.to_csv(built / f"{name}.csv", index=False)
        for name, chart in charts.items():
            save_chart(chart, built / name)
    return sorted(target.iterdir())
