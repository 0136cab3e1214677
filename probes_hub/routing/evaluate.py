"""Evaluate routers on recorded outcomes: a pool file + a registry's success probes + MMLU-Pro outcomes.

Each model's success on a test question is predicted by its probe (the test predictions saved at training
time, reproduced exactly by ``predict``); routers decide from those and each model's expected cost, and are
scored with the actual per-question outcomes and costs. The expected cost is per question when the registry
has an output-length probe (label ``log_output_chars``) of the router's kind: its prediction plus each
model's mean offset on the *training* questions; otherwise it is each model's mean cost on the training
questions. Every headline number carries a bootstrap 95% CI over test questions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from probes_hub.data.datasets import OUTPUT_LENGTH_LABEL, load_dataset, resolve_data_dir
from probes_hub.data.outcomes import BENCHMARK_FOLDERS, outcome_table
from probes_hub.extract.models import display_id_for
from probes_hub.hub.registry import Registry
from probes_hub.hub.reports import read_predictions
from probes_hub.metrics import BOOTSTRAP_SEED
from probes_hub.paths import DEFAULT_POOL, POOLS_DIR
from probes_hub.probes import PROBE_TYPES, baseline_types
from probes_hub.routing.knn import fit_knn
from probes_hub.routing.policies import CurvePoint, aiq, apgr, cost_to_reach, cpt, oracle_choice, random_curve, route_cascade, route_utility, single_models
from probes_hub.schema.records import BINARY
from probes_hub.schema.validation import read_json

LAMBDAS = np.concatenate([[0.0], np.logspace(-3, 1, 160)])
THRESHOLDS = np.linspace(0.0, 1.0, 101)
LEVELS = (0.90, 0.95, 1.00)
WEAK_MODEL = "Meta-Llama-3_1-8B-Instruct"
ACTIVATION_ROUTERS = tuple(sorted((t for t, cls in PROBE_TYPES.items() if cls.reads_activations and BINARY in cls.tasks),
                                  key=lambda t: PROBE_TYPES[t].preference))
"""Activation probe types the probe router can read, in order of preference (fixed before any test result): ``shared`` success
probes are built for routing; per-model ``linear`` probes and the other activation types are the fallbacks."""
TEXT_ROUTERS = tuple(sorted((t for t in baseline_types() if not PROBE_TYPES[t].model_bound), key=lambda t: PROBE_TYPES[t].preference))
"""Routers from text-only baseline probes; a pool needs ``tfidf`` probes, ``embedding`` ones are used when present."""
KNN_ROUTER = "knn"
"""The k-nearest-neighbour router (:mod:`probes_hub.routing.knn`): fitted at evaluation time, not a registry probe."""
LENGTH_PROBE_FOR = {**{t: "linear" for t in ACTIVATION_ROUTERS}, **{t: t for t in TEXT_ROUTERS}, KNN_ROUTER: "embedding"}
"""Which output-length probe each router reads: activation routers the activation probe, the text routers a text one."""
OPERATING_LEVEL = 0.95
"""Every router's operating point reaches this share of the best single model's accuracy on the calibration questions."""


@dataclass(frozen=True)
class PoolModel:
    """One model of a pool: its outcome name, its success label, and what one output token of it costs."""

    name: str
    label: str
    cost_per_token: float
    """In the pool's cost unit: USD per million output tokens (``usd_per_mtok_out``) or active parameters (``active_params_b``)."""
    output_multiplier: float = 1.0
    """Tokens billed per recorded output token (e.g. hidden reasoning tokens)."""


@dataclass(frozen=True)
class Pool:
    """Models to route between, the outcome benchmarks that score them, the dataset their probes were trained on, and the cost rule."""

    name: str
    models: tuple[PoolModel, ...]
    chars_per_token: float
    dataset: str = "mmlu-pro"
    benchmarks: tuple[str, ...] = ("mmlu-pro",)
    cost_unit: str = "active parameters (billions) x output tokens"
    default_lambda: float = 0.2
    """The suggestion's cost weight when none is given (the pool file's ``default_lambda``)."""

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    @property
    def token_costs(self) -> np.ndarray:
        """Cost of one recorded output token of each model, ``[M]``."""
        return np.array([m.cost_per_token * m.output_multiplier for m in self.models])


