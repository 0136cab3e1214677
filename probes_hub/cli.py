"""``python -m probes_hub``: argparse front end; each subcommand is a thin call into the library."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path

import numpy as np

from probes_hub.analysis.commands import add_analyze_parser
from probes_hub.constants import EMBEDDED_MODEL_ALIAS, MAX_PROMPT_TOKENS, UNFAMILIAR_BELOW
from probes_hub.data.datasets import BUILTIN, SPLIT_RULES, load_dataset
from probes_hub.extract.precision import DTYPE_CHOICES, use_dtype
from probes_hub.paths import DEFAULT_POOL, bundled_pools
from probes_hub.probes import PROBE_TYPES, baseline_types
from probes_hub.schema.records import MIN_DTYPE_SPEARMAN
from probes_hub.schema.validation import check_question

MODEL_HELP = (f"model: '{EMBEDDED_MODEL_ALIAS}' (embedded SmolLM2-135M-Instruct GGUF, the default), a .gguf file, a local model "
              f"folder, or a Hugging Face Hub id (needs network). Default: $PROBES_HUB_MODEL or '{EMBEDDED_MODEL_ALIAS}'.")
PAIR_MODEL_HELP = MODEL_HELP + " Two models joined by '+' (e.g. 'smollm2+gemma3-270m') read together: their activations side by side."
DATA_HELP = "data folder for built-in datasets (default: $PROBES_HUB_DATA_DIR or ../shared/data beside the project)"


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="math500", help=f"built-in dataset ({', '.join(BUILTIN)}) or a .jsonl/.csv/.parquet file")
    parser.add_argument("--data-dir", default=None, help=DATA_HELP)
    parser.add_argument("--limit", type=positive_int, default=None, help="use a seeded random subset of this many questions (splits kept)")
    parser.add_argument("--question-column", default="question", help="question column of a local file")
    parser.add_argument("--max-length", type=positive_int, default=MAX_PROMPT_TOKENS, help="max prompt tokens; longer questions are cut from the left, EOI tokens kept")
    parser.add_argument("--raw", action="store_true", help="no chat template: prompt 'Question:\\n...\\nAnswer:' and read the suffix's tokens "
                        "(the default for base models such as gemma3-270m)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the activation cache")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="probes-hub", description="Train, save and apply difficulty / success probes on LLM activations.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train probes for one (model, dataset, label) and save probe folders + reports",
                           description="Selects layer, position and regularization by k-fold CV on the training split only, calibrates "
                                       "binary probes on held-out training rows, and reports metrics with bootstrap 95% CIs on the untouched "
                                       "test split. Splits: " + "; ".join(f"{k}: {v}" for k, v in SPLIT_RULES.items()))
    train.add_argument("--model", default=None, help=PAIR_MODEL_HELP)
    _add_data_args(train)
    train.add_argument("--label", nargs="+", default=["level"],
                       help="label(s) or shell patterns (math500: level; arc-*: grade; gsm8k: steps; mmlu-pro: correct:<model>, or 'correct:*' "
                            "for all 29 models, trained together on one extraction)")
    train.add_argument("--label-column", action="append", default=[], help="label column(s) of a local file (repeatable)")
    train.add_argument("--probe", nargs="+", default=["linear"], choices=sorted(PROBE_TYPES), metavar="TYPE",
                       help="probe type(s) to save (the baselines, " + ", ".join(baseline_types()) + ", are always evaluated): "
                            + "; ".join(f"{name}: {_first_line(cls.__doc__)}" for name, cls in sorted(PROBE_TYPES.items())))
    train.add_argument("--layers", type=parse_layers, default=None, help="layers to sweep, e.g. '0-29' or '8,12,16' (default: all)")
    train.add_argument("--token-layer", type=int, default=None,
                       help="layer whose every-token activations attention probes read (default: the linear sweep's CV choice on the training rows)")
    train.add_argument("--cv-folds", type=at_least_two, default=5, help="folds for selection on the training split (default 5)")
    train.add_argument("--seed", type=int, default=0, help="seed for subsets, folds and the calibration hold-out")
    train.add_argument("--out", default="runs", help="folder that receives one probe folder per probe type (default runs/)")
    train.add_argument("--push", default=None, metavar="REGISTRY", help="also add the saved probes to this registry (local folder or Hub repo id)")
    _add_engine_args(train)
    _add_dtype_arg(train)
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
    predict.add_argument("--limit", type=positive_int, default=None, help="seeded subset of the dataset (must match training's --limit to reuse its rows)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    predict.add_argument("--no-cache", action="store_true", help="do not read or write the activation cache")
    _add_dtype_arg(predict)
    predict.set_defaults(func=cmd_predict)

    extract = sub.add_parser("extract", help="extract and cache activations for a dataset (all layers x EOI positions by default)")
    extract.add_argument("--model", default=None, help=MODEL_HELP)
    _add_data_args(extract)
    extract.add_argument("--layers", type=parse_layers, default=None, help="layers, e.g. '0-29' or '8,12,16' (default: all)")
    _add_engine_args(extract)
    _add_dtype_arg(extract)
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

    moderate = sub.add_parser("registry", help="moderate a local or Hub registry: remove a probe, read the audit log, recover after a crash",
                              description="Every change holds the registry's lock (one writer at a time) and is logged in its audit log "
                                          "(PROBES_HUB_AUDIT_LOG, or .NAME.audit.jsonl beside a local registry).")
    moderate_verbs = moderate.add_subparsers(dest="registry_command", required=True)
    remove = moderate_verbs.add_parser("remove", help="take a probe out of the registry (logged; the leaderboard drops it on its next refresh)")
    remove.add_argument("name", help="the probe folder's name (see `probes-hub list`)")
    remove.add_argument("--reason", required=True, help="why it is removed (kept in the audit log)")
    remove.add_argument("--registry", default=None, help="local folder or Hub repo id (default: the bundled registry/)")
    remove.add_argument("--by", default=None, help="the moderator's user name for the log (default: $USER)")
    remove.set_defaults(func=cmd_registry_remove)
    audit = moderate_verbs.add_parser("audit", help="print the registry's audit log: uploads (accepted or refused) and removals, oldest first")
    audit.add_argument("--registry", default=None, help="local folder or Hub repo id (default: the bundled registry/)")
    audit.add_argument("--user", default=None, help="only this user's lines")
    audit.add_argument("--json", action="store_true", help="print the JSON lines themselves")
    audit.set_defaults(func=cmd_registry_audit)
    recover = moderate_verbs.add_parser("recover", help="clean up after an interrupted change of a local registry (what the app does at start)",
                                        description="Removes temp folders and files a killed change left, rolls back a half-swapped folder, "
                                                    "and rebuilds manifest.json from the probe folders when the two disagree.")
    recover.add_argument("--registry", default=None, help="local registry folder (default: the bundled registry/)")
    recover.set_defaults(func=cmd_registry_recover)

    build = sub.add_parser("build-registry", help="rebuild the bundled default registry from the data folder (seeded, CPU ~50 min), "
                                                  "or add another source model's probes to it (--add)",
                           description="Trains the bundled recipe (MATH level, ARC-Challenge grade, IRT difficulty, success of the routing "
                                       "pools' models, with baselines) on the embedded model and writes a complete registry, swapped in only "
                                       "when done. With --model NAME --add: trains the leaderboard's tasks on another model (e.g. gemma3-270m "
                                       "after `make models`, or any Hub id on a machine with network) and adds its probes to the registry; with --model "
                                       "smollm2+gemma3-270m --add: probes on both models' activations side by side (the leaderboard's "
                                       "difficulty rows), so it shows whether two small models read difficulty better than either.")
    build.add_argument("--out", default="registry", help="registry folder to (re)create (default registry/)")
    build.add_argument("--model", default=None, help=PAIR_MODEL_HELP)
    build.add_argument("--data-dir", default=None, help=DATA_HELP)
    build.add_argument("--no-cache", action="store_true", help="do not read or write the activation cache")
    build.add_argument("--add", action="store_true", help="add --model's probes (the leaderboard's tasks) to the registry at --out instead of rebuilding it")
    _add_engine_args(build)
    build.set_defaults(func=cmd_build_registry)

    label = sub.add_parser("label", help="make success labels for a model: sample-and-check (generate) or option log-likelihood (loglik)",
                           description="generate: k sampled completions per question, final answer read from '####' / \\boxed{} / last number "
                                       "and checked with math-verify; writes labels.csv (success_rate, majority_vote_is_correct, pass_at_k, "
                                       "mean_output_tokens) and completions.jsonl, and resumes. loglik: scores each option of multiple-choice "
                                       "questions (ARC, MMLU-Pro) and writes loglik_labels.csv with the summed and per-character choices.")
    label.add_argument("--method", choices=["generate", "loglik"], default="generate", help="labelling method (default generate)")
    label.add_argument("--model", default=None, help=MODEL_HELP)
    label.add_argument("--dataset", default="gsm8k", help="built-in dataset or a local file")
    label.add_argument("--data-dir", default=None, help=DATA_HELP)
    label.add_argument("--split", default=None, choices=["train", "test"], help="only this split")
    label.add_argument("--limit", type=positive_int, default=None, help="first N questions (after --split)")
    label.add_argument("--answer-column", default=None, help="gold answer column (default: final_answer for gsm8k, answer otherwise)")
    label.add_argument("--k", type=positive_int, default=4, help="samples per question (generate)")
    label.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (generate)")
    label.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling top-p (generate)")
    label.add_argument("--max-new-tokens", type=positive_int, default=384, help="generation budget per sample (generate)")
    label.add_argument("--batch-size", type=positive_int, default=8, help="sequences generated together (generate)")
    label.add_argument("--backend", choices=["transformers", "vllm"], default="transformers", help="generation backend (vllm: GPU only)")
    label.add_argument("--seed", type=int, default=0, help="sampling seed")
    label.add_argument("--out", default=None, help="output folder (default labels/<model>--<dataset>)")
    _add_engine_args(label)
    label.set_defaults(func=cmd_label)

    leaderboard = sub.add_parser("leaderboard", help="re-evaluate every probe of a registry on its test split and write the leaderboard",
                                 description="Writes leaderboard.csv, leaderboard.json and charts atomically and ends with "
                                             "'RESULT rows=N failed=F skipped=S carried=C seconds=T'. A probe or dataset that fails gets a row with the error. Only the test rows are "
                                             "extracted; unchanged probes are carried over from the last leaderboard (--full re-evaluates all).")
    leaderboard.add_argument("--registry", default=None, help=registry_help)
    leaderboard.add_argument("--data-dir", default=None, help=DATA_HELP)
    leaderboard.add_argument("--out", default="leaderboard", help="output folder (default leaderboard/)")
    leaderboard.add_argument("--model", default=None, help="model to extract with (default: the one each probe group was trained on)")
    leaderboard.add_argument("--push", default=None, metavar="REPO", help="also upload to this Hub dataset repo (uses HF_TOKEN / HF_ENDPOINT)")
    leaderboard.add_argument("--every", type=float, default=None, metavar="SECONDS", help="keep running and regenerate every SECONDS (for cron-less hosts)")
    leaderboard.add_argument("--no-cache", action="store_true", help="do not read or write the activation cache")
    leaderboard.add_argument("--readme", default=None, metavar="FILE", help="also put the model x task matrix into FILE between its "
                             "<!-- leaderboard-matrix:start --> and <!-- leaderboard-matrix:end --> lines (make leaderboard: README.md)")
    leaderboard.add_argument("--full", action="store_true", help="re-evaluate every probe (default: rows whose probe folder, data and library "
                             "version are unchanged since the leaderboard in --out are carried over)")
    leaderboard.add_argument("--max-failed", type=fraction, default=0.2, metavar="SHARE",
                             help="refuse (exit 1, nothing replaced) when more than this share of rows fails to re-evaluate (default 0.2)")
    _add_engine_args(leaderboard)
    _add_dtype_arg(leaderboard)
    leaderboard.set_defaults(func=cmd_leaderboard)

    verify = sub.add_parser("verify-dtype", help="read every activation probe of a local registry in its own precision and in --dtype; "
                            "record how far its readings move (served in --dtype only where the check passes)",
                            description="For each probe that reads activations, on its own test rows: the Spearman between its readings in "
                                        "the two precisions, the largest change of a reading, and the test metric with its 95% CI in each. The "
                                        "check is written into the probe's config.json and card (and the leaderboard's precision column); "
                                        f"it passes when the Spearman is >= {MIN_DTYPE_SPEARMAN} and the metric moves by at most half its CI. "
                                        "Ends with 'RESULT probes=N passed=P failed=F min_spearman=S max_abs_diff=D'.")
    verify.add_argument("--registry", default=None, help="a local registry folder (default: the bundled registry/)")
    verify.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="the precision to check (default bfloat16)")
    verify.add_argument("--model", default=None, help="model to read (default: the one each probe group was trained on)")
    verify.add_argument("--data-dir", default=None, help=DATA_HELP)
    verify.add_argument("--no-cache", action="store_true", help="do not read or write the activation cache")
    verify.set_defaults(func=cmd_verify_dtype)

    upgrade = sub.add_parser("upgrade", help="rewrite a local registry's probes in the current folder format (predictions unchanged)",
                             description="Loads every probe (older schema versions included), saves it again in the current format, "
                                         "converts reports/predictions.json to the compact reports/predictions.safetensors, drops "
                                         "reports that no code reads, and re-indexes. Each folder is swapped in atomically.")
    upgrade.add_argument("--registry", default=None, help="local registry folder (default: the bundled registry/)")
    upgrade.add_argument("--data-dir", default=None, help=DATA_HELP)
    upgrade.set_defaults(func=cmd_upgrade)

    data = sub.add_parser("data", help="get the data folder on a fresh machine (pull), or publish one (push)",
                          description="The data folder is looked for in this order: --data-dir, $PROBES_HUB_DATA_DIR, ../shared/data beside "
                                      "the project, then the folder `data pull` fills (in the cache).")
    data_verbs = data.add_subparsers(dest="data_command", required=True)
    data_pull = data_verbs.add_parser("pull", help="download the data folder from a Hugging Face dataset repo with the same layout",
                                      description="Resolves --revision to a commit (printed, and recorded in .pulled.json), downloads that "
                                                  "commit, checks every file against the repo's SHA256SUMS, and swaps the folder in; a failed "
                                                  "check replaces nothing. Uses HF_ENDPOINT / HF_TOKEN.")
    data_pull.add_argument("--repo", required=True, help="dataset repo id (org/name) made with `probes-hub data push`")
    data_pull.add_argument("--revision", default=None, help="branch, tag or commit to pin (default main)")
    data_pull.add_argument("--out", default=None, help="destination (default: the pulled-data folder in the cache, which the data folder "
                           "search falls back to)")
    data_pull.set_defaults(func=cmd_data_pull)
    data_push = data_verbs.add_parser("push", help="upload a data folder as a dataset repo, with the SHA256SUMS that `data pull` checks",
                                      description="Uploads the folder's files and their SHA256SUMS in one commit (the repo is created "
                                                  "if missing; uses HF_TOKEN); the folder is not changed. Mind the data's licenses before publishing it.")
    data_push.add_argument("--repo", required=True, help="dataset repo id (org/name)")
    data_push.add_argument("--data-dir", default=None, help=DATA_HELP)
    data_push.set_defaults(func=cmd_data_push)

    route = sub.add_parser("route", help="evaluate probe routing on recorded outcomes (accuracy-cost curve, AIQ, cost ratios)",
                           description="Routes each test question of the pool's dataset to a model of the pool from the registry's success "
                                       "probes (utility p - lambda x normalized expected cost; and a cascade), scores with the recorded "
                                       "outcomes and costs (the pool file states its cost rule), and compares with the TF-IDF, sentence-embedding "
                                       "and kNN (MiniLM neighbours) routers, the best single model, random and oracle. Headline: each router at "
                                       "the setting it chose on the pool's calibration questions (the cheapest reaching 95% of the best single "
                                       "model there), with its test accuracy, share of the best model's accuracy, cost ratio and savings; then "
                                       "the sweep over every setting on test (AIQ, cost to reach 90/95/100%), an upper reference. Pools over "
                                       "several benchmarks are also scored per benchmark. CIs: bootstrap over test questions. routing.json "
                                       "records every number and each router's calibrated setting (held_out_lambdas).")
    route.add_argument("--pool", default=None, help=f"pool file or bundled pool name ({', '.join(bundled_pools())}; default {DEFAULT_POOL.stem}, the MMLU-Pro headline pool)")
    route.add_argument("--registry", default=None, help=registry_help)
    route.add_argument("--model", default=None, help="source model whose probes route: a packaged alias (smollm2, gemma3-270m) or a display id "
                       f"(default: $PROBES_HUB_MODEL or '{EMBEDDED_MODEL_ALIAS}'); nothing is loaded, the probes' saved predictions are read")
    route.add_argument("--data-dir", default=None, help=DATA_HELP)
    route.add_argument("--out", default="runs/routing", help="folder for routing.json and the chart (default runs/routing)")
    route.add_argument("--n-boot", type=positive_int, default=200, help="bootstrap resamples for the CIs (default 200)")
    route.set_defaults(func=cmd_route)

    suggest = sub.add_parser("suggest", help="suggest the model of a pool to send one question to (reads the pool's success probes)",
                             description="Reads the registry's success probes for every model of the pool on one question and picks the model "
                                         "with the best utility P(correct) - lambda x expected cost / (the most expensive model's expected cost on "
                                         "this question), or with --target the cheapest model whose P(correct) reaches it. Prints the "
                                         "suggestion, or with --json one object: model, cost_ratio (its expected cost over the pool's most "
                                         "accurate model's), p_correct, in_distribution, pool, lambda. The app's suggestion is the same call.")
    suggest.add_argument("--question", required=True, help="the question")
    _add_suggestion_args(suggest, registry_help)
    suggest.add_argument("--json", action="store_true", help="print one JSON object")
    suggest.set_defaults(func=cmd_suggest)

    route_file = sub.add_parser("route-file", help="route a workload: a file of questions in, a plan (one model per question) out",
                                description="Reads a .jsonl, .csv or .parquet file with a 'question' column (optional 'id', and optional "
                                            "'correct:<model>' / 'output_chars:<model>' columns for every pool model), suggests a model of the pool "
                                            "for each question as `suggest` does, in batches, and writes the plan as CSV (id, model, p_correct, "
                                            "most_accurate, p_most_accurate, expected_cost, cost_ratio, in_distribution, probes_dataset, fallback). "
                                            "Prints the plan's expected accuracy and cost against always using the pool's most accurate and its "
                                            "cheapest model, the share of questions per model, the number out of distribution, and, when the file "
                                            "records outcomes, the realised accuracy (and cost). At most 5,000 questions per call.")
    route_file.add_argument("--file", required=True, help="the workload file (.jsonl, .csv or .parquet)")
    _add_suggestion_args(route_file, registry_help)
    route_file.add_argument("--out", default="plan.csv", help="where to write the plan (default plan.csv)")
    route_file.set_defaults(func=cmd_route_file)

    pools = sub.add_parser("pools", help="the bundled routing pools: models, cost unit, where prices come from; how to add your own",
                           description="Lists the bundled pools (one line each), or with a name or pool file every model of it with its cost "
                                       "per output token and where that cost comes from; then how to write a pool file of your own.")
    pools.add_argument("pool", nargs="?", default=None, help=f"a bundled pool ({', '.join(bundled_pools())}) or a pool file to show in full")
    pools.set_defaults(func=cmd_pools)

    add_analyze_parser(sub, model_help=MODEL_HELP, data_help=DATA_HELP, positive_int=positive_int, add_dtype_arg=_add_dtype_arg)
    return parser


def _add_suggestion_args(parser: argparse.ArgumentParser, registry_help: str) -> None:
    """The options of a routing suggestion (``suggest``, ``route-file``): the pool, lambda or a target, and where probes and data come from."""
    parser.add_argument("--pool", default="math", help=f"bundled pool name ({', '.join(bundled_pools())}) or pool file (default math)")
    rule = parser.add_mutually_exclusive_group()
    rule.add_argument("--lambda", dest="lam", type=float, default=None,
                      help="cost weight (0: most likely to succeed regardless of cost; default: the pool file's default_lambda)")
    rule.add_argument("--target", type=float, default=None, help="instead of lambda: the cheapest model with P(correct) >= this")
    parser.add_argument("--registry", default=None, help=registry_help)
    parser.add_argument("--model", default=None, help=MODEL_HELP)
    parser.add_argument("--data-dir", default=None, help=DATA_HELP + " (for each model's mean cost and accuracy)")


def _add_dtype_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", choices=DTYPE_CHOICES, default=None,
                        help="precision of the model's weights and forward pass: float32, bfloat16, or auto (bfloat16 on a GPU or a CPU with "
                             "bfloat16 units, float32 elsewhere); default: PROBES_HUB_DTYPE, else float32. Probes are read in another "
                             "precision than their own only after passing verify-dtype")


def _add_engine_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="where the heavy part runs: this process (default) or Ray actors, one model each (needs the scale extra: "
                             "pip install \"probes-hub[scale]\"); see docs/cluster.md")
    parser.add_argument("--ray-address", default=None, help="Ray cluster to join (e.g. auto, ray://head:10001; default: start a local one)")
    parser.add_argument("--ray-actors", type=positive_int, default=None, help="model actors (default: one per GPU, else one per CPU)")


def _engine(args: argparse.Namespace):
    """A context in which extraction runs on the chosen engine (a Ray session held for the whole command)."""
    import contextlib

    if getattr(args, "engine", "local") != "ray":
        return contextlib.nullcontext()
    from probes_hub.extract.engine import extraction_engine
    from probes_hub.scale.ray_engine import RayExtractor, ray_session

    stack = contextlib.ExitStack()
    stack.enter_context(ray_session(_ray_options(args)))
    stack.enter_context(extraction_engine(RayExtractor(_ray_options(args))))
    return stack


def _ray_options(args: argparse.Namespace):
    from probes_hub.scale.ray_engine import RayOptions

    return RayOptions(address=args.ray_address, actors=args.ray_actors)


def _add_filter_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="only probes for this model (display id, or its part after '/')")
    parser.add_argument("--dataset", default=None, help="only probes trained on this dataset")
    parser.add_argument("--label", default=None, help="only probes of this label")
    parser.add_argument("--probe-type", default=None, choices=sorted(PROBE_TYPES), help="only probes of this type")


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0].rstrip(".") if text else ""


def _filters(args: argparse.Namespace) -> dict:
    return {k: v for k, v in (("model", args.model), ("dataset", args.dataset), ("label", args.label), ("probe_type", args.probe_type)) if v}


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """'0-3,8' -> (0, 1, 2, 3, 8); a usage error (exit 2) for anything else, e.g. '5-2' or 'a'."""
    if not text:
        return None
    layers: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise argparse.ArgumentTypeError(f"{part!r} is not a layer or an ascending range like '0-17'")
        if high and int(high) < int(low):
            raise argparse.ArgumentTypeError(f"range {part!r} runs backwards; write '{high}-{low}'")
        layers += list(range(int(low), int(high) + 1)) if high else [int(low)]
    return tuple(sorted(set(layers)))


def positive_int(text: str) -> int:
    """An integer >= 1 (a usage error otherwise: '--limit 0' must not silently mean 'all')."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction(text: str) -> float:
    """A number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {value}")
    return value


def at_least_two(text: str) -> int:
    """An integer >= 2 (cross-validation needs two folds)."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2, got {value}")
    return value


