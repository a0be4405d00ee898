"""NEFTune: noise bounded by alpha / sqrt(L_e * d) per example, whatever the batch layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from imrepro.train.neftune import NEFTune, neftune_scale
from imrepro.train.packing import Example, collate_packed, collate_padded, model_inputs

VOCAB = 512
HIDDEN = 64
ALPHA = 5.0
PAD_ID = 0


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                         attn_implementation="sdpa")
    return LlamaForCausalLM(config)


def example(length: int, seed: int) -> Example:
    rng = np.random.default_rng(seed)
    weights = np.ones(length, np.float32)
    weights[0] = 0
    return Example(rng.integers(1, VOCAB, length), weights, np.ones(length, bool))


def bound(length: int) -> float:
    return ALPHA / math.sqrt(length * HIDDEN)


@pytest.fixture()
def embedding():
    return tiny_llama().get_input_embeddings()


def noise_of(embedding, batch, seed: int = 0, training: bool = True) -> torch.Tensor:
    """Noise NEFTune adds to the embeddings of ``batch``: hooked output minus the plain lookup."""
    embedding.train(training)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad(), NEFTune(embedding) as neftune, neftune.active(neftune_scale(batch, ALPHA, HIDDEN), generator):
        noisy = embedding(batch.input_ids)
    return noisy - embedding.weight[batch.input_ids].detach()


def test_noise_is_bounded_and_reaches_the_bound(embedding):
    n = 400
    noise = noise_of(embedding, collate_packed([example(n, 0)]))
    assert noise.abs().max() <= bound(n) + 1e-6
    assert noise.abs().max() > 0.9 * bound(n)
    assert abs(noise.mean().item()) < 0.05 * bound(n)


def test_packed_examples_get_their_own_scale(embedding):
    lengths = [12, 300, 40]
    batch = collate_packed([example(n, i) for i, n in enumerate(lengths)])
    noise = noise_of(embedding, batch)[0]
    for e, n in enumerate(lengths):
        segment = noise[batch.example_index == e]
        assert segment.abs().max() <= bound(n) + 1e-6
        assert segment.abs().max() > 0.9 * bound(n)


def test_padding_gets_no_noise_and_rows_their_own_scale(embedding):
    lengths = [12, 300, 40]
    batch = collate_padded([example(n, i) for i, n in enumerate(lengths)], PAD_ID)
    noise = noise_of(embedding, batch)
    for row, n in enumerate(lengths):
        assert (noise[row, n:] == 0).all()
        assert bound(n) * 0.9 < noise[row, :n].abs().max() <= bound(n) + 1e-6


def test_scale_is_the_same_alone_packed_or_padded():
    examples = [example(n, i) for i, n in enumerate([7, 50, 23])]
    packed = neftune_scale(collate_packed(examples), ALPHA, HIDDEN)[0, :, 0]
    padded = neftune_scale(collate_padded(examples, PAD_ID), ALPHA, HIDDEN)[..., 0]
    start = 0
    for row, e in enumerate(examples):
        alone = neftune_scale(collate_packed([e]), ALPHA, HIDDEN)[0, :, 0]
        n = len(e)
        assert torch.equal(packed[start : start + n], alone)
        assert torch.equal(padded[row, :n], alone)
        assert torch.allclose(alone, torch.full((n,), bound(n)))
        start += n


def test_eval_mode_adds_no_noise(embedding):
    batch = collate_packed([example(30, 0)])
    assert (noise_of(embedding, batch, training=False) == 0).all()


def test_generator_makes_noise_reproducible(embedding):
    batch = collate_packed([example(30, 0), example(9, 1)])
    assert torch.equal(noise_of(embedding, batch, seed=3), noise_of(embedding, batch, seed=3))
    assert not torch.equal(noise_of(embedding, batch, seed=3), noise_of(embedding, batch, seed=4))


def test_scale_lifetime_and_hook_removal(embedding):
    """active() holds the scale for its block, set_scale() for one forward; then a forward raises."""
    batch = collate_packed([example(10, 0)])
    embedding.train()
    with NEFTune(embedding, ALPHA) as neftune:
        with neftune.active(neftune.scale_for(batch)):
            embedding(batch.input_ids)
            embedding(batch.input_ids)
        with pytest.raises(RuntimeError, match="no noise scale"):
            embedding(batch.input_ids)
        neftune.set_scale(neftune_scale(batch, ALPHA, HIDDEN))
        embedding(batch.input_ids)
        with pytest.raises(RuntimeError, match="no noise scale"):
            embedding(batch.input_ids)
    assert torch.equal(embedding(batch.input_ids), embedding.weight[batch.input_ids])


def test_scale_for_uses_alpha_and_embedding_width(embedding):
    batch = collate_padded([example(10, 0), example(4, 1)], PAD_ID)
    assert torch.equal(NEFTune(embedding, ALPHA).scale_for(batch), neftune_scale(batch, ALPHA, HIDDEN))


def test_hook_on_the_model_changes_training_forward_only():
    model = tiny_llama()
    batch = collate_packed([example(20, 0), example(15, 1)])
    inputs = model_inputs(batch, "sdpa")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad(), NEFTune(model, generator=generator) as neftune:  # hooks model.get_input_embeddings()
        assert neftune.embedding is model.get_input_embeddings()
        model.eval()
        clean = model(**inputs).logits
        assert torch.equal(model(**inputs).logits, clean)
        model.train()
        with neftune.active(neftune_scale(batch, ALPHA, model.config.hidden_size)):
            noisy = model(**inputs).logits
        with neftune.active(neftune_scale(batch, 0.0, model.config.hidden_size)):
            zero_alpha = model(**inputs).logits
    assert (noisy - clean).abs().max() > 1e-4
    assert torch.allclose(zero_alpha, clean, atol=1e-6)