def load_pool(path: str | Path | None = None) -> Pool:
    """Read and check a pool file: a path, or the name of a bundled pool (``math``, ``mmlu-pro-25``...)."""
    path = pool_path(path)
    try:
        data = read_json(path)
        models = tuple(PoolModel(m["name"], m["label"], float(m["usd_per_mtok_out"] if "usd_per_mtok_out" in m else m["active_params_b"]),
                                 float(m.get("output_multiplier", 1.0))) for m in data["models"])
        usd = any("usd_per_mtok_out" in m for m in data["models"])
        pool = Pool(data["name"], models, float(data["chars_per_token"]), data.get("dataset", "mmlu-pro"), tuple(data.get("benchmarks", ["mmlu-pro"])),
                    "micro-USD (USD per million output tokens x output tokens)" if usd else Pool.cost_unit, float(data.get("default_lambda", Pool.default_lambda)))
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: not a valid pool file ({error}); see {DEFAULT_POOL.name} in {DEFAULT_POOL.parent} for the format.") from error
    if len(set(pool.names)) != len(pool.names) or not models or any(m.cost_per_token <= 0 or m.output_multiplier <= 0 for m in models):
        raise ValueError(f"{path}: model names must be unique and every cost per token and output multiplier positive.")
    unknown = [b for b in pool.benchmarks if b != "mmlu-pro" and b not in BENCHMARK_FOLDERS]
    if unknown:
        raise ValueError(f"{path}: unknown benchmark(s) {unknown}; choose from mmlu-pro, {', '.join(BENCHMARK_FOLDERS)}.")
    return pool


def pool_path(spec: str | Path | None) -> Path:
    """A pool file path, or a bundled pool by name (``math`` is ``pools/math.json``)."""
    if spec is None:
        return DEFAULT_POOL
    path = Path(spec)
    bundled = POOLS_DIR / f"{spec}.json"
    return bundled if not path.exists() and bundled.exists() else path


def outcome_folder(data_root: Path, benchmark: str) -> Path:
    """Where a pool benchmark's outcome files live (MMLU-Pro's own folder, else ``outcomes/<folder>``)."""
    return data_root / "mmlu_pro" if benchmark == "mmlu-pro" else data_root / "outcomes" / BENCHMARK_FOLDERS[benchmark]