def cmd_train(args: argparse.Namespace) -> int:
    from probes_hub.train import TrainOptions, train

    options = TrainOptions(model=args.model, dataset=args.dataset, labels=tuple(args.label), probes=tuple(args.probe), out=args.out,
                           data_dir=args.data_dir, limit=args.limit, layers=args.layers, token_layer=args.token_layer, max_length=args.max_length,
                           chat=False if args.raw else None, cv_folds=args.cv_folds, seed=args.seed, use_cache=not args.no_cache,
                           question_column=args.question_column, label_columns=tuple(args.label_column))
    started = time.time()
    with _engine(args):
        results = train(options)
    for label, result in results.items():
        print(f"== {label}")
        for name, trained in {**result.probes, **result.baselines}.items():
            kind = "probe" if name in result.probes else "baseline"
            print(f"{kind:8s} {name:7s} {trained.metrics['test']}")
            for key in ("test_mae", "test_partial_length", "test_ece_uncalibrated", "test_ece"):
                if key in trained.metrics:
                    print(f"{'':17s}{key}: {trained.metrics[key]}")
        for name, trained in result.probes.items():
            selection = trained.probe.selection_
            if selection.layer is not None and "alpha" in selection.details:
                print(f"selected: layer {selection.layer}, position {selection.position}, alpha {selection['alpha']:g}"
                      + (f", C {selection['C']:g}" if "C" in selection.details else "") + f" (CV {selection.cv_metric} {selection.cv_score:.3f})")
            print(f"saved {name} probe to {trained.path}")
    if args.push:
        from probes_hub.hub.registry import Registry

        names = Registry(args.push, create=True).push([t.path for r in results.values() for t in r.probes.values()])
        print(f"pushed {len(names)} probe(s) to {args.push}")
    print(f"done in {time.time() - started:.0f} s")
    return 0


