"""What ``probes-hub pools`` prints: the bundled routing pools for a user (models, cost unit, where prices come from and how old
they are) and how to write a pool file of one's own."""

from __future__ import annotations

from pathlib import Path

from probes_hub.paths import bundled_pools
from probes_hub.routing.evaluate import load_pool, pool_path
from probes_hub.schema.validation import read_json

OWN_POOL = """A pool of your own is a JSON file (pass its path as --pool to route, route-file and suggest; PROBES_HUB_POOLS for the app):
  name, description, cost_rule (how a question's cost is computed), prices_as_of (where prices come from, and when),
  chars_per_token (recorded output characters per token, e.g. 4), optional dataset (default mmlu-pro; mixed for the
  outcome benchmarks) and benchmarks (mmlu-pro, gsm8k, math500, math-l5, arc-challenge), optional default_lambda, and
  models: a list of {name (as in the outcome data), label (correct:<name>, a success label the registry has probes for),
  usd_per_mtok_out (USD per million output tokens) or active_params_b (billions), optional output_multiplier}.
Every model needs a success probe on the pool's dataset in the registry and recorded outcomes on its benchmarks."""


def pools_table() -> str:
    """One line per bundled pool: name, dataset and benchmarks, models, cost unit, default lambda, prices."""
    lines = []
    for name in bundled_pools():
        pool, raw = load_pool(name), read_json(pool_path(name))
        lines.append(f"{name}: {len(pool.models)} models on {pool.dataset} ({', '.join(pool.benchmarks)}); cost in {pool.cost_unit}; "
                     f"default lambda {pool.default_lambda:g}; prices: {raw.get('prices_as_of', 'not stated')}")
    return "\n".join(lines)


def pool_details(spec: str | Path) -> str:
    """A pool's description, cost rule, price date and every model with its cost per token and the cost's source."""
    pool, raw = load_pool(spec), read_json(pool_path(spec))
    lines = [f"{pool.name}: {raw.get('description', '')}", f"cost rule: {raw.get('cost_rule', 'not stated')}",
             f"prices: {raw.get('prices_as_of', 'not stated')}", f"cost unit: {pool.cost_unit}; default lambda {pool.default_lambda:g}", "models:"]
    unit = "USD per million output tokens" if any("usd_per_mtok_out" in m for m in raw["models"]) else "B active parameters"
    for model, entry in zip(pool.models, raw["models"]):
        multiplier = f", output counted x{model.output_multiplier:g}" if model.output_multiplier != 1 else ""
        lines.append(f"  {model.name}: {model.cost_per_token:g} {unit}{multiplier} ({entry.get('price_source') or entry.get('source', '')})")
    return "\n".join(lines)
