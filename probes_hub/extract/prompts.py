"""Chat templating, end-of-instruction (EOI) token detection and left truncation that keeps the EOI tokens.

A prompt is assembled from three token pieces: the template's prefix (system turn, user header), the
question, and the template's suffix after the user message (the EOI tokens, e.g. SmolLM2's
``<|im_end|>\\n<|im_start|>assistant\\n``). Keeping the pieces apart makes truncation exact: only the
question is cut, from its left, so the EOI tokens always survive.
"""

from __future__ import annotations

from dataclasses import dataclass

from probes_hub.cache import sha256_text
from probes_hub.constants import MAX_PROMPT_TOKENS

RAW_PREFIX, RAW_SUFFIX = "Question:\n", "\nAnswer:"
"""Raw prompts (base models, no chat template): ``Question:\n<question>\nAnswer:``; the suffix's tokens are the EOI positions,
the model's state just before it would answer, as the chat template's suffix is for chat models."""
_SENTINELS = ("\u2063PROBESHUBQUESTIONA\u2063", "\u2063PROBESHUBQUESTIONB\u2063")


@dataclass(frozen=True)
class PromptFormat:
    """Token pieces around the question. Positions are negative offsets from the prompt's end."""

    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]
    mode: str  # "chat" (the tokenizer's chat template) or "raw" (RAW_PREFIX + question + RAW_SUFFIX)
    template_hash: str

    @property
    def eoi_positions(self) -> list[int]:
        """Positions of the EOI tokens: ``-len(suffix) .. -1``."""
        return list(range(-len(self.suffix_ids), 0))


def prompt_format(tokenizer, *, chat: bool = True, system_prompt: str | None = None) -> PromptFormat:
    """Derive the prefix and EOI suffix from the tokenizer's chat template.

    Renders the template around two different sentinel questions and checks that the text around
    them is identical, so templates that depend on the question's content are rejected loudly.

    Raises:
        ValueError: ``chat=True`` but the tokenizer has no chat template, or the template is content-dependent.
    """
    if not chat:
        bos = tokenizer.bos_token_id  # base models expect it (Gemma's GGUF tokenizer does not add it by itself)
        prefix = (bos,) if bos is not None else ()
        prefix += tuple(tokenizer(RAW_PREFIX, add_special_tokens=False)["input_ids"])
        suffix = tuple(tokenizer(RAW_SUFFIX, add_special_tokens=False)["input_ids"])
        return PromptFormat(prefix, suffix, "raw", sha256_text("raw", str(prefix), str(suffix))[:16])
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("This tokenizer has no chat template; use raw prompts (--raw) or a chat model.")
    pieces = []
    for sentinel in _SENTINELS:
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
            {"role": "user", "content": sentinel}
        ]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if text.count(sentinel) != 1:
            raise ValueError("The chat template does not render the user message verbatim exactly once.")
        pieces.append(tuple(text.split(sentinel)))
    if pieces[0] != pieces[1]:
        raise ValueError("The chat template's text around the user message depends on the message itself.")
    prefix_text, suffix_text = pieces[0]
    prefix = tuple(tokenizer(prefix_text, add_special_tokens=False)["input_ids"])
    suffix = tuple(tokenizer(suffix_text, add_special_tokens=False)["input_ids"])
    if not suffix:
        raise ValueError("The chat template puts no tokens after the user message: no EOI tokens to read.")
    return PromptFormat(prefix, suffix, "chat", sha256_text("chat", prefix_text, suffix_text)[:16])


def eoi_tokens(fmt: PromptFormat, tokenizer) -> list[str]:
    """Readable names of the tokens at :attr:`PromptFormat.eoi_positions` (for configs and reports)."""
    return [tokenizer.convert_ids_to_tokens(int(i)) for i in fmt.suffix_ids]


def encode_prompts(
    questions: list[str], fmt: PromptFormat, tokenizer, *, max_length: int = MAX_PROMPT_TOKENS
) -> tuple[list[list[int]], list[bool]]:
    """Token ids of each templated question, cutting the question from its left to fit ``max_length``.

    Questions are stripped of surrounding whitespace first: leading whitespace would otherwise merge with
    the template's newline into a token that joint tokenization of the whole prompt would not produce.

    Returns:
        (ids per question, whether each was truncated).
    """
    budget = max_length - len(fmt.prefix_ids) - len(fmt.suffix_ids)
    if budget < 1:
        raise ValueError(f"max_length={max_length} leaves no room for the question (template uses {max_length - budget}).")
    encoded = tokenizer([q.strip() for q in questions], add_special_tokens=False)["input_ids"]
    prompts, truncated = [], []
    for ids in encoded:
        cut = len(ids) > budget
        body = ids[len(ids) - budget :] if cut else ids
        prompts.append([*fmt.prefix_ids, *body, *fmt.suffix_ids])
        truncated.append(cut)
    return prompts, truncated
