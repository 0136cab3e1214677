"""The per-row predictions report of a trained probe (``reports/predictions.safetensors``): written once, read here.

Arrays ``prediction`` (float64, NaN for rows the probe never saw) and ``role`` (uint8, an index into
:data:`~probes_hub.constants.ROLES`: fit, calibration, test, none), one entry per row of the training
dataset in its order. The rows are the dataset's own (``data.content_hash``, ``limit``, ``seed`` in the
config), so question ids are not repeated in every probe folder.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save

from probes_hub.constants import PREDICTIONS_REPORT, REPORTS_DIR, ROLES
from probes_hub.schema.records import DataInfo
from probes_hub.schema.validation import ProbeValidationError, validate_probe_dir


def encode_predictions(prediction: np.ndarray, role: np.ndarray) -> bytes:
    """The report's bytes for per-row predictions and role indices."""
    return save({"prediction": np.asarray(prediction, dtype=np.float64), "role": np.asarray(role, dtype=np.uint8)},
                metadata={"roles": ",".join(ROLES)})


def prediction_values(folder: str | Path) -> np.ndarray | None:
    """A probe folder's saved predictions on every row of its dataset, without their ids (None when it has no report)."""
    path = Path(folder) / REPORTS_DIR / PREDICTIONS_REPORT
    return load_file(str(path))["prediction"] if path.exists() else None


def read_predictions(folder: str | Path, *, data_dir: str | None = None) -> pd.DataFrame:
    """A probe folder's saved predictions as a table indexed by question id, with ``role`` and ``prediction`` columns."""
    folder = Path(folder)
    config = validate_probe_dir(folder)
    rows = saved_rows(folder)
    ids = _dataset_ids(config.record.data, _label_for_rows(config.record.data, config.record.label.name), data_dir)
    if len(ids) != len(rows):
        raise ProbeValidationError(f"{folder}: {PREDICTIONS_REPORT} has {len(rows)} rows, the dataset {len(ids)}.")
    table = rows.set_index(pd.Index(ids, name="id"))
    return table[table["role"] != ROLES[-1]]


def saved_rows(folder: str | Path) -> pd.DataFrame:
    """A probe folder's saved ``role`` and ``prediction`` per row of its training dataset, by position (the dataset's order)."""
    arrays = load_file(str(Path(folder) / REPORTS_DIR / PREDICTIONS_REPORT))
    return pd.DataFrame({"role": np.asarray(ROLES)[arrays["role"]], "prediction": arrays["prediction"]})


def _label_for_rows(data: DataInfo, label: str) -> str | None:
    """The label a probe's rows depend on: a local file's label column; none for a built-in dataset (every label has every row)."""
    from probes_hub.data.datasets import BUILTIN

    return None if data.dataset in BUILTIN else label


@lru_cache(maxsize=8)
def _dataset_ids(data: DataInfo, label: str | None, data_dir: str | None) -> tuple[str, ...]:
    """Question ids of the rows a probe was trained on (memoized: the many probes of one dataset share them)."""
    from probes_hub.data.datasets import training_dataset

    return tuple(str(i) for i in training_dataset(data, [label] if label else None, data_dir=data_dir).frame["id"])
