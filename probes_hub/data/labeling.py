"""Success labels for a model: by sampling answers and checking them, or by option log-likelihood (no generation).

Generation writes one row per question (success_rate, majority_vote_is_correct, pass@k, mean output
tokens) plus the raw completions in a side file, and resumes where it stopped. Answers are checked with
``math-verify`` (so 1/2, 0.5 and \\frac{1}{2} agree); GSM8K's ``#### number`` and MATH's ``\\boxed{}`` are
read first, then the last number.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from probes_hub.atomic import atomic_write_text
from probes_hub.data.datasets import QuestionSet
from probes_hub.extract.models import LoadedModel
from probes_hub.extract.prompts import PromptFormat, encode_prompts
from probes_hub.progress import progress_bar

ANSWER_INSTRUCTION = "\n\nSolve the problem step by step, then write the final answer inside \\boxed{}."
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


# -- answers ----------------------------------------------------------------------------------------------
def extract_answer(text: str) -> str | None:
    """The final answer in a completion: after '####', else the last \\boxed{...} holding a number or LaTeX, else the last number."""
    if "####" in text:
        tail = text.split("####")[-1].strip().splitlines()
        if tail and tail[0].strip():
            return tail[0].strip().rstrip(".")
    boxed = _last_boxed(text)
    if boxed is not None and re.search(r"[\d\\]", boxed):  # a parroted placeholder such as \boxed{answer} is no answer
        return boxed
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None


def answers_match(predicted: str | None, gold: str) -> bool:
    """math-verify equivalence of two final answers (numbers, fractions, LaTeX); False when nothing was extracted."""
    from math_verify import parse, verify

    if predicted is None or not predicted.strip():
        return False
    wrap = lambda s: s if "$" in s else f"${s}$"  # noqa: E731 - math-verify reads LaTeX inside $...$
    gold_parsed, pred_parsed = parse(wrap(gold.replace(",", ""))), parse(wrap(predicted.replace(",", "")))
    return bool(gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed))


# -- generation -------------------------------------------------------------------------------------------
@dataclass
class GenerationOptions:
    """Sampling settings of ``label --method generate``."""

    k: int = 4
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 384
    batch_size: int = 8
    seed: int = 0


def label_by_generation(lm: LoadedModel, dataset: QuestionSet, out: str | Path, options: GenerationOptions,
                        *, answer_column: str, backend: str = "transformers", progress: bool = True) -> pd.DataFrame:
    """Sample ``k`` completions per question, check each, and write ``labels.csv`` + ``completions.jsonl`` under ``out``.

    Re-running skips questions whose completions are already in ``completions.jsonl``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    side = out / "completions.jsonl"
    done = _read_completions(side)
    frame = dataset.frame[~dataset.frame["id"].astype(str).isin(done)]
    with progress_bar(total=len(frame), desc="Labelling by generation", disable=not progress) as bar, open(side, "a", encoding="utf-8") as handle:
        step = questions_per_call(options)
        for start in range(0, len(frame), step):
            chunk = frame.iloc[start:start + step]
            for records in completion_records(lm, chunk, options, answer_column=answer_column, backend=backend):
                handle.write("".join(json.dumps(r) + "\n" for r in records))
                handle.flush()
                done[records[0]["id"]] = records
            bar.update(len(chunk))
    table = summarize_completions(done, ids=dataset.frame["id"].astype(str).tolist())
    atomic_write_text(out / "labels.csv", table.to_csv(index=False))
    return table


