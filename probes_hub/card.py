"""Model cards for probe folders: structured eval results (huggingface_hub card data) plus readable text."""

from __future__ import annotations

from huggingface_hub import EvalResult, ModelCardData


def _eval_results(config: dict) -> list[EvalResult]:
    test = config["metrics"].get("test") or {}
    if not test:
        return []
    return [EvalResult(task_type="text-classification" if config["label"]["task"] == "binary" else "text-ranking",
                       dataset_type=config["data"]["dataset"], dataset_name=config["data"]["dataset"], dataset_split="test",
                       metric_type=test["name"], metric_value=round(test["value"], 4), metric_name=f"test {test['name']}")]


def probe_card(config: dict) -> str:
    """README.md text for a probe folder, generated from its config (never hand-written)."""
    model, label, data, metrics = config["model"], config["label"], config["data"], config["metrics"]
    base_model = model["display_id"] if model["display_id"].count("/") == 1 else None
    card_data = ModelCardData(library_name="probes_hub", tags=["difficulty-probe", config["probe_type"], label["task"]],
                              base_model=base_model, model_name=f"{config['probe_type']} probe: {data['dataset']} {label['name']}",
                              eval_results=_eval_results(config) or None)
    what = (f"the probability that the model(s) behind label `{label['name']}` answer correctly" if label["task"] == "binary"
            else f"the question's `{label['name']}` (range {label['range']})")
    where = f"layer {config['layer']}, position {config['position']}" if config["layer"] is not None else "no activations (text/length only)"
    lines = [
        f"# {config['probe_type']} probe: {data['dataset']} / {label['name']}",
        "",
        f"Predicts {what} from **{model['display_id']}** before it writes a token ({where}).",
        "",
        "## How it was trained and evaluated",
        f"- Model fingerprint: `{model['fingerprint']}`; prompt: {model['prompt'].get('mode')} template, EOI tokens {model['prompt'].get('eoi_tokens')}.",
        f"- Data: `{data['dataset']}`, split rule: {data['split_rule']}; n_train={data['n_train']}, n_test={data['n_test']}"
        + (f", calibration rows={data.get('n_calibration')}" if data.get("n_calibration") else "") + ".",
        f"- Selection (training rows only): {config['selection'].get('method', 'none')}.",
        f"- Calibration: {config['calibration']['fitted_on'] if config['calibration'] else 'none'}.",
        "",
        "## Test metrics (untouched test split, bootstrap 95% CI)",
        "| metric | value | 95% CI | n |",
        "|---|---|---|---|",
    ]
    for key, metric in metrics.items():
        if isinstance(metric, dict) and "value" in metric:
            lines.append(f"| {key} ({metric['name']}) | {metric['value']:.3f} | [{metric['low']:.3f}, {metric['high']:.3f}] | {metric['n']} |")
    lines += ["", "## Load it", "```python", "from probes_hub import Probe", 'probe = Probe.from_pretrained("path/to/this/folder")', "```", ""]
    return f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines)
