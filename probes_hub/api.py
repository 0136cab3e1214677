"""The one-call Python API: questions in, a tidy table of difficulty readings and success probabilities out.

>>> import probes_hub
>>> probes_hub.predict(["What is 7 + 5?"], label="level")  # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
from functools import lru_cache
from typing import TYPE_CHECKING

import pandas as pd

from probes_hub.apply import choose_probes, read_probes
from probes_hub.hub.registry import Registry
from probes_hub.schema.records import BINARY

if TYPE_CHECKING:
    from probes_hub.extract.models import LoadedModel

COLUMNS = ["question_index", "question", "reading", "dataset", "label", "value", "in_distribution", "probe_type", "test_metric", "test_value",
           "test_low", "test_high", "test_n", "probe"]


@lru_cache(maxsize=2)
def _source(model: str | None):
    """The model's feature source, loaded once per process (loading takes seconds, predicting milliseconds)."""
    from probes_hub.extract.feature_source import ModelFeatures
    from probes_hub.extract.models import load_model

    return ModelFeatures(load_model(model))


def _wrap(lm: LoadedModel):
    from probes_hub.extract.feature_source import ModelFeatures

    return ModelFeatures(lm)


def predict(questions: str | list[str], registry: str | None = None, label: str | None = None, model: str | LoadedModel | None = None) -> pd.DataFrame:
    """Read every matching probe of a registry for each question, before the model writes a token.

    Args:
        questions: one question or a list of them.
        registry: a local registry folder or Hub repo id (default: the bundled registry).
        label: only labels matching this name or shell pattern (``"level"``, ``"correct:*"``); default all.
        model: the model whose activations are read: a spec for ``load_model`` (default: the embedded
            SmolLM2-135M-Instruct; loaded once per process) or an already loaded model.

    Returns:
        One row per (question, label): ``reading`` is ``difficulty`` (a graded label's predicted value) or
        ``success`` (the calibrated probability that the label's model answers correctly), with the probe's
        test metric, its 95% CI and n, and ``in_distribution`` (0-1: the share of the probe's training questions
        less typical than this one; NaN for probes that keep no training summary). For each (dataset, label) the
        preferred probe type is read.

    Raises:
        ValueError: no question, or no probe of the registry matches the model and label.
    """
    questions = [questions] if isinstance(questions, str) else list(questions)
    if not questions or any(not str(q).strip() for q in questions):
        raise ValueError("predict needs at least one question, and no empty ones.")
    source = _source(model) if model is None or isinstance(model, str) else _wrap(model)
    reg = Registry(registry)
    entries = [e for e in reg.list() if label is None or fnmatch.fnmatchcase(e.label, label)]
    chosen = choose_probes(entries, source)
    if not chosen:
        raise ValueError(f"No probe in {reg.spec} reads {source.display_id}" + (f" for label {label!r}." if label else "."))
    loaded = reg.load_all(names=chosen)
    if loaded.problems:
        raise ValueError("Some probes failed to load: " + "; ".join(f"{k}: {v}" for k, v in loaded.problems.items()))
    readings = read_probes(source, loaded.probes, questions)
    rows = []
    for name, probe in loaded.probes.items():
        record, test = probe.record_, probe.record_.test_metric
        for index, question in enumerate(questions):
            rows.append({"question_index": index, "question": question, "reading": "success" if probe.task == BINARY else "difficulty",
                         "dataset": record.data.dataset, "label": record.label.name, "value": float(readings[name].prediction[index]),
                         "in_distribution": float(readings[name].in_distribution[index]),
                         "probe_type": probe.probe_type, "test_metric": test.name if test else None, "test_value": test.value if test else None,
                         "test_low": test.low if test else None, "test_high": test.high if test else None, "test_n": test.n if test else None,
                         "probe": name})
    return pd.DataFrame(rows, columns=COLUMNS).sort_values(["question_index", "reading", "dataset", "label"]).reset_index(drop=True)