def questions_per_call(options: GenerationOptions) -> int:
    """Questions per ``generate`` call (each brings ``k`` sequences): the unit a sharded job must keep to give the same samples."""
    return max(1, options.batch_size // options.k)


def completion_records(lm: LoadedModel, chunk: pd.DataFrame, options: GenerationOptions, *, answer_column: str,
                       backend: str = "transformers") -> list[list[dict]]:
    """One ``generate`` call for ``chunk``'s questions: per question, its ``k`` completions with extracted and checked answers."""
    if backend not in ("transformers", "vllm"):
        raise ValueError(f"Unknown backend {backend!r}; use 'transformers' or 'vllm'.")
    generate = _vllm_generate if backend == "vllm" else transformers_generate
    completions = generate(lm, chunk["question"].tolist(), options)
    results = []
    for (_, row), samples in zip(chunk.iterrows(), completions):
        records = []
        for i, (text, n_tokens) in enumerate(samples):
            answer = extract_answer(text)
            records.append({"id": str(row["id"]), "sample": i, "text": text, "answer": answer,
                            "correct": answers_match(answer, str(row[answer_column])), "output_tokens": n_tokens})
        results.append(records)
    return results


def summarize_completions(completions: dict[str, list[dict]], ids: list[str]) -> pd.DataFrame:
    """Per question: success_rate, majority_vote_is_correct, pass@k, mean output tokens."""
    rows = []
    for qid in ids:
        records = completions.get(qid)
        if not records:
            continue
        correct = [bool(r["correct"]) for r in records]
        votes = Counter(r["answer"] for r in records if r["answer"] is not None)
        majority = votes.most_common(1)[0][0] if votes else None
        majority_correct = any(r["correct"] for r in records if r["answer"] == majority) if majority is not None else False
        rows.append({"id": qid, "k": len(records), "success_rate": float(np.mean(correct)), "majority_vote_is_correct": int(majority_correct),
                     "pass_at_k": int(any(correct)), "mean_output_tokens": float(np.mean([r["output_tokens"] for r in records]))})
    return pd.DataFrame(rows, columns=["id", "k", "success_rate", "majority_vote_is_correct", "pass_at_k", "mean_output_tokens"])


def _read_completions(path: Path) -> dict[str, list[dict]]:
    done: dict[str, list[dict]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                done.setdefault(record["id"], []).append(record)
    return done


def generation_prompts(lm: LoadedModel, questions: list[str], fmt: PromptFormat | None = None) -> list[list[int]]:
    """Token ids of each question plus the answer instruction, in ``fmt`` (default: the model's own prompt format, the one its
    probes read: the chat template for chat models, the raw question/answer prompt for base models)."""
    fmt = fmt or lm.prompt_format()
    ids, _ = encode_prompts([q.strip() + ANSWER_INSTRUCTION for q in questions], fmt, lm.tokenizer)
    return ids


@torch.inference_mode()
def transformers_generate(lm: LoadedModel, questions: list[str], options: GenerationOptions, fmt: PromptFormat | None = None) -> list[list[tuple[str, int]]]:
    """k sampled completions per question (greedy when ``temperature`` is 0) with batched, left-padded ``generate``; (text, generated token count).
    ``fmt``: the prompt format (default: the model's own)."""
    tokenizer = lm.tokenizer
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    batch = tokenizer.pad({"input_ids": generation_prompts(lm, questions, fmt)}, padding=True, return_tensors="pt").to(lm.device)
    torch.manual_seed(options.seed)
    sampling = {"do_sample": True, "temperature": options.temperature, "top_p": options.top_p} if options.temperature > 0 else {"do_sample": False}
    output = lm.model.generate(**batch, **sampling, max_new_tokens=options.max_new_tokens, num_return_sequences=options.k, pad_token_id=tokenizer.pad_token_id)
    generated = output[:, batch["input_ids"].shape[1]:]
    stops = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    results = []
    for row in generated.tolist():
        length = next((i for i, t in enumerate(row) if t in stops), len(row))
        results.append((tokenizer.decode(row[:length], skip_special_tokens=True), length))
    return [results[i * options.k:(i + 1) * options.k] for i in range(len(questions))]


def _vllm_generate(lm: LoadedModel, questions: list[str], options: GenerationOptions) -> list[list[tuple[str, int]]]:
    """The same output from vLLM (optional; needs the vllm package, a GPU and a Hub id or model folder)."""
    try:
        from vllm import LLM, SamplingParams
    except ImportError as error:
        raise RuntimeError("backend 'vllm' needs the vllm package (pip install vllm) and a CUDA GPU.") from error
    if not torch.cuda.is_available():
        raise RuntimeError("backend 'vllm' needs a CUDA GPU; use --backend transformers on CPU.")
    engine = getattr(lm, "_vllm", None) or LLM(model=lm.display_id, seed=options.seed)
    lm._vllm = engine  # type: ignore[attr-defined]
    params = SamplingParams(n=options.k, temperature=options.temperature, top_p=options.top_p, max_tokens=options.max_new_tokens, seed=options.seed)
    outputs = engine.generate([{"prompt_token_ids": ids} for ids in generation_prompts(lm, questions)], params)
    return [[(c.text, len(c.token_ids)) for c in o.outputs] for o in outputs]


# -- multiple choice by log-likelihood -------------------------------------------------------------------------
def mc_context(stem: str) -> str:
    """The zero-shot context options are scored after (the lm-evaluation-harness ARC format)."""
    return f"Question: {stem.strip()}\nAnswer:"


@torch.inference_mode()
def option_logprobs(lm: LoadedModel, context: str, options: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Summed log-probability of each ``" " + option`` after ``context`` and its token count; one padded batch."""
    tokenizer = lm.tokenizer
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    option_ids = [tokenizer(context + " " + o, add_special_tokens=False)["input_ids"][len(context_ids):] for o in options]
    sequences = [context_ids + ids for ids in option_ids]
    width = max(len(s) for s in sequences)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in sequences], device=lm.device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=lm.device)
    logprobs = torch.log_softmax(lm.model(input_ids=input_ids, attention_mask=mask).logits.float(), dim=-1)
    totals = []
    for row, ids in enumerate(option_ids):
        positions = torch.arange(len(context_ids) - 1, len(context_ids) - 1 + len(ids), device=lm.device)
        totals.append(float(logprobs[row, positions, torch.tensor(ids, device=lm.device)].sum()))
    return np.array(totals), np.array([len(ids) for ids in option_ids])


def label_by_loglik(lm: LoadedModel, dataset: QuestionSet, out: str | Path | None = None, *, progress: bool = True) -> pd.DataFrame:
    """Per question: the option chosen by summed and by per-character log-likelihood, and whether each is correct.

    Needs ``choices`` (list of option texts), ``answer`` (letter) and ``stem`` or ``question`` columns.
    """
    frame = dataset.frame
    if "choices" not in frame or "answer" not in frame:
        raise ValueError(f"{dataset.name} has no 'choices'/'answer' columns; log-likelihood labelling is for multiple-choice data.")
    stems = frame["stem"] if "stem" in frame else frame["question"]
    rows = []
    for qid, stem, choices, answer in progress_bar(zip(frame["id"], stems, frame["choices"], frame["answer"]), total=len(frame),
                                                   desc="Scoring options", disable=not progress):
        total, _ = option_logprobs(lm, mc_context(stem), list(choices))
        per_char = total / np.array([len(" " + c) for c in choices])
        gold = "ABCDEFGHIJ".index(answer)
        rows.append({"id": str(qid), "pred": int(np.argmax(total)), "pred_norm": int(np.argmax(per_char)), "gold": gold,
                     "correct": int(np.argmax(total) == gold), "correct_norm": int(np.argmax(per_char) == gold),
                     "logprobs": json.dumps([round(float(v), 4) for v in total])})
    table = pd.DataFrame(rows)
    if out is not None:
        atomic_write_text(Path(out) / "loglik_labels.csv", table.to_csv(index=False))
    return table
