"""Extraction: agreement with output_hidden_states, packed and padded batches, prefix reuse, early exit, disk cache."""

import numpy as np
import pytest
import torch

import probes_hub.extract.activations as activations
from probes_hub.extract.activations import cached_extract, extract, length_batches
from probes_hub.extract.packing import pack_groups
from probes_hub.extract.prompts import encode_prompts, prompt_format

from .conftest import tiny_tokenizer

QUESTIONS = ["what is one plus two", "how many apples", "find x", "if x is two and y is three what is x times y plus one minus z",
             "the cost of one apple is two what is the total cost of ten apples", "solve"]


def _prompts(lm):
    fmt = prompt_format(lm.tokenizer)
    ids, _ = encode_prompts(QUESTIONS, fmt, lm.tokenizer)
    return fmt, ids


def test_matches_output_hidden_states(tiny):
    fmt, ids = _prompts(tiny)
    layers = [0, 2]
    acts = extract(tiny, ids, layers, fmt.eoi_positions, progress=False)
    assert acts.shape == (len(ids), 2, len(fmt.eoi_positions), 32)
    with torch.no_grad():
        for row, prompt in enumerate(ids):
            hidden = tiny.model(input_ids=torch.tensor([prompt]), output_hidden_states=True).hidden_states
            for li, layer in enumerate(layers):
                np.testing.assert_allclose(acts[row, li], hidden[layer + 1][0, fmt.eoi_positions].numpy(), atol=1e-5)
    assert type(tiny.decoder_layers[2].mlp).__name__ == "LlamaMLP"  # the deepest block's row-limited MLP is put back


def test_packed_padded_and_single_prompt_batches_agree(tiny):
    fmt, ids = _prompts(tiny)
    assert len({len(p) for p in ids}) > 1, "prompts must differ in length so that batches are padded"
    single = extract(tiny, ids, [0, 1, 3], fmt.eoi_positions, packed=False, max_batch_size=1, progress=False)
    padded = extract(tiny, ids, [0, 1, 3], fmt.eoi_positions, packed=False, max_batch_tokens=10_000, progress=False)
    packed = extract(tiny, ids, [0, 1, 3], fmt.eoi_positions, packed=True, max_batch_tokens=40, progress=False)  # several packs
    np.testing.assert_allclose(padded, single, atol=1e-5)
    np.testing.assert_allclose(packed, single, atol=1e-5)


@pytest.mark.parametrize("packed", [True, False])
def test_shared_prefix_reuse_gives_the_same_activations(tiny, packed):
    fmt, ids = _prompts(tiny)
    assert len(fmt.prefix_ids) > 0
    tiny.prefix_states.clear()
    plain = extract(tiny, ids, [0, 3], fmt.eoi_positions, packed=False, max_batch_size=1, progress=False)
    shared = extract(tiny, ids, [0, 3], fmt.eoi_positions, shared_prefix=fmt.prefix_ids, packed=packed, progress=False)
    np.testing.assert_allclose(shared, plain, atol=1e-5)
    assert len(tiny.prefix_states[tuple(fmt.prefix_ids)]) == 4  # blocks 0..3, kept for the next call
    again = extract(tiny, ids, [1], fmt.eoi_positions, shared_prefix=fmt.prefix_ids, packed=packed, progress=False)  # shallower: reuses the stored states
    np.testing.assert_allclose(again, extract(tiny, ids, [1], fmt.eoi_positions, packed=False, progress=False), atol=1e-5)


def test_pack_groups_respect_the_token_budget():
    assert pack_groups([3, 4, 2, 9, 1, 1], 7) == [[0, 1], [2], [3], [4, 5]]  # 9 > 7 goes alone
    assert pack_groups([], 7) == []


