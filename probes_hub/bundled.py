"""The recipe of the bundled default registry, and the one function that rebuilds it.

Everything is seeded, so a rebuild on the same data reproduces the committed metrics. The registry is
built in a temp folder beside the target and swapped in only when complete.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from probes_hub.atomic import staged_change
from probes_hub.data.datasets import MMLU_PRO_SUBSET, OUTPUT_LENGTH_LABEL
from probes_hub.data.outcomes import IRT_LABEL, SUCCESS_RATE_LABEL
from probes_hub.extract.paired import is_pair, model_source
from probes_hub.hub.manifest import Manifest
from probes_hub.hub.registry import write_index
from probes_hub.lock import folder_lock, lock_path
from probes_hub.train import TrainOptions, train

SUCCESS_LAYERS = tuple(range(18))
"""Layers 0-17 for success labels (29 models x many questions: the search over more layers would double the build)."""
EVERY_LAYER = None
"""Difficulty labels search every layer of the source model (30 for SmolLM2, 18 for Gemma); serving still stops the forward
pass at the deepest layer the chosen probes read (:func:`probes_hub.apply.extraction_layers`)."""
BUNDLED_PROBES = ("linear", "length", "tfidf")
DIFFICULTY_PROBES = ("linear", "multilayer", "attention", "stacked", "length", "tfidf")
"""MATH train's level gets every difficulty probe type; the app reads the one with the best training-data CV score."""
SUCCESS_PROBES = ("shared", *BUNDLED_PROBES)
"""Success labels also get ``shared`` probes (one direction for all 29 models), which the router reads."""


@dataclass(frozen=True)
class RecipeStep:
    """One dataset of the bundled registry: which labels and probe types, and how many questions (None: all)."""

    dataset: str
    labels: tuple[str, ...]
    limit: int | None = None
    note: str = ""
    probes: tuple[str, ...] = BUNDLED_PROBES
    layers: tuple[int, ...] | None = SUCCESS_LAYERS
    """The layers searched: :data:`SUCCESS_LAYERS`, or :data:`EVERY_LAYER` (None) for difficulty labels."""

    def layers_of(self, n_layers: int) -> tuple[int, ...]:
        """The layers this step searches on a model with ``n_layers`` layers."""
        return tuple(layer for layer in (range(n_layers) if self.layers is None else self.layers) if layer < n_layers)


def _pool_labels(name: str) -> tuple[str, ...]:
    from probes_hub.routing.evaluate import load_pool

    return tuple(m.label for m in load_pool(name).models)


RECIPE = (
    RecipeStep("math", ("level",), probes=DIFFICULTY_PROBES, layers=EVERY_LAYER,
               note="difficulty: MATH level 1-5 learned from the 7,415 MATH training problems, tested on all of MATH-500; linear, "
                    "multi-layer, attention-pooling and stacked probes (the app reads the best by CV on the training problems)"),
    RecipeStep("math500", ("level",), layers=EVERY_LAYER,
               note="difficulty: MATH level 1-5 from MATH-500's own 300 training questions (the comparison row)"),
    RecipeStep("arc-challenge", ("grade",), layers=EVERY_LAYER, note="difficulty: school grade 3-9"),
    RecipeStep("mmlu-pro", ("correct:*", "log_output_chars"), limit=MMLU_PRO_SUBSET, probes=SUCCESS_PROBES,
               note="success of each of the 29 models in outcomes.csv, and the mean log length of their answers (a cost signal for routing); "
                    "a seeded subset of 2,000 of the 12,032 questions (seed 0, each keeps its split)"),
    RecipeStep("mixed", _pool_labels("math"), probes=("shared", "tfidf", "embedding"),
               note="success of the 27 models of the `math` routing pool, learned across GSM8K, MATH-500, MATH level 5, ARC-Challenge and "
                    "MMLU-Pro (the shared direction reads every benchmark's models; each model's offset its own rows)"),
    RecipeStep("mixed", _pool_labels("mmlu-pro-25"), probes=("shared",),
               note="success of the 25 models of the `mmlu-pro-25` pool from the direction learned on every benchmark: the pool's "
                    "fallback for questions unlike MMLU-Pro's"),
    RecipeStep("mixed", (SUCCESS_RATE_LABEL, OUTPUT_LENGTH_LABEL), probes=("linear", "tfidf", "embedding"),
               note="the share of a benchmark's models that answer correctly, and their answers' mean log length (the math pool's cost signal)"),
    RecipeStep("mixed", (IRT_LABEL,), probes=("linear", "stacked", "length", "embedding"), layers=EVERY_LAYER,
               note="difficulty on one scale across benchmarks: the joint 2PL IRT item difficulty (one ability per model over GSM8K, "
                    "MATH-500, MATH level 5, ARC-Challenge and MMLU-Pro; abilities from training questions only); TF-IDF is evaluated "
                    "as a baseline but not kept (its vocabulary would be the largest file of the step)"),
    RecipeStep("outcomes-math500", (IRT_LABEL,), layers=EVERY_LAYER,
               note="difficulty: 2PL IRT item difficulty from 70 open models' outcomes on MATH-500"),
)


