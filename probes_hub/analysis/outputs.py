"""Write an analysis's outputs (JSON, CSV, charts) into a folder that appears complete or not at all."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import altair as alt
import pandas as pd

from probes_hub.cache import atomic_write_json, replace_folder
from probes_hub.charts import save_chart


def write_analysis(out: str | Path, result: dict, tables: dict[str, pd.DataFrame], charts: dict[str, alt.TopLevelMixin]) -> list[Path]:
    """``out/result.json``, one CSV per table and ``.html`` + ``.vl.json`` per chart, built beside ``out`` and swapped in when done."""
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.building-"))
    built.chmod(0o755)  # mkdtemp's folder is private; the result is not
    try:
        atomic_write_json(built / "result.json", result)
        for name, table in tables.items():
            table.to_csv(built / f"{name}.csv", index=False)
        for name, chart in charts.items():
            save_chart(chart, built / name)
        replace_folder(built, target)
    finally:
        shutil.rmtree(built, ignore_errors=True)
    return sorted(target.iterdir())
