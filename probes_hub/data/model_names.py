"""One name per model across the outcome benchmarks, whose sources spell the same model differently
(``Meta-Llama-3.1-8B-Instruct``, ``meta_llama_Llama_3.1_8B_Instruct``, ``Meta-Llama-3_1-8B-Instruct``).

The rule, in order: lower case; an ``@provider`` suffix dropped; a known organisation prefix dropped
(:data:`ORGANISATIONS`, as the sources write it before the model: ``meta_llama_``, ``mistralai/``...); runs of
``-``, ``_``, ``.``, ``/`` and spaces made one ``-``; a leading ``meta-`` dropped (Meta renamed Meta-Llama-3.1 to
Llama-3.1); a trailing ``-inst`` written ``-instruct``. Two names of one benchmark that meet keep apart (the same
weights served twice are two sets of answers): the shortest name takes the common name, the others keep their
full spelling, normalised. The groups this makes on the bundled data are listed in ``docs/model-matching.md``
(``python -m probes_hub.data.model_matching_doc``), which a test keeps equal.
"""

from __future__ import annotations

import re

ORGANISATIONS = ("01_ai", "baidu", "deepseek_ai", "dphn", "google", "huggingfacetb", "huihui_ai", "ibm_granite", "internlm", "lgai_exaone",
                 "llm360", "meta", "meta_llama", "microsoft", "mistralai", "moonshotai", "nvidia", "qwen", "thudm", "wizardlm", "zero-one-ai")
"""Organisation prefixes the sources put before a model's name (followed by ``_`` or ``/``)."""


def _spelling(name: str) -> str:
    """``name`` lower case, with separators made one ``-`` (nothing dropped)."""
    return re.sub(r"[-_./\s]+", "-", name.lower()).strip("-")


def common_name(name: str) -> str:
    """The name a model gets across benchmarks (see the module's rule)."""
    name = name.lower().split("@", 1)[0]
    for organisation in sorted(ORGANISATIONS, key=len, reverse=True):
        if name.startswith((organisation + "_", organisation + "/")) and len(name) > len(organisation) + 1:
            name = name[len(organisation) + 1:]
            break
    name = _spelling(name)
    name = name.removeprefix("meta-") if name.startswith("meta-llama") else name
    return re.sub(r"-inst$", "-instruct", name)


def match_models(benchmarks: dict[str, list[str]]) -> dict[tuple[str, str], str]:
    """``(benchmark, model as the benchmark names it) -> common name`` for every model of every benchmark."""
    matched = {}
    for benchmark, models in benchmarks.items():
        taken: set[str] = set()
        for model in sorted(models, key=lambda m: (len(m), m)):
            name = common_name(model)
            if name in taken:  # a second model of this benchmark with the same common name keeps its own spelling
                name = _spelling(model)
            taken.add(name)
            matched[benchmark, model] = name
    return matched