def _questions_from_args(args: argparse.Namespace) -> tuple[list[str], list[str], object | None]:
    """(ids, questions, dataset or None) from --question / --file / --dataset; a bad question is refused naming where it is."""
    if args.dataset:
        dataset = load_dataset(args.dataset, data_dir=args.data_dir).subset(args.limit)
        return dataset.frame["id"].tolist(), dataset.frame["question"].tolist(), dataset
    located = [(f"--question number {number}", question) for number, question in enumerate(args.question, start=1)]
    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise FileNotFoundError(f"--file {path}: no such file.")
        if path.suffix in {".jsonl", ".csv", ".parquet"}:
            rows = load_dataset(str(path)).frame["question"].tolist()
            located += [(f"{path}, {'line' if path.suffix == '.jsonl' else 'row'} {number}", question) for number, question in enumerate(rows, start=1)]
        else:
            try:
                lines = path.read_bytes().decode("utf-8").splitlines()
            except UnicodeDecodeError as error:
                raise ValueError(f"{path} is not UTF-8 text (byte {error.start}); save it as UTF-8.") from error
            located += [(f"{path}, line {number}", line) for number, line in enumerate(lines, start=1) if line.strip()]
    if not located:
        raise SystemExit("predict: give --question TEXT, --file PATH or --dataset NAME.")
    questions = []
    for where, question in located:
        try:
            questions.append(check_question(question, where=where))
        except ValueError as error:
            raise SystemExit(f"predict: {error}") from None
    return [str(i) for i in range(len(questions))], questions, None