def test_model_that_cannot_be_packed_falls_back_to_padding():
    """A tiny random Gemma-2 (logit soft-capping, sliding windows): packing is refused, padding gives the right values."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from probes_hub.extract.models import LoadedModel

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    config = Gemma2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, head_dim=8, max_position_embeddings=256, pad_token_id=0)
    lm = LoadedModel(Gemma2ForCausalLM(config).eval(), tokenizer, "tiny-gemma2:float32", "test/tiny-gemma2", torch.device("cpu"), torch.float32)
    fmt, ids = _prompts(lm)
    acts = extract(lm, ids, [0, 1], fmt.eoi_positions, progress=False)
    with torch.no_grad():
        for row, prompt in enumerate(ids):
            hidden = lm.model(input_ids=torch.tensor([prompt]), output_hidden_states=True).hidden_states
            np.testing.assert_allclose(acts[row, 0], hidden[1][0, fmt.eoi_positions].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="cannot be extracted packed"):
        extract(lm, ids, [0], fmt.eoi_positions, packed=True, progress=False)


def test_shared_prefix_that_a_prompt_lacks_is_ignored(tiny):
    fmt, ids = _prompts(tiny)
    other = [*ids, [fmt.prefix_ids[0] + 1, *ids[0][1:]]]  # one prompt starts differently
    np.testing.assert_allclose(extract(tiny, other, [2], fmt.eoi_positions, shared_prefix=fmt.prefix_ids, progress=False),
                               extract(tiny, other, [2], fmt.eoi_positions, progress=False), atol=1e-6)


def test_forward_pass_stops_after_deepest_layer(tiny):
    fmt, ids = _prompts(tiny)
    calls = {"deeper": 0, "head": 0}
    hooks = [tiny.decoder_layers[2].register_forward_hook(lambda *a: calls.__setitem__("deeper", calls["deeper"] + 1)),
             tiny.model.lm_head.register_forward_hook(lambda *a: calls.__setitem__("head", calls["head"] + 1))]
    try:
        extract(tiny, ids, [0, 1], fmt.eoi_positions, progress=False)
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == {"deeper": 0, "head": 0}


def test_length_batches_respect_budget_and_cover_every_prompt():
    lengths = [5, 50, 7, 48, 6, 49, 100]
    batches = length_batches(lengths, max_batch_tokens=120, max_batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3 and len(batch) * max(lengths[i] for i in batch) <= max(120, max(lengths[i] for i in batch))


def test_bad_layers_and_positions_are_rejected(tiny):
    fmt, ids = _prompts(tiny)
    with pytest.raises(ValueError, match="layers must be within"):
        extract(tiny, ids, [4], [-1], progress=False)
    with pytest.raises(ValueError, match="positions"):
        extract(tiny, ids, [0], [0], progress=False)


def test_cache_hit_skips_the_model_and_adds_new_layers(tiny, monkeypatch, capsys):
    fmt, _ = _prompts(tiny)
    first = cached_extract(tiny, fmt, QUESTIONS, [0, 1], fmt.eoi_positions, data_hash="cache-test", progress=False)
    calls = []
    real_extract = activations.extract
    monkeypatch.setattr(activations, "extract", lambda lm, ids, layers, *a, **k: calls.append(list(layers)) or real_extract(lm, ids, layers, *a, **k))
    again = cached_extract(tiny, fmt, QUESTIONS, [1, 0], fmt.eoi_positions, data_hash="cache-test", progress=True)
    assert calls == [] and "loaded from cache" in capsys.readouterr().err
    np.testing.assert_array_equal(again, first[:, ::-1])
    more = cached_extract(tiny, fmt, QUESTIONS, [0, 3], fmt.eoi_positions, data_hash="cache-test", progress=False)
    assert calls == [[3]]
    np.testing.assert_array_equal(more[:, 0], first[:, 0])
    fewer = cached_extract(tiny, fmt, QUESTIONS[:4], [0], fmt.eoi_positions, data_hash="cache-test", progress=False)  # a reused key
    assert fewer.shape[0] == 4 and calls[-1] == [0]  # never another question set's rows
    np.testing.assert_allclose(fewer[:, 0], first[:4, 0], atol=1e-5)
