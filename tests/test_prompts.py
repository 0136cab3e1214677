"""EOI detection on two chat templates, raw prompts, and left truncation that keeps the EOI tokens."""

import pytest

from probes_hub.extract.prompts import encode_prompts, eoi_tokens, prompt_format

from .conftest import tiny_tokenizer


def test_eoi_detection_on_gemma_style_template():
    tokenizer = tiny_tokenizer()
    fmt = prompt_format(tokenizer)
    assert eoi_tokens(fmt, tokenizer) == ["<end_of_turn>", "\n", "<start_of_turn>", "model", "\n"]
    assert fmt.eoi_positions == [-5, -4, -3, -2, -1]
    assert tokenizer.convert_ids_to_tokens(list(fmt.prefix_ids)) == ["<bos>", "<start_of_turn>", "user", "\n"]


def test_eoi_detection_on_smollm2_template(smollm2):
    fmt = prompt_format(smollm2.tokenizer)
    assert "".join(eoi_tokens(fmt, smollm2.tokenizer)) == "<|im_end|>Ċ<|im_start|>assistantĊ"
    assert fmt.eoi_positions == list(range(-len(fmt.suffix_ids), 0))


def test_piecewise_encoding_equals_joint_tokenization(smollm2):
    tokenizer = smollm2.tokenizer
    fmt = prompt_format(tokenizer)
    questions = ["What is 2+2?", "  Solve $x^2 = 4$.\n", "Héllo wörld, café?"]
    ids, truncated = encode_prompts(questions, fmt, tokenizer)
    for question, got in zip(questions, ids):
        text = tokenizer.apply_chat_template([{"role": "user", "content": question.strip()}], tokenize=False, add_generation_prompt=True)
        assert got == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert truncated == [False] * 3


def test_left_truncation_keeps_eoi_tokens_and_question_end():
    tokenizer = tiny_tokenizer()
    fmt = prompt_format(tokenizer)
    question = " ".join(["one"] * 50 + ["two", "three", "four"])
    (ids,), (truncated,) = encode_prompts([question], fmt, tokenizer, max_length=16)
    assert truncated and len(ids) == 16
    assert tuple(ids[-len(fmt.suffix_ids):]) == fmt.suffix_ids
    assert tuple(ids[: len(fmt.prefix_ids)]) == fmt.prefix_ids
    body = tokenizer.convert_ids_to_tokens(ids[len(fmt.prefix_ids): -len(fmt.suffix_ids)])
    assert body[-3:] == ["two", "three", "four"] and len(body) == 16 - len(fmt.prefix_ids) - len(fmt.suffix_ids)


def test_max_length_too_small_is_a_clear_error():
    fmt = prompt_format(tiny_tokenizer())
    with pytest.raises(ValueError, match="leaves no room"):
        encode_prompts(["one two"], fmt, tiny_tokenizer(), max_length=8)


def test_raw_prompts_end_with_the_answer_cue_whose_tokens_are_read():
    tokenizer = tiny_tokenizer()
    fmt = prompt_format(tokenizer, chat=False)
    assert fmt.mode == "raw" and fmt.suffix_ids == tuple(tokenizer("\nAnswer:", add_special_tokens=False)["input_ids"])
    assert fmt.eoi_positions == list(range(-len(fmt.suffix_ids), 0)) and fmt.suffix_ids
    (ids,), _ = encode_prompts(["what is one plus two"], fmt, tokenizer)
    assert tuple(ids[-len(fmt.suffix_ids):]) == fmt.suffix_ids and tokenizer.convert_ids_to_tokens(ids)[-len(fmt.suffix_ids) - 1] == "two"


def test_tokenizer_without_template_needs_raw_mode():
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        prompt_format(tokenizer)