EXTRA_MODEL_RECIPE = (
    RecipeStep("math", ("level",), probes=("linear", "length"), layers=EVERY_LAYER, note="MATH level from the 7,415 MATH training problems, tested on MATH-500"),
    RecipeStep("math500", ("level",), probes=("linear", "length"), layers=EVERY_LAYER, note="MATH level from MATH-500's own 300 training questions"),
    RecipeStep("arc-challenge", ("grade",), probes=("linear", "length"), layers=EVERY_LAYER, note="school grade 3-9"),
    RecipeStep("outcomes-math500", (IRT_LABEL,), probes=("linear", "length"), layers=EVERY_LAYER, note="2PL IRT item difficulty on MATH-500"),
    RecipeStep("mmlu-pro", ("correct:*",), limit=MMLU_PRO_SUBSET, probes=("shared", "length"),
               note="success of each of the 29 models, on the same 2,000-question subset as the default model"),
)
"""What another source model gets in the bundled registry (``build-registry --model NAME --add``): the leaderboard's tasks on the
default model's rows (MMLU-Pro: the same 2,000-question subset); the text-only baselines (TF-IDF, embedding) are the default model's, since they do not depend on the model."""


PAIR_RECIPE = (
    RecipeStep("math", ("level",), probes=("linear",), layers=EVERY_LAYER,
               note="MATH level from the 7,415 MATH training problems, tested on MATH-500, on both models' activations side by side"),
    RecipeStep("outcomes-math500", (IRT_LABEL,), probes=("linear",), layers=EVERY_LAYER, note="2PL IRT item difficulty on MATH-500"),
)
"""What a pair of source models gets (``build-registry --model smollm2+gemma3-270m --add``): the difficulty rows of the
leaderboard, so it answers whether two small models read difficulty better than either (their caches serve the features)."""


ADDED_MARKER = "\n\nProbes on **"
"""Where the registry's description starts the paragraph of a model added with ``--add`` (the display id follows, then ``**``)."""


