"""Packing: pack planning, collation, the block-causal mask, and isolation of packed examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from imrepro.data.chat_format import Role
from imrepro.train.packing import (
    Example,
    PackedBatch,
    PaddedBatch,
    block_causal_mask,
    collate_packed,
    collate_padded,
    model_inputs,
    plan_packs,
)

VOCAB = 512
PAD_ID = 0
LENGTHS = [(4, 6), (15, 3), (2, 20), (9, 9)]  # (prompt content, response content) tokens


def tiny_llama(attn_implementation: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                         attn_implementation=attn_implementation)
    return LlamaForCausalLM(config).eval()


def chat_roles(n_prompt: int, n_response: int) -> np.ndarray:
    """Role array of a one-turn Tulu example: BOS, user header/content, assistant header/content, EOS."""
    parts = [(Role.BOS, 1), (Role.USER_HEADER, 3), (Role.USER_CONTENT, n_prompt), (Role.SEPARATOR, 1),
             (Role.ASSISTANT_HEADER, 3), (Role.ASSISTANT_CONTENT, n_response), (Role.EOS, 1)]
    return np.concatenate([np.full(n, role, np.uint8) for role, n in parts])


def make_examples(policy: str = "im", seed: int = 0) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for n_prompt, n_response in LENGTHS:
        roles = chat_roles(n_prompt, n_response)
        out.append(Example.from_roles(rng.integers(1, VOCAB, len(roles)), roles, policy))
    return out


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def model(request):
    return tiny_llama(request.param)


# --- planning --------------------------------------------------------------------------------


def test_plan_packs_keeps_order_and_budget():
    assert plan_packs([3, 5, 2, 7, 1, 12, 4], 10) == [[0, 1, 2], [3, 4], [5], [6]]
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 60, 500).tolist()
    for budget in (1, 50, 64, 200, 10_000):
        packs = plan_packs(lengths, budget)
        assert [i for pack in packs for i in pack] == list(range(len(lengths)))
        for pack in packs:
            total = sum(lengths[i] for i in pack)
            assert total <= budget or len(pack) == 1
        # Greedy: the next pack's first example did not fit into the previous pack.
        for pack, following in zip(packs, packs[1:], strict=False):
            assert sum(lengths[i] for i in pack) + lengths[following[0]] > budget


def test_plan_packs_rejects_bad_input():
    with pytest.raises(ValueError):
        plan_packs([3, 0], 10)
    with pytest.raises(ValueError):
        plan_packs([3], 0)
    assert plan_packs([], 10) == []


# --- collation -------------------------------------------------------------------------------


def test_collate_packed_fields():
    examples = make_examples()
    batch = collate_packed(examples)
    lens = [len(e) for e in examples]
    assert batch.seq_lens == lens and batch.n_examples == len(examples)
    assert batch.input_ids.shape == (1, sum(lens)) and batch.input_ids.dtype == torch.int64
    assert batch.cu_seqlens.tolist() == np.concatenate([[0], np.cumsum(lens)]).tolist()
    assert batch.cu_seqlens.dtype == torch.int32
    assert batch.position_ids[0].tolist() == [p for n in lens for p in range(n)]
    assert batch.example_index.tolist() == [i for i, n in enumerate(lens) for _ in range(n)]
    assert torch.equal(batch.weights[0], torch.from_numpy(np.concatenate([e.weights for e in examples])))
    assert torch.equal(batch.response[0], torch.from_numpy(np.concatenate([e.response for e in examples])))
    # No label is predicted across an example boundary.
    assert (batch.weights[0, batch.cu_seqlens[:-1].long()] == 0).all()


def test_collate_rejects_trained_first_token():
    bad = Example(np.arange(1, 5), np.ones(4, np.float32), np.ones(4, bool))
    with pytest.raises(ValueError, match="first token"):
        collate_packed([make_examples()[0], bad])
    with pytest.raises(ValueError, match="first token"):
        collate_padded([bad], PAD_ID)


def test_example_from_roles_marks_response_by_it_policy():
    roles = chat_roles(3, 4)
    example = Example.from_roles(np.arange(len(roles)), roles, "weighted", prompt_weight=0.25)
    trained_response = {Role.ASSISTANT_CONTENT, Role.EOS}
    assert example.response.tolist() == [r in trained_response for r in roles]
    assert set(example.weights[~example.response].tolist()) == {0.0, 0.25}
    assert (example.weights[example.response] == 1).all()


def test_collate_padded_fields():
    examples = make_examples()
    batch = collate_padded(examples, PAD_ID)
    lens = [len(e) for e in examples]
    assert batch.input_ids.shape == (len(examples), max(lens))
    assert batch.attention_mask.sum(1).tolist() == lens
    for row, e in enumerate(examples):
        n = len(e)
        assert batch.input_ids[row, :n].tolist() == e.input_ids.tolist()
        assert (batch.input_ids[row, n:] == PAD_ID).all()
        assert (batch.weights[row, n:] == 0).all() and not batch.response[row, n:].any()
        assert batch.position_ids[row, :n].tolist() == list(range(n))
        assert (batch.example_index[row] == row).all()


def test_batch_to_device_keeps_fields():
    batch = collate_packed(make_examples()).to("cpu")
    assert isinstance(batch, PackedBatch) and batch.seq_lens == [len(e) for e in make_examples()]
    assert isinstance(collate_padded(make_examples(), PAD_ID).to("cpu"), PaddedBatch)


# --- mask and model inputs -------------------------------------------------------------------


def test_block_causal_mask_matches_definition():
    seq_lens = [3, 1, 4]
    mask = block_causal_mask(seq_lens, torch.float32)
    assert mask.shape == (1, 1, 8, 8)
    example = [e for e, n in enumerate(seq_lens) for _ in range(n)]
    expected = torch.tensor([[j <= i and example[i] == example[j] for j in range(8)] for i in range(8)])
    assert torch.equal(mask[0, 0] == 0, expected)
    assert (mask[0, 0][~expected] == torch.finfo(torch.float32).min).all()
    assert block_causal_mask(seq_lens, torch.bfloat16).dtype == torch.bfloat16


def test_model_inputs_keys():
    packed = collate_packed(make_examples())
    padded = collate_padded(make_examples(), PAD_ID)
    assert set(model_inputs(packed, "flash_attention_2")) == {"input_ids", "position_ids"}
    for impl in ("sdpa", "eager"):
        inputs = model_inputs(packed, impl, torch.bfloat16)
        assert inputs["attention_mask"].shape == (1, 1, packed.n_tokens, packed.n_tokens)
        assert inputs["attention_mask"].dtype == torch.bfloat16
    for impl in ("flash_attention_2", "sdpa", "eager"):
        assert model_inputs(padded, impl)["attention_mask"] is padded.attention_mask
    with pytest.raises(ValueError):
        model_inputs(packed, "flex")


# --- isolation of packed examples ------------------------------------------------------------


@torch.no_grad()
def separate_logits(model, examples) -> torch.Tensor:
    """Logits of each example run alone (batch size 1), concatenated along the sequence."""
    return torch.cat([model(input_ids=torch.from_numpy(e.input_ids)[None]).logits for e in examples], 1)


@torch.no_grad()
def test_packed_logits_match_separate_forwards(model):
    examples = make_examples()
    batch = collate_packed(examples)
    packed = model(**model_inputs(batch, model.config._attn_implementation)).logits
    assert (packed - separate_logits(model, examples)).abs().max() < 1e-4


@torch.no_grad()
def test_padded_logits_match_separate_forwards(model):
    examples = make_examples()
    batch = collate_padded(examples, PAD_ID)
    logits = model(**model_inputs(batch, model.config._attn_implementation)).logits
    real = torch.cat([logits[row, : len(e)] for row, e in enumerate(examples)])[None]
    assert (real - separate_logits(model, examples)).abs().max() < 1e-4


@torch.no_grad()
def test_position_ids_alone_do_not_isolate_examples(model):
    """Without the mask (and with the default KV cache) later examples attend to earlier ones."""
    examples = make_examples()
    batch = collate_packed(examples)
    leaky = model(input_ids=batch.input_ids, position_ids=batch.position_ids).logits
    reference = separate_logits(model, examples)
    first = batch.seq_lens[0]
    assert (leaky[:, :first] - reference[:, :first]).abs().max() < 1e-4  # the first example sees only itself
    assert (leaky - reference).abs().max() > 0.05


@torch.no_grad()
def test_block_mask_isolates_examples_even_with_the_cache(model):
    """The explicit mask works on its own, independent of transformers' packing inference."""
    examples = make_examples()
    batch = collate_packed(examples)
    mask = block_causal_mask(batch.seq_lens, torch.float32)
    logits = model(input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=mask,
                   use_cache=True).logits
    assert (logits - separate_logits(model, examples)).abs().max() < 1e-4


@torch.no_grad()
def test_position_ids_isolate_only_without_cache(model):
    """transformers 5.19 infers packing from position_ids when no cache is built (use_cache=False).

    Documented, not relied on: model_inputs passes the explicit mask for sdpa/eager anyway.
    """
    examples = make_examples()
    batch = collate_packed(examples)
    logits = model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False).logits
    assert (logits - separate_logits(model, examples)).abs().max() < 1e-4
