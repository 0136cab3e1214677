"""Model cards for probe folders: structured eval results (huggingface_hub card data) plus readable text."""

from __future__ import annotations

from huggingface_hub import EvalResult, ModelCardData

from probes_hub.schema.records import BINARY, MIN_DTYPE_SPEARMAN, ProbeConfig


def _eval_results(config: ProbeConfig) -> list[EvalResult]:
    test, data = config.record.test_metric, config.record.data
    if test is None:
        return []
    return [EvalResult(task_type="text-classification" if config.record.label.task == BINARY else "text-ranking",
                       dataset_type=data.dataset, dataset_name=data.dataset, dataset_split="test",
                       metric_type=test.name, metric_value=round(test.value, 4), metric_name=f"test {test.name}")]


def probe_card(config: ProbeConfig) -> str:
    """README.md text for a probe folder, generated from its config (never hand-written)."""
    record, selection, calibration = config.record, config.selection, config.calibration
    model, label, data = record.model, record.label, record.data
    display = model.display_id if model else "any model (reads the question text only)"
    base_model = model.display_id if model and model.display_id.count("/") == 1 else None
    card_data = ModelCardData(library_name="probes_hub", tags=["difficulty-probe", config.probe_type, label.task],
                              base_model=base_model, model_name=f"{config.probe_type} probe: {data.dataset} {label.name}",
                              eval_results=_eval_results(config) or None)
    what = (f"the probability that the model(s) behind label `{label.name}` answer correctly" if label.task == BINARY
            else f"the question's `{label.name}` (range {list(label.range)})")
    where = f"layer {selection.layer}, position {selection.position}" if selection.layer is not None else "no activations (text/length only)"
    reads = (f"- Model fingerprint: `{model.fingerprint}`; prompt: {model.prompt.mode} template, EOI tokens {list(model.prompt.eoi_tokens)}."
             if model else "- Model: none (text only).")
    lines = [
        f"# {config.probe_type} probe: {data.dataset} / {label.name}",
        "",
        f"Predicts {what} from **{display}** before it writes a token ({where}).",
        "",
        "## How it was trained and evaluated",
        reads,
        f"- Data: `{data.dataset}`, split rule: {data.split_rule}; n_train={data.n_train}, n_test={data.n_test}"
        + (f", calibration rows={data.n_calibration}" if data.n_calibration else "") + ".",
        f"- Selection (training rows only): {selection.method}.",
        *_activations_add(selection),
        f"- Calibration: {calibration.fitted_on if calibration else 'none'}.",
        "",
        "## Test metrics (untouched test split, bootstrap 95% CI)",
        "| metric | value | 95% CI | n |",
        "|---|---|---|---|",
    ]
    for key, metric in record.metrics.items():
        lines.append(f"| {key} ({metric.name}) | {metric.value:.3f} | [{metric.low:.3f}, {metric.high:.3f}] | {metric.n} |")
    if record.precision:
        lines += ["", "## Read in other precisions (`probes-hub verify-dtype`, on the test split)",
                  "Read in another precision than its features' only where the check passed (Spearman between the two readings "
                  f">= {MIN_DTYPE_SPEARMAN} and the test metric inside half its CI).", ""]
        lines += [f"- {check.summary()}" for check in record.precision.values()]
    lines += ["", "## Load it", "```python", "from probes_hub import Probe", 'probe = Probe.from_pretrained("path/to/this/folder")  # or ("org/repo", subfolder="...")',
              "```", ""]
    return f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines)



def _activations_add(selection) -> list[str]:
    """A stacked probe's line on what its activation input adds; none for other probes."""
    if selection.activations_add is None:
        return []
    with_them, without = selection.activations_add
    return [f"- What the activations add: CV score {with_them:.3f} with the activation input, {without:.3f} from the text readings "
            f"alone ({with_them - without:+.3f}), on the same folds of the training rows."]