def cmd_predict(args: argparse.Namespace) -> int:
    from probes_hub.apply import probe_inputs
    from probes_hub.extract.feature_source import ModelFeatures
    from probes_hub.extract.models import load_model
    from probes_hub.probes import Probe

    ids, questions, dataset = _questions_from_args(args)
    data_hash = dataset.content_hash if dataset is not None else None
    source = ModelFeatures(load_model(args.model))
    probes = {Path(folder).name: Probe.from_pretrained(folder, hidden_size=source.hidden_size) for folder in args.probe}
    inputs = probe_inputs(source, probes, questions, data_hash=data_hash, use_cache=not args.no_cache)
    table = {name: probe.predict(inputs.of(name)) for name, probe in probes.items()}
    cut = [ids[i] for i, was_cut in enumerate(inputs.truncated) if was_cut]
    if cut:
        limit = " or ".join(sorted({str(max_length) for (_, max_length), _ in inputs.extractions()}))
        print(f"notice: {len(cut)} question(s) were longer than {limit} tokens; their beginning was cut (the end-of-instruction "
              f"tokens are kept): id {', '.join(cut[:10])}{' ...' if len(cut) > 10 else ''}", file=sys.stderr)
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
    from probes_hub.extract.feature_source import ModelFeatures
    from probes_hub.extract.models import load_model
    from probes_hub.train import build_features

    dataset = load_dataset(args.dataset, data_dir=args.data_dir, question_column=args.question_column).subset(args.limit)
    lm = load_model(args.model)
    layers = list(args.layers or range(lm.n_layers))
    started = time.time()
    with _engine(args):
        features = build_features(ModelFeatures(lm), False if args.raw else None, dataset, layers, max_length=args.max_length,
                                  use_cache=not args.no_cache)
    print(f"activations {tuple(features.activations.shape)} for {dataset.name} ({len(dataset.frame)} questions) in {time.time() - started:.1f} s")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from probes_hub.hub.registry import Registry

    registry = Registry(args.registry, revision=args.revision)
    entries = registry.list(**_filters(args))
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=1))
    else:
        kinds = baseline_types()
        print(f"{'name':64s} {'metric':8s} {'value':>6s} {'95% CI':>15s} {'n':>5s} " + " ".join(f"{k:>6s}" for k in kinds))
        for e in entries:
            m = e.metric
            ci = f"[{m['low']:.3f},{m['high']:.3f}]" if m else ""
            base = " ".join(f"{e.baselines[k]:6.3f}" if k in e.baselines else f"{'':6s}" for k in kinds)
            print(f"{e.name:64s} {m.get('name', ''):8s} {m.get('value', float('nan')):6.3f} {ci:>15s} {m.get('n', 0):5d} {base}")
        print(f"{len(entries)} of {len(registry.manifest().entries)} probes in {registry.spec}")
        if not entries and _filters(args):
            print(registry.manifest().suggest(**_filters(args)), file=sys.stderr)
    problems = {**registry.problems, **(registry.check() if registry.is_local else {})}
    for name, problem in problems.items():
        print(f"broken: {name}: {problem}", file=sys.stderr)
    if registry.snapshot and registry.snapshot.unreachable:
        print(f"note: {registry.snapshot.note()}", file=sys.stderr)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from probes_hub.hub.registry import Registry

    paths = Registry(args.registry, revision=args.revision).pull(args.out, args.names or None, **_filters(args))
    for path in paths:
        print(path)
    print(f"pulled {len(paths)} probe(s) into {args.out}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from probes_hub.hub.registry import Registry

    names = Registry(args.registry, create=True).push(args.folders, commit_message=args.message)
    print(f"pushed {', '.join(names)} to {args.registry}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from probes_hub.hub.registry import Registry, write_index

    registry = Registry(args.registry)
    manifest = write_index(registry.root)
    print(f"indexed {len(manifest.entries)} probes in {registry.root}")
    return 0


def cmd_registry_remove(args: argparse.Namespace) -> int:
    import getpass

    from probes_hub.hub.audit import REMOVED, AuditEntry, AuditLog, check_user_name, now_iso
    from probes_hub.hub.registry import Registry

    registry = Registry(args.registry)
    moderator = check_user_name(args.by or getpass.getuser())
    with registry.writing(f"remove {args.name} by {moderator}"):
        entry = registry.remove(args.name, message=f"Remove {args.name}: {args.reason}")
        AuditLog.of(registry).append(AuditEntry(now_iso(), moderator, "remove", REMOVED, entry.name, args.reason))
    print(f"removed {entry.name} from {registry.spec} (logged; the leaderboard drops it on its next refresh)")
    return 0


def cmd_registry_audit(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from probes_hub.hub.audit import AuditLog
    from probes_hub.hub.registry import Registry

    log = AuditLog.of(Registry(args.registry))
    entries = [e for e in log.entries() if args.user is None or e.user == args.user]
    for e in entries:
        print(json.dumps(asdict(e), sort_keys=True) if args.json else
              f"{e.time}  {e.user or '(anonymous)':<16} {e.action:<7} {e.outcome:<9} {e.name or '-'}  {e.reason[:120]}")
    if not args.json:
        print(f"{len(entries)} line(s) in {log.path}")
    return 0


def cmd_registry_recover(args: argparse.Namespace) -> int:
    from probes_hub.hub.registry import Registry

    registry = Registry(args.registry)
    recovery = registry.recover()
    for action in recovery.actions:
        print(f"recovered: {action}")
    for name, problem in recovery.problems.items():
        print(f"not listed: {name} fails validation ({problem})")
    print(f"{registry.spec}: {len(registry.manifest(refresh=True).entries)} probes, {len(recovery.actions)} recovery action(s)")
    return 0


def cmd_build_registry(args: argparse.Namespace) -> int:
    from probes_hub.bundled import build_bundled_registry

    with _engine(args):
        manifest, timings = build_bundled_registry(args.out, model=args.model, data_dir=args.data_dir, use_cache=not args.no_cache, add=args.add)
    print(f"built {len(manifest.entries)} probes into {args.out}; " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    from probes_hub.data.labeling import GenerationOptions, label_by_generation, label_by_loglik
    from probes_hub.extract.models import load_model
    from probes_hub.metrics import accuracy_metric
    from probes_hub.schema.naming import slug

    if args.method == "loglik" and args.engine == "ray":
        raise ValueError("--engine ray runs --method generate (log-likelihood scoring is one cheap forward pass per option).")
    dataset = load_dataset(args.dataset, data_dir=args.data_dir)
    frame = dataset.frame
    if args.split:
        frame = frame[frame["split"] == args.split]
    dataset = type(dataset)(dataset.name, frame.head(args.limit).reset_index(drop=True) if args.limit else frame.reset_index(drop=True),
                            dataset.labels, dataset.split_rule, dataset.source)
    lm = load_model(args.model)
    out = Path(args.out or Path("labels") / f"{slug(lm.display_id.split('/')[-1])}--{dataset.name}")
    started = time.time()
    if args.method == "loglik":
        table = label_by_loglik(lm, dataset, out)
        print(f"{dataset.name}{' ' + args.split if args.split else ''}: unnormalized {accuracy_metric(table['correct'])}")
        print(f"{dataset.name}{' ' + args.split if args.split else ''}: per-character normalized {accuracy_metric(table['correct_norm'])}")
    else:
        answer_column = args.answer_column or ("final_answer" if dataset.name == "gsm8k" else "answer")
        options = GenerationOptions(k=args.k, temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                                    batch_size=args.batch_size, seed=args.seed)
        if args.engine == "ray":
            from probes_hub.scale.ray_engine import label_on_ray

            table = label_on_ray(lm, dataset, out, options, answer_column=answer_column, backend=args.backend, options=_ray_options(args))
        else:
            table = label_by_generation(lm, dataset, out, options, answer_column=answer_column, backend=args.backend)
        print(f"{len(table)} questions, k={args.k}: mean success_rate {table['success_rate'].mean():.3f}, pass@k {table['pass_at_k'].mean():.3f}, "
              f"majority vote {table['majority_vote_is_correct'].mean():.3f}, mean output tokens {table['mean_output_tokens'].mean():.0f}")
    print(f"wrote {out} in {time.time() - started:.0f} s")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from probes_hub.leaderboard import SKIPPED, regenerate, update_readme

    while True:
        with _engine(args):
            table, seconds = regenerate(args.registry, args.out, data_dir=args.data_dir, model=args.model, push=args.push, use_cache=not args.no_cache,
                                        max_failed=args.max_failed, full=args.full)
        failed, skipped = table[table["status"] == "failed"], table[table["status"] == SKIPPED]
        for row in failed.itertuples():
            print(f"failed: {row.name}: {row.error}", file=sys.stderr)
        if args.readme:
            update_readme(args.readme, (Path(args.out) / "matrix.md").read_text(encoding="utf-8").rstrip())
        if len(skipped):
            print(f"skipped {len(skipped)} row(s): {skipped['error'].iloc[0]}", file=sys.stderr)
        carried = int(table["carried_over"].fillna(False).astype(bool).sum())
        print(f"RESULT rows={len(table)} failed={len(failed)} skipped={len(skipped)} carried={carried} seconds={seconds:.1f}", flush=True)
        if args.every is None:
            return 0
        time.sleep(args.every)


def cmd_verify_dtype(args: argparse.Namespace) -> int:
    from probes_hub.hub.registry import Registry
    from probes_hub.verify_dtype import verify_registry

    checks = verify_registry(Registry(args.registry), args.dtype, model=args.model, data_dir=args.data_dir, use_cache=not args.no_cache)
    for name, check in sorted(checks.items()):
        print(f"{name}: {check.summary()}")
    passed = sum(check.passed for check in checks.values())
    spearman = min((check.spearman for check in checks.values()), default=float("nan"))
    largest = max((check.max_abs_diff for check in checks.values()), default=float("nan"))
    print(f"RESULT probes={len(checks)} passed={passed} failed={len(checks) - passed} min_spearman={spearman:.5f} max_abs_diff={largest:.5f}")
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    from probes_hub.hub.registry import Registry
    from probes_hub.hub.upgrade import upgrade_registry

    registry = Registry(args.registry)
    names = upgrade_registry(registry.root, data_dir=args.data_dir)
    print(f"rewrote {len(names)} probe(s) in {registry.root} in the current format")
    return 0


def cmd_data_pull(args: argparse.Namespace) -> int:
    from probes_hub.data.pull import pull_data

    pulled = pull_data(args.repo, revision=args.revision, out=args.out)
    print(f"pulled {pulled.files} files of {pulled.repo_id} at commit {pulled.commit} into {pulled.folder} (every sha256 checked)")
    return 0


def cmd_data_push(args: argparse.Namespace) -> int:
    from probes_hub.data.datasets import resolve_data_dir
    from probes_hub.data.pull import push_data

    folder = resolve_data_dir(args.data_dir)
    commit = push_data(folder, args.repo)
    print(f"pushed {folder} to the dataset repo {args.repo} (commit {commit})")
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    from probes_hub.hub.registry import Registry
    from probes_hub.routing.evaluate import evaluate_routing, load_pool, write_routing_outputs

    result = evaluate_routing(load_pool(args.pool), Registry(args.registry), model=args.model, data_dir=args.data_dir, n_boot=args.n_boot)
    print(f"pool {result['pool']}: {len(result['models'])} models, probes of {result['source_model']} on {result['dataset']}, cost in {result['cost_unit']}; "
          f"{result['dropped_questions']} test question(s) dropped (a pool model has no outcome)")
    _print_stream("all test questions", result)
    for benchmark, part in result["per_benchmark"].items():
        _print_stream(f"{benchmark} test questions", part)
    print(f"\noperating points: each router's setting was chosen on the pool's {result['n_calibration']} calibration questions (the cheapest "
          f"reaching {result['operating_level']:.0%} of the best single model there; no test question). The {result['probe']} utility router's "
          f"lambda is a pool file's default_lambda: {result['held_out_lambdas'][result['probe']]:.4g}; the kNN router's k (5-fold CV): {result['knn_k']}")
    print("expected costs: " + "; ".join(f"{router} router: {source}" for router, source in result["cost_sources"].items()))
    for path in write_routing_outputs(result, args.out):
        print(f"wrote {path}")
    routers, best = result["routers"], result["best_single"]
    probe, tfidf = routers[result["probe"]], routers["tfidf"]
    embedding_aiq = routers["embedding"].aiq[0] if "embedding" in routers else float("nan")
    operating = " ".join(f"{prefix}op_acc_ratio={r.operating_point.accuracy_ratio[0]:.4f} {prefix}op_cost_ratio={r.operating_point.cost_ratio[0]:.4f}"
                         for prefix, r in (("", probe), ("tfidf_", tfidf), ("embedding_", routers.get("embedding")), ("knn_", routers["knn"]))
                         if r is not None)
    print(f"probe router: {result['probe']} probes (the first available of shared, linear)")
    print(f"RESULT best_single_acc={best['accuracy']:.4f} {operating} cost_ratio_at_95={probe.cost_ratio[0.95][0]:.4f} "
          f"cost_ratio_at_100={probe.cost_ratio[1.0][0]:.4f} aiq={probe.aiq[0]:.4f} tfidf_cost_ratio_at_95={tfidf.cost_ratio[0.95][0]:.4f} "
          f"tfidf_aiq={tfidf.aiq[0]:.4f} embedding_aiq={embedding_aiq:.4f} knn_aiq={routers['knn'].aiq[0]:.4f}")
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    from probes_hub.extract.feature_source import ModelFeatures
    from probes_hub.extract.models import load_model
    from probes_hub.hub.registry import Registry
    from probes_hub.routing.suggest import router_for

    question = args.question.strip()
    if not question:
        raise ValueError("--question is empty.")
    source = ModelFeatures(load_model(args.model))
    router = router_for(args.pool, Registry(args.registry), source, data_dir=args.data_dir)
    suggestion = router.suggest(router.features(source, [question]), lam=args.lam, target=args.target)
    if args.json:
        print(json.dumps(suggestion.to_json(), indent=1))
        return 0
    print(f"pool {suggestion.pool}, lambda {suggestion.lam:g}: send it to {suggestion.model} "
          f"(P(correct) {suggestion.p_correct[suggestion.model]:.2f}, expected cost {suggestion.cost_ratio:.1%} of {suggestion.most_accurate}'s)")
    print(f"in-distribution score {suggestion.in_distribution:.2f} (probes trained on {suggestion.probes_dataset}); predicted answer length "
          f"x{suggestion.length_factor:.2f} the mean on the pool's training questions")
    for model, p in sorted(suggestion.p_correct.items(), key=lambda item: -item[1]):
        print(f"  {p:.3f}  {model}")
    return 0


def cmd_pools(args: argparse.Namespace) -> int:
    from probes_hub.routing.pool_guide import OWN_POOL, pool_details, pools_table

    print(pool_details(args.pool) if args.pool else pools_table())
    print(f"\n{OWN_POOL}")
    return 0


def cmd_route_file(args: argparse.Namespace) -> int:
    from math import nan

    from probes_hub.atomic import atomic_write_text
    from probes_hub.extract.feature_source import ModelFeatures
    from probes_hub.extract.models import load_model
    from probes_hub.hub.registry import Registry
    from probes_hub.routing.suggest import router_for
    from probes_hub.routing.workload import plan_workload, read_workload

    source = ModelFeatures(load_model(args.model))
    router = router_for(args.pool, Registry(args.registry), source, data_dir=args.data_dir)
    workload = read_workload(args.file, router.pool)
    plan = plan_workload(router, source, workload, lam=args.lam, target=args.target)
    atomic_write_text(args.out, plan.rows.to_csv(index=False, float_format="%.6g"))
    summary = plan.summary
    rule = f"target P(correct) >= {summary.target:g}" if summary.target is not None else f"lambda {summary.lam:g}"
    print(f"pool {router.pool.name}, {rule}: {summary.n} questions from {workload.source}, cost in {router.pool.cost_unit}")
    print(f"{'':32s} {'expected accuracy':>18s} {'mean cost':>12s} {'cost ratio':>11s}")
    best_cost = summary.singles[summary.best_model][1]
    for name, accuracy, cost in summary.rows():
        print(f"{name[:32]:32s} {accuracy:18.3f} {cost:12.4g} {cost / best_cost:11.1%}")
    print("share of questions: " + ", ".join(f"{m} {share:.0%}" for m, share in summary.shares.items() if share > 0))
    print(f"out of distribution (in-distribution score < {UNFAMILIAR_BELOW}): {summary.out_of_distribution} of {summary.n}")
    for name, (accuracy, cost) in (summary.realised or {}).items():
        print(f"realised on the file's outcomes, {name}: accuracy {accuracy:.3f}" + (f", mean cost {cost:.4g}" if cost is not None else ""))
    print(f"wrote {args.out}")
    best_accuracy, best_cost = summary.singles[summary.best_model]
    realised, always_best = (summary.realised or {}).get("plan", (nan, None)), (summary.realised or {}).get(f"always {summary.best_model}", (nan, None))
    realised_cost_ratio = realised[1] / always_best[1] if realised[1] is not None and always_best[1] else nan
    print(f"RESULT questions={summary.n} expected_acc_ratio={summary.expected_accuracy / best_accuracy:.4f} expected_cost_ratio={summary.cost_ratio:.4f} "
          f"realised_acc_ratio={realised[0] / always_best[0] if always_best[0] else nan:.4f} realised_cost_ratio={realised_cost_ratio:.4f} "
          f"expected_acc={summary.expected_accuracy:.4f} out_of_distribution={summary.out_of_distribution}")
    return 0


def _print_stream(title: str, result: dict) -> None:
    """One stream's tables: best single, oracle, each router at its calibrated operating point (the headline), then the test-optimal
    sweep (AIQ and cost ratios, an upper reference), and the two-model metrics; all with CIs."""
    best = result["best_single"]
    print(f"\n== {title} (n={result['n_test']})")
    print(f"best single model: {best['model']} accuracy {best['accuracy']:.3f}, mean cost {best['cost']:.4g}")
    print(f"oracle (cheapest correct): accuracy {result['oracle'].accuracy:.3f}, cost {result['oracle'].cost:.4g}")
    print(f"at the operating point chosen on calibration questions (headline):\n{'router':26s} {'setting':>8s} {'accuracy [95% CI]':>22s} "
          f"{'of best [95% CI]':>22s} {'cost ratio [95% CI]':>22s} {'savings':>8s}")
    for router in result["routers"].values():
        point = router.operating_point
        print(f"{router.name:26s} {point.setting:8.3g} {_ci(*point.accuracy):>22s} {_ci(*point.accuracy_ratio):>22s} {_ci(*point.cost_ratio):>22s} "
              f"{point.savings[0]:8.1%}")
    print(f"upper reference (chosen on test): the sweep's AIQ and the cheapest setting reaching each share of the best model\n"
          f"{'router':26s} {'AIQ [95% CI]':>26s} " + " ".join(f"{'cost@' + format(level, '.0%') + ' [95% CI]':>26s}" for level in (0.9, 0.95, 1.0)))
    for router in result["routers"].values():
        cells = [_ci(*router.aiq)] + [_ci(*router.cost_ratio[level]) for level in (0.9, 0.95, 1.0)]
        print(f"{router.name:26s} " + " ".join(f"{c:>26s}" for c in cells))
    two = result["two_model"]
    for key in (k for k in result["routers"] if k in two):
        print(f"two-model ({two['weak']} -> {two['strong']}), {key}: APGR {two[key]['apgr']:.3f}, CPT(50%) {two[key]['cpt50']:.3f}, CPT(80%) {two[key]['cpt80']:.3f}")


def _ci(value: float, low: float, high: float) -> str:
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


EXIT_RUNTIME, EXIT_USAGE = 1, 2
"""Exit codes: 2 when the command line or an input it names is wrong (argparse's own code), 1 when the work itself failed."""
HUB_MODULES = {"huggingface_hub", "httpx", "httpx2", "requests", "urllib3"}


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Exit codes: 0 done; 2 a usage error or bad input (``ValueError``: a bad option or value, an invalid
    input file; ``FileNotFoundError``: a file or name that does not exist); 1 the work failed (``RuntimeError``/``OSError``: data
    drift, a refusal, the model or the Hub unreachable; or a bug, whose traceback is saved to a file that the one line names)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so that temp folders and files are cleaned up as on Ctrl-C
    try:
        with use_dtype(getattr(args, "dtype", None) if args.func is not cmd_verify_dtype else None):
            return args.func(args)
    except Exception as error:
        if args.debug:
            raise
        return _report(error)


def _report(error: Exception) -> int:
    """One line on stderr for an error, and its exit code; an unexpected one (a bug) also leaves its traceback in the cache's logs."""
    if isinstance(error, ValueError | FileNotFoundError):
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(error, OSError | RuntimeError):  # the Hub's errors are OSErrors: one line, not a traceback
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return EXIT_RUNTIME
    if type(error).__module__.split(".")[0] in HUB_MODULES:
        print(f"error: the Hub could not be reached ({_one_line(error)}). Check HF_ENDPOINT / HF_TOKEN, or use a local path.", file=sys.stderr)
        return EXIT_RUNTIME
    import traceback

    from probes_hub.atomic import atomic_write_text
    from probes_hub.cache import cache_dir

    log = cache_dir("logs") / f"error-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    atomic_write_text(log, "".join(traceback.format_exception(error)))
    print(f"error: unexpected {_one_line(error)} (a bug: please report it with the traceback saved in {log}, or rerun with --debug)", file=sys.stderr)
    return EXIT_RUNTIME


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)
