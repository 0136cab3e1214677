"""``python -m probes_hub``: argparse front end; each subcommand is a thin call into the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from .constants import EMBEDDED_MODEL_ALIAS, ENV_DATA_DIR, ENV_MODEL
from .datasets import BUILTIN, SPLIT_RULES, load_dataset

MODEL_HELP = (f"model: '{EMBEDDED_MODEL_ALIAS}' (embedded SmolLM2-135M-Instruct GGUF, the default), a .gguf file, a local model "
              f"folder, or a Hugging Face Hub id (needs network). Default: ${ENV_MODEL} or '{EMBEDDED_MODEL_ALIAS}'.")
DATA_HELP = f"data folder for built-in datasets (default: ${ENV_DATA_DIR} or ../shared/data beside the project)"


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="math500", help=f"built-in dataset ({', '.join(BUILTIN)}) or a .jsonl/.csv/.parquet file")
    parser.add_argument("--data-dir", default=None, help=DATA_HELP)
    parser.add_argument("--limit", type=int, default=None, help="use a seeded random subset of this many questions (splits kept)")
    parser.add_argument("--question-column", default="question", help="question column of a local file")
    parser.add_argument("--max-length", type=int, default=1024, help="max prompt tokens; longer questions are cut from the left, EOI tokens kept")
    parser.add_argument("--raw", action="store_true", help="no chat template: read the last question token instead of EOI tokens")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the activation cache")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m probes_hub", description="Train, save and apply difficulty / success probes on LLM activations.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train probes for one (model, dataset, label) and save probe folders + reports",
                           description="Selects layer, position and regularization by k-fold CV on the training split only, calibrates "
                                       "binary probes on held-out training rows, and reports metrics with bootstrap 95% CIs on the untouched "
                                       f"test split. Splits: " + "; ".join(f"{k}: {v}" for k, v in SPLIT_RULES.items()))
    train.add_argument("--model", default=None, help=MODEL_HELP)
    _add_data_args(train)
    train.add_argument("--label", nargs="+", default=["level"],
                       help="label(s) or shell patterns (math500: level; arc-*: grade; gsm8k: steps; mmlu-pro: correct:<model>, or 'correct:*' "
                            "for all 29 models, trained together on one extraction)")
    train.add_argument("--label-column", action="append", default=[], help="label column(s) of a local file (repeatable)")
    train.add_argument("--probe", nargs="+", default=["linear"], choices=["linear", "length", "tfidf"], help="probe type(s) to save (baselines are always evaluated)")
    train.add_argument("--layers", default=None, help="layers to sweep, e.g. '0-29' or '8,12,16' (default: all)")
    train.add_argument("--cv-folds", type=int, default=5, help="folds for selection on the training split (default 5)")
    train.add_argument("--seed", type=int, default=0, help="seed for subsets, folds and the calibration hold-out")
    train.add_argument("--out", default="runs", help="folder that receives one probe folder per probe type (default runs/)")
    train.add_argument("--push", default=None, metavar="REGISTRY", help="also add the saved probes to this registry (local folder or Hub repo id)")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser("predict", help="apply saved probe folder(s) to questions",
                             description="Input: --question TEXT (repeatable), --file (one question per line, or jsonl/csv with a question column), "
                                         "or --dataset NAME --split test. Output: a table, or JSON with --json.")
    predict.add_argument("--probe", nargs="+", required=True, help="probe folder(s)")
    predict.add_argument("--model", default=None, help=MODEL_HELP)
    predict.add_argument("--question", action="append", default=[], help="a question (repeatable)")
    predict.add_argument("--file", default=None, help="text file with one question per line, or .jsonl/.csv/.parquet with a question column")
    predict.add_argument("--split", default=None, choices=["train", "test"], help="with --dataset: only this split")
    predict.add_argument("--dataset", default=None, help="built-in dataset name instead of --question/--file")
    predict.add_argument("--data-dir", default=None, help=DATA_HELP)
    predict.add_argument("--limit", type=int, default=None, help="seeded subset of the dataset (must match training's --limit to reuse its rows)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    predict.add_argument("--no-cache", action="store_true", help="do not read or write the activation cache")
    predict.set_defaults(func=cmd_predict)

    extract = sub.add_parser("extract", help="extract and cache activations for a dataset (all layers x EOI positions by default)")
    extract.add_argument("--model", default=None, help=MODEL_HELP)
    _add_data_args(extract)
    extract.add_argument("--layers", default=None, help="layers, e.g. '0-29' or '8,12,16' (default: all)")
    extract.set_defaults(func=cmd_extract)

    registry_help = "registry: a local folder or a Hugging Face Hub repo id (default: the bundled registry/)"
    listing = sub.add_parser("list", help="list a registry's probes with their test metrics",
                             description="Reads the registry's manifest.json. Filters match exactly; --model also matches the name after '/'.")
    listing.add_argument("--registry", default=None, help=registry_help)
    listing.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    _add_filter_args(listing)
    listing.add_argument("--json", action="store_true", help="print the manifest entries as JSON")
    listing.set_defaults(func=cmd_list)

    pull = sub.add_parser("pull", help="copy probe folders from a registry into a local folder",
                          description="Downloads only the chosen folders (Hub: snapshot_download with allow_patterns) and validates each.")
    pull.add_argument("names", nargs="*", help="probe names (default: every probe matching the filters)")
    pull.add_argument("--registry", default=None, help=registry_help)
    pull.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    pull.add_argument("--out", default="probes", help="destination folder (default probes/)")
    _add_filter_args(pull)
    pull.set_defaults(func=cmd_pull)

    push = sub.add_parser("push", help="add probe folders to a registry (Hub: one commit with the updated manifest and card)",
                          description="Validates every folder first; uses HF_TOKEN / HF_ENDPOINT for Hub repos (created if missing).")
    push.add_argument("folders", nargs="+", help="probe folders to add")
    push.add_argument("--registry", required=True, help="local folder or Hub repo id")
    push.add_argument("--message", default=None, help="commit message")
    push.set_defaults(func=cmd_push)

    index = sub.add_parser("index", help="regenerate a local registry's manifest.json and README.md from its folders")
    index.add_argument("--registry", default=None, help="local registry folder (default: the bundled registry/)")
    index.set_defaults(func=cmd_index)

    build = sub.add_parser("build-registry", help="rebuild the bundled default registry from the data folder (seeded, CPU ~20 min)",
                           description="Trains MATH-500 level, ARC-Challenge grade and the 29 MMLU-Pro success labels (linear + length + "
                                       "tfidf each) on the embedded model and writes a complete registry, swapped in only when done.")
    build.add_argument("--out", default="registry", help="registry folder to (re)create (default registry/)")
    build.add_argument("--model", default=None, help=MODEL_HELP)
    build.add_argument("--data-dir", default=None, help=DATA_HELP)
    build.add_argument("--no-cache", action="store_true", help="do not read or write the activation cache")
    build.set_defaults(func=cmd_build_registry)
    return parser


def _add_filter_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="only probes for this model (display id, or its part after '/')")
    parser.add_argument("--dataset", default=None, help="only probes trained on this dataset")
    parser.add_argument("--label", default=None, help="only probes of this label")
    parser.add_argument("--probe-type", default=None, help="only probes of this type (linear, length, tfidf)")


def _filters(args: argparse.Namespace) -> dict:
    return {k: v for k, v in (("model", args.model), ("dataset", args.dataset), ("label", args.label), ("probe_type", args.probe_type)) if v}


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """'0-3,8' -> (0, 1, 2, 3, 8)."""
    if not text:
        return None
    layers: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        layers += list(range(int(low), int(high) + 1)) if high else [int(low)]
    return tuple(sorted(set(layers)))


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainOptions, train

    options = TrainOptions(model=args.model, dataset=args.dataset, labels=tuple(args.label), probes=tuple(args.probe), out=args.out,
                           data_dir=args.data_dir, limit=args.limit, layers=parse_layers(args.layers), max_length=args.max_length,
                           chat=not args.raw, cv_folds=args.cv_folds, seed=args.seed, use_cache=not args.no_cache,
                           question_column=args.question_column, label_columns=tuple(args.label_column))
    started = time.time()
    results = train(options)
    for label, result in results.items():
        print(f"== {label}")
        for name, trained in {**result.probes, **result.baselines}.items():
            kind = "probe" if name in result.probes else "baseline"
            print(f"{kind:8s} {name:7s} {trained.metrics['test']}")
            for key in ("test_mae", "test_ece_uncalibrated", "test_ece"):
                if key in trained.metrics:
                    print(f"{'':17s}{key}: {trained.metrics[key]}")
        for name, trained in result.probes.items():
            selection = trained.probe.to_config()["selection"]
            if name == "linear":
                print(f"selected: layer {selection['layer']}, position {selection['position']}, alpha {selection['alpha']:g}"
                      + (f", C {selection['C']:g}" if "C" in selection else "") + f" (CV {selection['cv_metric']} {selection['cv_score']:.3f})")
            print(f"saved {name} probe to {trained.path}")
    if args.push:
        from .registry import Registry

        names = Registry(args.push).push([t.path for r in results.values() for t in r.probes.values()])
        print(f"pushed {len(names)} probe(s) to {args.push}")
    print(f"done in {time.time() - started:.0f} s")
    return 0


def _questions_from_args(args: argparse.Namespace) -> tuple[list[str], list[str], "object | None"]:
    """(ids, questions, dataset or None) from --question / --file / --dataset."""
    if args.dataset:
        dataset = load_dataset(args.dataset, data_dir_override=args.data_dir).subset(args.limit)
        return dataset.frame["id"].tolist(), dataset.frame["question"].tolist(), dataset
    questions = list(args.question)
    if args.file:
        path = Path(args.file)
        if path.suffix in {".jsonl", ".csv", ".parquet"}:
            questions += load_dataset(str(path)).frame["question"].tolist()
        else:
            questions += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not questions:
        raise SystemExit("predict: give --question TEXT, --file PATH or --dataset NAME.")
    return [str(i) for i in range(len(questions))], questions, None


def cmd_predict(args: argparse.Namespace) -> int:
    from .models import load_model
    from .predict import predict_questions

    ids, questions, dataset = _questions_from_args(args)
    lm = load_model(args.model)
    data_hash = dataset.content_hash if dataset is not None else None
    table = predict_questions(lm, args.probe, questions, data_hash=data_hash, use_cache=not args.no_cache)
    rows = range(len(ids))
    if args.split and dataset is not None:
        rows = np.flatnonzero((dataset.frame["split"] == args.split).to_numpy())
    if args.json:
        print(json.dumps([{"id": ids[r], **{name: float(v[r]) for name, v in table.items()}} for r in rows], indent=1))
        return 0
    names = list(table)
    print("\t".join(["id", *names]))
    for r in rows:
        print("\t".join([ids[r], *(f"{table[name][r]:.6f}" for name in names)]))
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from .models import load_model
    from .prompts import prompt_format
    from .train import build_features

    dataset = load_dataset(args.dataset, data_dir_override=args.data_dir, question_column=args.question_column).subset(args.limit)
    lm = load_model(args.model)
    layers = list(parse_layers(args.layers) or range(lm.n_layers))
    fmt = prompt_format(lm.tokenizer, chat=not args.raw)
    started = time.time()
    features = build_features(lm, fmt, dataset, layers, max_length=args.max_length, use_cache=not args.no_cache)
    print(f"activations {tuple(features.activations.shape)} for {dataset.name} ({len(dataset.frame)} questions) in {time.time() - started:.1f} s")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .registry import Registry

    registry = Registry(args.registry, revision=args.revision)
    entries = registry.list(**_filters(args))
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=1))
    else:
        print(f"{'name':64s} {'metric':8s} {'value':>6s} {'95% CI':>15s} {'n':>5s} {'length':>6s} {'tfidf':>6s}")
        for e in entries:
            m = e.metric
            ci = f"[{m['low']:.3f},{m['high']:.3f}]" if m else ""
            base = [f"{e.baselines[k]:.3f}" if k in e.baselines else "" for k in ("length", "tfidf")]
            print(f"{e.name:64s} {m.get('name', ''):8s} {m.get('value', float('nan')):6.3f} {ci:>15s} {m.get('n', 0):5d} {base[0]:>6s} {base[1]:>6s}")
        print(f"{len(entries)} of {len(registry.manifest().entries)} probes in {registry.spec}")
    if registry.is_local:
        for name, problem in registry.check().items():
            print(f"warning: {name}: {problem}", file=sys.stderr)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from .registry import Registry

    paths = Registry(args.registry, revision=args.revision).pull(args.out, args.names or None, **_filters(args))
    for path in paths:
        print(path)
    print(f"pulled {len(paths)} probe(s) into {args.out}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from .registry import Registry

    names = Registry(args.registry).push(args.folders, commit_message=args.message)
    print(f"pushed {', '.join(names)} to {args.registry}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from .registry import Registry, write_index

    registry = Registry(args.registry)
    manifest = write_index(registry.root)
    print(f"indexed {len(manifest.entries)} probes in {registry.root}")
    return 0


def cmd_build_registry(args: argparse.Namespace) -> int:
    from .bundled import build_bundled_registry

    manifest, timings = build_bundled_registry(args.out, model=args.model, data_dir=args.data_dir, use_cache=not args.no_cache)
    print(f"built {len(manifest.entries)} probes into {args.out}; " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, KeyError) as error:
        print(f"error: {error.args[0] if isinstance(error, KeyError) and error.args else error}", file=sys.stderr)
        return 2
