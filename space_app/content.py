"""The app's text: example questions and the About tab (content kept apart from layout)."""

EXAMPLES = [
    "What is 7 + 5?",
    "A farmer has 12 cows and buys 3 more each week. How many cows does he have after 4 weeks?",
    "Which part of a plant takes in water from the soil?\n\nA. leaves\nB. roots\nC. flowers\nD. seeds",
    "Find all real $x$ such that $\\sqrt{x+\\sqrt{x+\\sqrt{x}}} = 3$.",
    "Let $f(n)$ be the number of ways to write $n$ as an ordered sum of 1s and 2s. Find the remainder when $f(2024)$ is divided by 1000.",
]
ABOUT = """
## What are difficulty probes?

A *probe* is a small linear model that reads the activations of a language model at the end-of-instruction tokens of
its chat template (or, for attention probes, at every prompt token of one layer), **before it writes a single token**,
and predicts either how hard the question is (a human difficulty label: MATH level, ARC school grade) or whether a given
model will answer it correctly (its success).

## How to read the numbers
- **Difficulty**: each probe's prediction on its own label scale, with the probe's Spearman correlation on an untouched
  test split (95% bootstrap CI, n). Around 0.5 means the ranking of questions is informative, not exact. Each label shows
  the probe type (linear, multi-layer or attention) with the best cross-validated score on its training questions, and
  its *partial* Spearman given the question's length in tokens: what it knows beyond length. When that partial
  correlation's CI reaches 0, or the probe does not beat the length baseline, the app says the reading is mostly
  question length.
- **Success**: the calibrated probability that each model of the chosen pool answers correctly, with the probe's test
  ROC-AUC. The probes are *proxies*: they read the embedded model's activations to predict another model's outcome.
  The app prefers `shared` success probes: one direction for how easy a question is (learned from every model's
  outcomes on every benchmark), one slope, and an offset per model (its ability), which keeps models comparable.
  The `math` pool's models have outcomes on MATH level 5 (training) and GSM8K (test only), so on easy questions their
  probabilities lean low.
- **In-distribution score** (0-1): the share of a probe's training questions less typical than this one; below 0.02 the
  app warns that the question is unlike anything the probe was trained on.
- **Routing**: utility = P(correct) - lambda x cost / (the most expensive model's cost on this question), or the cheapest
  model whose P(correct) reaches a target. Cost is the pool file's rule (list price x output tokens for the `math` pool,
  active parameters x output tokens for `mmlu-pro-25`): each model's mean cost on the pool's training questions, scaled
  by this question's predicted answer length. The default lambda is the pool file's: the largest that still reached 95%
  of the best model's accuracy on held-out training questions. "Cheaper" compares with the pool's most accurate model.
- Every metric was computed on a test split that was never used for selecting layer, position or regularization.

## Train and upload your own
```bash
python -m probes_hub train --dataset math --label level --probe linear multilayer attention
python -m probes_hub push runs/<probe folder> --registry my-org/difficulty-probes
```
or zip the probe folder (config.json, model.safetensors) and use the Upload tab. Uploads must be trained on a built-in
dataset for this app's model; they are re-evaluated here on up to 200 test questions, and only those metrics are stored.

## Papers
- Lugoloobi & Russell (2025), *LLMs Encode How Difficult Problems Are* (linear probes on pre-generation activations decode human difficulty labels).
- Cencerrado et al. (2025), *No Answer Needed: Predicting LLM Answer Accuracy from Question-Only Linear Probes*.
- Ong et al. (2024), *RouteLLM: Learning to Route LLMs with Preference Data* (APGR, CPT).
- Hu et al. (2024), *RouterBench: A Benchmark for Multi-LLM Routing System* (AIQ).
- Wang et al. (2024), *MMLU-Pro*; Hendrycks et al. (2021), *MATH*; Clark et al. (2018), *ARC*.
"""