def outcome_tables(pool: Pool, data_root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(correct, cost) tables ``[question id x model]`` over the pool's benchmarks, ids as in the pool's dataset;
    zero or missing output lengths get the question's median."""
    parts = []
    for benchmark in pool.benchmarks:
        if benchmark == "mmlu-pro":
            rows = pd.read_csv(outcome_folder(data_root, benchmark) / "outcomes.csv", usecols=["question_id", "model", "correct", "output_chars"])
        else:
            rows = outcome_table(data_root, benchmark)[["question_id", "model", "correct", "output_chars"]]
        rows = rows[rows["model"].isin(pool.names)].copy()
        missing = sorted(set(pool.names) - set(rows["model"]))
        if missing:
            raise ValueError(f"Pool models without outcomes on {benchmark}: {missing}.")
        rows["question_id"] = (f"{benchmark}:" if pool.dataset == "mixed" else "") + rows["question_id"].astype(str)
        parts.append(rows)
    outcomes = pd.concat(parts, ignore_index=True)
    correct = outcomes.pivot(index="question_id", columns="model", values="correct")[pool.names]
    tokens = outcomes.pivot(index="question_id", columns="model", values="output_chars")[pool.names] / pool.chars_per_token
    tokens = tokens.mask(~(tokens > 0))
    tokens = tokens.apply(lambda row: row.fillna(row.median()), axis=1)
    cost = tokens * pool.token_costs
    return correct, cost


def saved_predictions(registry: Registry, name: str, data_dir: str | None = None) -> pd.DataFrame:
    """A probe's predictions saved at training time: ``role`` and ``prediction`` by question id."""
    return read_predictions(registry.folder(name), data_dir=data_dir)


def role_predictions(registry: Registry, pool: Pool, probe_type: str, role: str, *, source: str,
                     data_dir: str | None = None) -> pd.DataFrame:
    """Each pool model's probe predictions (read by ``source``, a source model's display id) on the rows of one role
    (``test``, ``calibration``), saved at training time, ``[id x model]``."""
    columns = {}
    for model in pool.models:
        name = registry.entry(model=source, dataset=pool.dataset, label=model.label, probe_type=probe_type).name
        saved = saved_predictions(registry, name, data_dir)
        columns[model.name] = saved.loc[saved["role"] == role, "prediction"]
    return pd.DataFrame(columns)[pool.names]


def predicted_costs(registry: Registry, pool: Pool, probe_type: str, cost: pd.DataFrame, ids: list[str], *, source: str,
                    data_dir: str | None = None) -> np.ndarray | None:
    """Per-question expected costs ``[ids x model]`` from an output-length probe, or None when the registry has none.

    log(chars of model m on q) is predicted as the probe's reading for q plus model m's mean offset from it on
    the probe's *training* rows; cost = cost per token x exp(that) / chars_per_token.
    """
    found = registry.list(model=source, dataset=pool.dataset, label=OUTPUT_LENGTH_LABEL, probe_type=probe_type)
    if not found:
        return None
    saved = saved_predictions(registry, found[0].name, data_dir)
    reading, train_ids = saved["prediction"], saved.index[saved["role"] != "test"]
    log_chars = np.log(cost * pool.chars_per_token / pool.token_costs)  # [id x model], the recorded lengths
    train_ids = [i for i in train_ids if i in log_chars.index]
    offset = (log_chars.loc[train_ids].to_numpy() - reading.loc[train_ids].to_numpy()[:, None]).mean(axis=0)
    return pool.token_costs * np.exp(reading.loc[ids].to_numpy()[:, None] + offset) / pool.chars_per_token


def expected_costs(pool: Pool, data_dir: str | None = None, *, tables: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> dict[str, float]:
    """Each pool model's mean cost per question on the pool dataset's *training* questions: what a router may know in advance."""
    correct, cost = tables or outcome_tables(pool, resolve_data_dir(data_dir))
    split = load_dataset(pool.dataset, data_dir=data_dir).frame.set_index("id")["split"]
    complete = correct.notna().all(axis=1)
    train_ids = [i for i in split.index[split == "train"] if i in complete.index and complete[i]]
    if not train_ids:
        raise ValueError(f"Pool '{pool.name}' has no training question of {pool.dataset} answered by all its models.")
    return {name: float(value) for name, value in cost.loc[train_ids].mean().items()}


@dataclass(frozen=True)
class OperatingPoint:
    """A router at the setting chosen on the pool's calibration questions, scored on the test questions, with bootstrap 95% CIs
    (each a ``(value, low, high)``; ratios are to the best single model on the test questions, re-chosen per resample)."""

    setting: float
    accuracy: tuple[float, float, float]
    accuracy_ratio: tuple[float, float, float]
    cost_ratio: tuple[float, float, float]

    @property
    def savings(self) -> tuple[float, float, float]:
        """1 - the cost ratio: the share of the best single model's cost saved."""
        return 1 - self.cost_ratio[0], 1 - self.cost_ratio[2], 1 - self.cost_ratio[1]


@dataclass
class RouterResult:
    """One router family's curve on the test questions, its headline numbers with CIs, and its calibrated operating point."""

    name: str
    points: list[CurvePoint]
    aiq: tuple[float, float, float]
    cost_ratio: dict[float, tuple[float, float, float]]
    """Cost to reach each accuracy level, read off the test curve: an upper reference (chosen on test)."""
    operating_point: OperatingPoint | None = None


@dataclass(frozen=True)
class RouterDecisions:
    """What one router decides on one stream of questions, for every setting: chosen model ``[S, n]`` and models called ``[S, n, M]``
    (cascades call several; a utility router one). Settings are ordered cheapest first (lambda falling, threshold rising)."""

    settings: np.ndarray
    choices: np.ndarray
    called: np.ndarray | None = None

    def paid(self, cost: np.ndarray) -> np.ndarray:
        """Cost paid per setting and question ``[S, n]``."""
        if self.called is not None:
            return (cost[None] * self.called).sum(-1)
        return cost[np.arange(cost.shape[0]), self.choices]

    def accuracy(self, correct: np.ndarray) -> np.ndarray:
        return correct[np.arange(correct.shape[0]), self.choices].mean(-1)


def utility_decisions(p: np.ndarray, expected_cost: np.ndarray) -> RouterDecisions:
    """A utility router's choices at every lambda of :data:`LAMBDAS`, largest (cheapest) first."""
    settings = LAMBDAS[::-1]
    return RouterDecisions(settings, np.stack([route_utility(p, expected_cost, lam) for lam in settings]))


def cascade_decisions(p: np.ndarray, expected_cost: np.ndarray) -> RouterDecisions:
    """A cascade's final models and calls at every threshold of :data:`THRESHOLDS`, lowest (cheapest) first."""
    decided = [route_cascade(p, expected_cost, t) for t in THRESHOLDS]
    return RouterDecisions(THRESHOLDS, np.stack([c for c, _ in decided]), np.stack([called for _, called in decided]))


def calibrated_setting(decisions: RouterDecisions, correct: np.ndarray, level: float = OPERATING_LEVEL) -> float:
    """THE rule for every router's operating point: the cheapest setting whose accuracy on the pool's *calibration* questions
    reaches ``level`` of the best single model's there (the most accurate setting when none does). Never sees a test question."""
    accuracy = decisions.accuracy(correct)
    reaching = np.flatnonzero(accuracy >= level * correct.mean(axis=0).max() - 1e-12)
    return float(decisions.settings[reaching[0]] if reaching.size else decisions.settings[int(np.argmax(accuracy))])


def router_probe_types(registry: Registry, pool: Pool, *, source: str) -> list[str]:
    """Probe types with a probe read by ``source`` (a source model's display id) for every pool model: the available
    activation types (preferred first), then the text baselines."""
    def complete(probe_type: str) -> bool:
        return all(registry.list(model=source, dataset=pool.dataset, label=m.label, probe_type=probe_type) for m in pool.models)

    found = [t for t in (*ACTIVATION_ROUTERS, *TEXT_ROUTERS) if complete(t)]
    if not any(t in ACTIVATION_ROUTERS for t in found) or "tfidf" not in found:
        raise ValueError(f"{registry.spec} lacks an activation (shared or linear) or a tfidf success probe of {source} on {pool.dataset} "
                         f"for some model of pool '{pool.name}'; choose another source model (--model) or pool.")
    return found


def routing_source(registry: Registry, pool: Pool, model: str | None) -> str:
    """The display id of the source model whose probes route ``pool``: ``model`` (an alias such as ``gemma3-270m``, or a
    display id) when given; else the only source model with probes on the pool's dataset, or the default model when there are several."""
    if model is not None:
        return display_id_for(model)
    sources = sorted({e.model for e in registry.list(dataset=pool.dataset) if e.model})
    return sources[0] if len(sources) == 1 else display_id_for(None)


def knn_predictions(pool: Pool, roles: pd.Series, correct: pd.DataFrame, data_dir: str | None = None) -> tuple[dict[str, pd.DataFrame], int]:
    """The kNN router's predicted success ``[id x model]`` on the calibration and test questions, fitted on the ``fit`` questions
    (``roles``: each question id's role in the pool's probes) with every pool model's outcome; and the k chosen by CV."""
    questions = load_dataset(pool.dataset, data_dir=data_dir).frame.set_index("id")["question"]
    known = [i for i in roles.index if i in correct.index and i in questions.index]
    by_role = {role: [i for i in known if roles[i] == role] for role in ("fit", "calibration", "test")}
    fit_ids = [i for i in by_role["fit"] if correct.loc[i].notna().all()]
    router = fit_knn(questions.loc[fit_ids].tolist(), correct.loc[fit_ids].to_numpy(float))
    return {role: pd.DataFrame(router.predict(questions.loc[by_role[role]].tolist()), index=by_role[role], columns=pool.names)
            for role in ("calibration", "test")}, router.k


def evaluate_routing(pool: Pool, registry: Registry, *, model: str | None = None, data_dir: str | None = None, n_boot: int = 200) -> dict:
    """Everything ``route`` prints: single models, oracle, random, and a router per probe type (plus the kNN router and each
    one's cascade) with CIs, on the whole test stream and (for pools over several benchmarks) on each benchmark's part of it.

    Each router's operating point is chosen on the pool's calibration questions by :func:`calibrated_setting` (``held_out_lambdas``)
    and scored on the test questions: the headline. ``model``: the source model whose probes route (see :func:`routing_source`).
    ``result["probe"]`` names the headline activation router: the first available of :data:`ACTIVATION_ROUTERS`.
    """
    source = routing_source(registry, pool, model)
    root = resolve_data_dir(data_dir)
    correct_all, cost_all = outcome_tables(pool, root)
    complete = correct_all.notna().all(axis=1)
    types = router_probe_types(registry, pool, source=source)
    streams = ("calibration", "test")
    predictions = {role: {t: role_predictions(registry, pool, t, role, source=source, data_dir=data_dir) for t in types} for role in streams}
    roles = saved_predictions(registry, registry.entry(model=source, dataset=pool.dataset, label=pool.models[0].label,
                                                      probe_type=types[0]).name, data_dir)["role"]
    knn, k = knn_predictions(pool, roles, correct_all, data_dir)
    for role in streams:
        predictions[role][KNN_ROUTER] = knn[role]
    ids = {role: [i for i in predictions[role][types[0]].index if all(i in p.index for p in predictions[role].values()) and i in complete.index
                  and complete[i]] for role in streams}
    dropped = int(len(predictions["test"][types[0]]) - len(ids["test"]))
    mean_costs = expected_costs(pool, data_dir, tables=(correct_all, cost_all))  # loads the pool's dataset once, not once per model
    expected_cost = np.array([mean_costs[m] for m in pool.names])
    decisions, cost_sources = {role: {} for role in streams}, {}
    for name in predictions["test"]:
        length_kind = LENGTH_PROBE_FOR[name]
        for role in streams:
            p = predictions[role][name].loc[ids[role]].to_numpy()
            per_question = predicted_costs(registry, pool, length_kind, cost_all, ids[role], source=source, data_dir=data_dir)
            cost_sources[name] = f"{length_kind} output-length probe" if per_question is not None else "mean training cost"
            decisions[role][name] = utility_decisions(p, expected_cost if per_question is None else per_question)
            decisions[role][f"{name}-cascade"] = cascade_decisions(p, expected_cost)
    calibration_correct = correct_all.loc[ids["calibration"]].to_numpy(float)
    held_out = {name: calibrated_setting(d, calibration_correct) for name, d in decisions["calibration"].items()}
    correct, cost = correct_all.loc[ids["test"]].to_numpy(float), cost_all.loc[ids["test"]].to_numpy(float)
    test_ids = ids["test"]
    p_test = {name: frame.loc[test_ids].to_numpy() for name, frame in predictions["test"].items()}
    result = _stream_result(pool, p_test, decisions["test"], held_out, correct, cost, expected_cost, n_boot)
    benchmarks = pd.Index([i.split(":", 1)[0] for i in test_ids]) if pool.dataset == "mixed" else None
    per_benchmark = {}
    if benchmarks is not None and len(pool.benchmarks) > 1:
        for benchmark in pool.benchmarks:
            rows = np.flatnonzero(benchmarks == benchmark)
            part = {name: RouterDecisions(d.settings, d.choices[:, rows], None if d.called is None else d.called[:, rows])
                    for name, d in decisions["test"].items()}
            per_benchmark[benchmark] = _stream_result(pool, {k: v[rows] for k, v in p_test.items()}, part, held_out, correct[rows], cost[rows],
                                                      expected_cost, n_boot)
    return {**result, "pool": pool.name, "dataset": pool.dataset, "source_model": source, "cost_unit": pool.cost_unit, "dropped_questions": dropped,
            "probe": types[0], "probe_types": types, "cost_sources": cost_sources, "per_benchmark": per_benchmark, "knn_k": k,
            "n_calibration": len(ids["calibration"]), "held_out_lambdas": held_out, "operating_level": OPERATING_LEVEL}


def _stream_result(pool: Pool, predictions: dict[str, np.ndarray], decisions: dict[str, RouterDecisions], held_out: dict[str, float],
                   correct: np.ndarray, cost: np.ndarray, expected_cost: np.ndarray, n_boot: int) -> dict:
    """Single models, oracle, random and every router's curve, operating point and headline numbers on one stream of test questions."""
    singles = single_models(correct, cost)
    best = int(np.argmax([s.accuracy for s in singles]))
    cheapest = int(np.argmin(expected_cost))
    cost_range = (min(s.cost for s in singles), max(s.cost for s in singles))
    boot = np.random.default_rng(BOOTSTRAP_SEED).integers(0, len(correct), size=(n_boot, len(correct)))
    weak = pool.names.index(WEAK_MODEL) if WEAK_MODEL in pool.names else cheapest
    routers, two_model = {}, {}
    for name, p in predictions.items():
        for key, title in ((name, f"{name} utility router"), (f"{name}-cascade", f"{name} cascade")):
            routers[key] = _router_result(title, decisions[key], held_out[key], correct, cost, boot, cost_range)
        gap = correct[:, best].mean() != correct[:, weak].mean()  # else PGR is undefined (e.g. the weak model is the best one here)
        two_model[name] = {"apgr": apgr(p[:, weak], correct[:, weak], correct[:, best]) if gap else float("nan"),
                           "cpt50": cpt(p[:, weak], correct[:, weak], correct[:, best], 0.5) if gap else float("nan"),
                           "cpt80": cpt(p[:, weak], correct[:, weak], correct[:, best], 0.8) if gap else float("nan")}
    oracle = oracle_choice(correct, cost)
    rows = np.arange(len(correct))
    return {
        "n_test": len(correct), "models": pool.names,
        "best_single": {"model": pool.names[best], "accuracy": singles[best].accuracy, "cost": singles[best].cost},
        "singles": singles, "cost_range": cost_range, "routers": routers,
        "oracle": CurvePoint(0, float(correct[rows, oracle].mean()), float(cost[rows, oracle].mean())),
        "random": random_curve(correct, cost, cheapest, best),
        "two_model": {"weak": pool.names[weak], "strong": pool.names[best], **two_model},
    }


def _router_result(name: str, decisions: RouterDecisions, setting: float, correct: np.ndarray, cost: np.ndarray, boot: np.ndarray,
                   cost_range: tuple[float, float]) -> RouterResult:
    """Curve, AIQ and cost ratios at each accuracy level (test-optimal: upper references), and the operating point at the calibrated
    ``setting``, with bootstrap CIs (best single re-chosen per resample)."""
    hit = correct[np.arange(correct.shape[0]), decisions.choices]  # [S, n]
    paid = decisions.paid(cost)
    chosen = int(np.flatnonzero(decisions.settings == setting)[0])

    def summarize(sample: np.ndarray) -> tuple[float, dict[float, float], tuple[float, float, float]]:
        acc, price = hit[:, sample].mean(-1), paid[:, sample].mean(-1)
        single_acc, single_cost = correct[sample].mean(0), cost[sample].mean(0)
        best = int(np.argmax(single_acc))
        points = [CurvePoint(float(s), a, c) for s, a, c in zip(decisions.settings, acc, price)]
        ratios = {level: cost_to_reach(points, level * single_acc[best]) / single_cost[best] for level in LEVELS}
        operating = (acc[chosen], acc[chosen] / single_acc[best], price[chosen] / single_cost[best])
        return aiq(points, (single_cost.min(), single_cost.max())), ratios, operating

    def with_ci(point: float, values: np.ndarray) -> tuple[float, float, float]:
        return (float(point), *map(float, np.percentile(values, [2.5, 97.5], method="nearest")))  # inf propagates as inf

    point_aiq, point_ratios, point_operating = summarize(np.arange(correct.shape[0]))
    samples = [summarize(sample) for sample in boot]
    operating = np.array([s[2] for s in samples]).reshape(-1, 3)
    result = RouterResult(name, [CurvePoint(float(s), float(a), float(c)) for s, a, c in zip(decisions.settings, hit.mean(-1), paid.mean(-1))],
                          with_ci(point_aiq, np.array([s[0] for s in samples])), {},
                          OperatingPoint(setting, *(with_ci(point_operating[i], operating[:, i]) for i in range(3))))
    for level in LEVELS:
        result.cost_ratio[level] = with_ci(point_ratios[level], np.array([s[1][level] for s in samples]))
    return result


def write_routing_outputs(result: dict, out: str | Path) -> list[Path]:
    """``routing.json`` (all numbers) and the accuracy-cost chart (Vega-Lite JSON + HTML) under ``out``."""
    from probes_hub.atomic import atomic_write_json
    from probes_hub.charts import routing_chart, save_chart

    out = Path(out)
    singles = _singles_frame(result)
    curves = {r.name: r.points for r in result["routers"].values()}
    curves["random (cheapest <-> best)"] = result["random"]
    marked = [{"name": "oracle", "accuracy": result["oracle"].accuracy, "cost": result["oracle"].cost}]
    marked += [{"name": f"{r.name} at its calibrated setting {r.operating_point.setting:.3g}", "accuracy": r.operating_point.accuracy[0],
                "cost": r.operating_point.cost_ratio[0] * result["best_single"]["cost"]} for r in result["routers"].values() if "cascade" not in r.name]
    chart = routing_chart(curves, singles, pd.DataFrame(marked), title=f"Routing on {result['dataset']} test questions ({result['pool']}, n={result['n_test']}): "
                          "curves swept on test (upper reference), diamonds at settings chosen on calibration questions")
    path = out / "routing.json"
    atomic_write_json(path, {**_serial(result), "per_benchmark": {b: _serial(part) for b, part in result["per_benchmark"].items()}})
    return [path, *save_chart(chart, out / "routing_chart")]


def _singles_frame(result: dict) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "accuracy": s.accuracy, "cost": s.cost} for m, s in zip(result["models"], result["singles"])])


def _serial(result: dict) -> dict:
    """One stream's result as plain JSON values."""
    return {**result, "singles": _singles_frame(result).to_dict(orient="records"), "oracle": vars(result["oracle"]),
            "random": [vars(p) for p in result["random"]],
            "routers": {k: {"name": r.name, "aiq": r.aiq, "cost_ratio": {str(level): v for level, v in r.cost_ratio.items()},
                            "operating_point": {**asdict(r.operating_point), "savings": r.operating_point.savings},
                            "points": [vars(p) for p in r.points]} for k, r in result["routers"].items()},
            "per_benchmark": None}