def build_bundled_registry(out: str | Path, *, model: str | None = None, data_dir: str | None = None, use_cache: bool = True,
                           progress: bool = True, add: bool = False) -> tuple[Manifest, dict[str, float]]:
    """Train every step of :data:`RECIPE` on the embedded model (or ``model``) and write a complete registry to ``out``.

    ``add=True`` trains :data:`EXTRA_MODEL_RECIPE` on ``model`` instead and adds those probes to the registry at ``out`` (the
    other models' probes stay); each probe folder is swapped in atomically, then the manifest is rewritten.
    """
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    timings: dict[str, float] = {}
    source = model_source(model)
    timings["load_model"] = time.time() - started
    recipe = (PAIR_RECIPE if is_pair(model) else EXTRA_MODEL_RECIPE) if add else RECIPE
    if is_pair(model) and not add:
        raise ValueError(f"{model!r} names two models: add their probes to a registry with --add (the registry itself is one model's).")

    def train_recipe(folder: Path) -> None:
        for number, step in enumerate(recipe, start=1):
            t0 = time.time()
            train(TrainOptions(dataset=step.dataset, labels=step.labels, probes=step.probes, out=str(folder), data_dir=data_dir,
                               limit=step.limit, layers=step.layers_of(source.n_layers), use_cache=use_cache,
                               progress=progress), lm=source)
            timings[f"{number}. {step.dataset}"] = time.time() - t0
        timings["total"] = time.time() - started

    if add:  # trained aside, then each probe folder is added to the registry atomically and the manifest rewritten
        from probes_hub.hub.registry import Registry

        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.adding-") as scratch:
            train_recipe(Path(scratch))
            registry = Registry(out)
            with registry.writing(f"build-registry --add {source.display_id}"):
                registry.push(sorted(p for p in Path(scratch).iterdir() if p.is_dir()), commit_message=f"Add {source.display_id}'s probes")
                manifest = write_index(out, about=_about_added(registry.manifest().about, source.display_id, source.fingerprint, timings))
    else:  # the whole registry is built aside (other source models' probes carried over) and swapped in when complete
        with staged_change(out.parent) as change:
            building = change.folder(out)
            train_recipe(building)
            with folder_lock(lock_path(out), "build-registry"):  # held from carrying the other models' probes over to the swap
                others = keep_other_models(out, building, source.display_id)
                manifest = write_index(building, about=_about(source.display_id, source.fingerprint, timings) + others, lock=False)
                change.commit()
    return manifest, timings


def keep_other_models(old: Path, building: Path, display_id: str) -> str:
    """Copy the probes of every source model other than ``display_id`` from the registry at ``old`` (if any) into ``building``,
    so that rebuilding one model's probes keeps the others' (added with ``--add``); returns their paragraphs of the old description."""
    if not (old / "manifest.json").exists():
        return ""
    from probes_hub.hub.registry import Registry

    manifest = Registry(old).manifest()
    for entry in manifest.entries.values():
        if entry.model and entry.model != display_id:
            shutil.copytree(old / entry.folder, building / entry.folder)
    kept = {e.model for e in manifest.entries.values() if e.model and e.model != display_id}
    return "".join(f"{ADDED_MARKER}{part}" for part in manifest.about.split(ADDED_MARKER)[1:] if part.split("**", 1)[0] in kept)


def _about_added(about: str, display_id: str, fingerprint: str, timings: dict[str, float]) -> str:
    """The registry's description with a paragraph on another source model's probes (replacing an earlier one for the same model)."""
    marker = f"{ADDED_MARKER}{display_id}**"
    steps = "\n".join(f"- `{s.dataset}` {', '.join(s.labels)}: {s.note}." for s in (PAIR_RECIPE if is_pair(display_id) else EXTRA_MODEL_RECIPE))
    took = ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items())
    return (f"{about.split(marker)[0]}{marker} (`{fingerprint}`), added with `python -m probes_hub build-registry --model ALIAS --add`:\n\n"
            f"{steps}\n\nBuild: {took} (CPU).")


def _about(display_id: str, fingerprint: str, timings: dict[str, float]) -> str:
    steps = "\n".join(f"- `{s.dataset}` {', '.join(s.labels)}: {s.note}." for s in RECIPE)
    took = ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items())
    return f"""The default registry bundled with probes_hub: probes on **{display_id}** (`{fingerprint}`).

Rebuild it with `python -m probes_hub build-registry --out registry` (or `make registry`); all choices are seeded
(splits, subsets, CV folds, calibration hold-out), so a rebuild reproduces these metrics.

{steps}

Every label gets a `linear` probe (difficulty labels: every layer; success labels: layers {SUCCESS_LAYERS[0]}-{SUCCESS_LAYERS[-1]};
x the end-of-instruction tokens, selected by 5-fold CV on the training split), and the `length` and `tfidf` baselines; success labels also get a `shared` probe (one direction fitted
to the questions' logit of success over all models, then one slope and an offset per model), which routing reads. Success probes are Platt-calibrated on 20% of the
training questions held out from fitting and selection; every metric is on the untouched test split with a
bootstrap 95% CI. Last build: {took} (CPU)."""
