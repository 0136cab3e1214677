"""``probes-hub analyze heads|steer|transfer``: the command-line front end of the analyses (outputs written atomically, a RESULT line)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from probes_hub.analysis import ABLATIONS, DEFAULT_ALPHAS, DEFAULT_PROBE, DEFAULT_TRANSFER_LABEL
from probes_hub.paths import BUNDLED_ANALYSIS

KINDS = ("heads", "steer", "transfer")


def add_analyze_parser(sub, *, model_help: str, data_help: str, positive_int, add_dtype_arg) -> None:
    """Register ``analyze`` and its three verbs on the main parser's subcommands."""
    analyze = sub.add_parser("analyze", help="inside the model: attention heads behind a probe, steering along it, cross-difficulty transfer",
                             description="Each verb reads one linear probe (a folder, or a probe name in the registry; default: the bundled "
                                         f"MATH-500 level probe {DEFAULT_PROBE}), writes result.json, CSV tables and charts (HTML + Vega-Lite) "
                                         f"atomically to --out (default {BUNDLED_ANALYSIS.name}/<probe>/<verb>) and ends with a RESULT line.")
    verbs = analyze.add_subparsers(dest="analysis", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--probe", default=DEFAULT_PROBE, help="probe folder, or a probe name in --registry (default: %(default)s)")
    common.add_argument("--registry", default=None, help="registry holding --probe when it is a name (default: the bundled registry/)")
    common.add_argument("--model", default=None, help=model_help + " Default: the model the probe records.")
    common.add_argument("--data-dir", default=None, help=data_help)
    common.add_argument("--limit", type=positive_int, default=None, help="a seeded subset of this many of the probe's test questions (a quick look)")
    common.add_argument("--seed", type=int, default=0, help="seed for --limit, the random control direction and the GSM8K sample")
    common.add_argument("--out", default=None, help="output folder (default analysis/<probe>/<verb>)")
    add_dtype_arg(common)

    heads = verbs.add_parser("heads", parents=[common], help="effect of each attention head (blocks <= the probe's layer) on the probe's reading and test Spearman",
                             description="Exact ablation (each head's output zeroed or mean-ablated, the model re-run from that head's block to the "
                                         "probe's layer) and attribution patching (gradient x ablation change, one backward pass per batch), with "
                                         "their agreement over heads. Exact ablation costs about (layer + 2) / 2 forward passes per head: use --limit "
                                         "or --method attribution on big models.")
    heads.add_argument("--ablation", choices=ABLATIONS, default="zero", help="replace a head's output by zeros or by its mean over the test tokens (default zero)")
    heads.set_defaults(func=cmd_heads)

    steer = verbs.add_parser("steer", parents=[common], help="add alpha x the probe direction at its layer: reading shift and GSM8K length/accuracy vs a random direction",
                             description="alpha is in units of the test questions' spread (standard deviation) along the probe direction at its "
                                         "read position; the random control gets vectors of the same norms. Reading shifts use the "
                                         "probe's test questions (--limit); generations are greedy, on a seeded GSM8K test sample (--generate), "
                                         "checked with math-verify.")
    steer.add_argument("--alphas", type=_floats, default=DEFAULT_ALPHAS, help="comma-separated alphas; write negatives as --alphas=-16,-8,0,8,16 (default %(default)s)")
    steer.add_argument("--generate", type=int, default=24, metavar="N", help="GSM8K test questions to generate for at each alpha (0: readings only; default 24)")
    steer.add_argument("--max-new-tokens", type=positive_int, default=256, help="generation budget per answer (default 256)")
    steer.add_argument("--batch-size", type=positive_int, default=24, help="answers generated together (default 8)")
    steer.set_defaults(func=cmd_steer)

    transfer = verbs.add_parser("transfer", parents=[common], help="train on one difficulty bin, test on every bin: a train-bin x test-bin matrix with CIs",
                                description="Bins come from the probe's own label (each value when there are few, else quintiles of the training "
                                            "rows); the predicted label is --label, fitted with CV inside each bin's training rows at the probe's "
                                            "layer and position. --limit does not apply (every question of the dataset is used).")
    transfer.add_argument("--label", default=DEFAULT_TRANSFER_LABEL, help="label predicted within the bins (default %(default)s: the share of real models "
                                                                 "that solved the question, from the matching outcomes dataset)")
    transfer.add_argument("--no-cache", action="store_true", help="do not read or write the activation cache")
    transfer.set_defaults(func=cmd_transfer)


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one alpha")
    return values


def _target(args: argparse.Namespace, *, limit: int | None):
    from probes_hub.analysis.target import load_target

    return load_target(args.probe, model=args.model, registry=args.registry, data_dir=args.data_dir, limit=limit, seed=args.seed)


def _out(args: argparse.Namespace, target) -> Path:
    return Path(args.out) if args.out else BUNDLED_ANALYSIS / target.name / args.analysis


def _written(paths: list[Path]) -> None:
    for path in paths:
        print(f"wrote {path}")


def cmd_heads(args: argparse.Namespace) -> int:
    from probes_hub.analysis.heads import analyze_heads, heads_charts
    from probes_hub.analysis.outputs import write_analysis

    started = time.time()
    target = _target(args, limit=args.limit)
    report = analyze_heads(target, ablation=args.ablation)
    print(f"{report.probe}: clean test {report.clean}; {len(report.heads)} heads in blocks 0-{report.layer}, {report.ablation}-ablated "
          f"(exact {report.seconds_exact:.0f} s, attribution {report.seconds_attribution:.0f} s)")
    for head in report.top():
        print(f"  L{head.layer}H{head.head}: mean reading {head.reading_shift:+.3f} [{head.shift_low:+.3f}, {head.shift_high:+.3f}] "
              f"(attribution {head.attribution_shift:+.3f}), Spearman {head.spearman_delta:+.3f} [{head.delta_low:+.3f}, {head.delta_high:+.3f}]")
    _written(write_analysis(_out(args, target), report.to_json(), {"heads": report.table()}, heads_charts(report)))
    print(f"RESULT heads={len(report.heads)} exact_vs_attribution_spearman={report.agreement_spearman:.4f} top10_overlap={report.top10_overlap} "
          f"n={report.n} exact_seconds={report.seconds_exact:.1f} attribution_seconds={report.seconds_attribution:.1f} seconds={time.time() - started:.1f}")
    return 0


def cmd_steer(args: argparse.Namespace) -> int:
    from probes_hub.analysis.outputs import write_analysis
    from probes_hub.analysis.steering import analyze_steering, steering_charts

    if args.generate < 0:
        raise ValueError(f"--generate must be 0 or more, got {args.generate}")
    started = time.time()
    target = _target(args, limit=args.limit)
    report = analyze_steering(target, alphas=args.alphas, n_generate=args.generate, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                              data_dir=args.data_dir, seed=args.seed)
    for point in report.points:
        cells = [f"reading {point.reading_shift.value:+.3f}"] + ([f"layer-{report.downstream_layer} {point.downstream_shift.value:+.3f}"] if point.downstream_shift else [])
        cells += [f"{point.answer_tokens}", f"{point.accuracy}"] if point.accuracy else []
        print(f"{point.direction:6s} alpha {point.alpha:+.2f}: " + "; ".join(cells))
    _written(write_analysis(_out(args, target), report.to_json(), {"steering": report.table()}, steering_charts(report)))
    downstream = (f" downstream_shift_per_alpha={report.downstream_shift_per_alpha:.4f} random_downstream_shift_per_alpha="
                  f"{report.random_downstream_shift_per_alpha:.4f}") if report.downstream_shift_per_alpha is not None else ""
    print(f"RESULT shift_per_alpha={report.shift_per_alpha:.4f} random_shift_per_alpha={report.random_shift_per_alpha:.4f}{downstream} "
          f"n_reading={report.n_reading} n_generate={report.n_generate} seconds={time.time() - started:.1f}")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from probes_hub.analysis.outputs import write_analysis
    from probes_hub.analysis.transfer import analyze_transfer, transfer_charts

    if args.limit is not None:
        raise ValueError("--limit does not apply to transfer: every bin needs all of its questions.")
    started = time.time()
    target = _target(args, limit=None)
    report = analyze_transfer(target, label=args.label, data_dir=args.data_dir, seed=args.seed, use_cache=not args.no_cache)
    for cell in report.cells:
        print(f"train {cell.train_bin:>4s} (n={cell.n_train:4d}) -> test {cell.test_bin:>4s}: {cell.metric}")
    print("summary: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in report.summary.items()))
    _written(write_analysis(_out(args, target), report.to_json(), {"transfer": report.table()}, transfer_charts(report)))
    print(f"RESULT cells={len(report.cells)} bins={len(report.bins)} seconds={time.time() - started:.1f}")
    return 0
