"""The fast training paths equal the reference paths: every attention implementation of a packed
batch gives the padded batch's loss and gradients, and logits at trained positions only give the
full-logits loss and gradients (every policy, both normalisations, KL, NEFTune, Gemma's final
logit soft-capping). Tolerances as tests/test_loss.py: loss 1e-5, gradient cosine 0.9999."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from imrepro.data.chat_format import Role
from imrepro.train import attention  # noqa: F401  (registers sdpa_varlen)
from imrepro.train.attention import flex_attention_available, resolve_training_attention
from imrepro.train.loss import (
    loss_numerator,
    step_denominator,
    token_nll,
    token_nll_at,
    trained_positions,
)
from imrepro.train.neftune import NEFTune, neftune_scale
from imrepro.train.packing import Example, collate_packed, collate_padded, model_inputs

VOCAB = 512
PAD_ID = 0
LENGTHS = [(4, 6), (15, 3), (2, 20), (9, 9), (30, 2)]
CPU_IMPLEMENTATIONS = ["sdpa_varlen", "sdpa", "eager"]


def tiny_llama(attn_implementation: str, **extra) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         use_cache=False, **extra)
    model = LlamaForCausalLM(config)
    model.set_attn_implementation(attn_implementation)
    return model.eval()  # no dropout; gradients flow all the same


def chat_roles(n_prompt: int, n_response: int) -> np.ndarray:
    parts = [(Role.BOS, 1), (Role.USER_HEADER, 3), (Role.USER_CONTENT, n_prompt), (Role.SEPARATOR, 1),
             (Role.ASSISTANT_HEADER, 3), (Role.ASSISTANT_CONTENT, n_response), (Role.EOS, 1)]
    return np.concatenate([np.full(n, role, np.uint8) for role, n in parts])


def make_examples(policy: str, prompt_weight: float | None = None) -> list[Example]:
    rng = np.random.default_rng(0)
    return [Example.from_roles(rng.integers(1, VOCAB, len(roles)), roles, policy, prompt_weight)
            for roles in (chat_roles(p, r) for p, r in LENGTHS)]


def loss_and_grad(model, batch, normalisation="sequence_mean", trained_only=False, reference=None,
                  noise=None):
    """The trainer's micro-batch objective (numerator / denominator) and the flat gradient."""
    model.zero_grad(set_to_none=True)
    inputs = model_inputs(batch, model.config._attn_implementation)
    if noise is not None:
        noise.set_scale(neftune_scale(batch, 5.0, model.config.hidden_size))
        noise.generator = torch.Generator().manual_seed(7)
    if trained_only:
        keep = trained_positions(batch.weights)
        nll = token_nll_at(model(**inputs, logits_to_keep=keep).logits, batch.input_ids, keep)
    else:
        nll = token_nll(model(**inputs).logits, batch.input_ids)
    objective = nll if reference is None else nll + 0.1 * (-nll - reference)
    packed = batch.input_ids.shape[0] == 1
    index = batch.example_index if packed else None
    weights = batch.weights
    per_example = torch.split(weights[0], batch.seq_lens) if packed else weights
    loss = loss_numerator(objective, weights, index, normalisation) / step_denominator(per_example, normalisation)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def assert_same(a, b):
    (loss_a, grad_a), (loss_b, grad_b) = a, b
    assert loss_a == pytest.approx(loss_b, abs=1e-5)
    assert torch.nn.functional.cosine_similarity(grad_a, grad_b, dim=0) >= 0.9999
    assert (grad_a - grad_b).abs().max() < 1e-5


# --- attention -----------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", CPU_IMPLEMENTATIONS)
@pytest.mark.parametrize("normalisation", ["sequence_mean", "token_global"])
def test_packed_attention_equals_padded(impl, normalisation):
    examples = make_examples("weighted", prompt_weight=0.3)
    padded = loss_and_grad(tiny_llama("sdpa"), collate_padded(examples, PAD_ID), normalisation)
    assert_same(loss_and_grad(tiny_llama(impl), collate_packed(examples), normalisation), padded)


def test_sdpa_varlen_keeps_sliding_windows_inside_each_example():
    """A window shorter than the examples: per-example windowed SDPA equals the padded path."""
    examples = make_examples("im")
    extra = {"sliding_window": 8}  # Llama ignores it; set on the attention modules below
    models = [tiny_llama(impl, **extra) for impl in ("sdpa_varlen", "eager")]
    for model in models:
        for layer in model.model.layers:
            layer.self_attn.sliding_window = 8
    varlen = loss_and_grad(models[0], collate_packed(examples))

    # Reference: each example alone with an explicit windowed causal mask (eager, additive).
    def windowed(n):
        i = torch.arange(n)
        allowed = (i[:, None] >= i[None]) & (i[:, None] - i[None] < 8)
        return torch.zeros(n, n).masked_fill(~allowed, torch.finfo(torch.float32).min)[None, None]

    reference = models[1]
    reference.zero_grad(set_to_none=True)
    total, denominator = 0.0, len(examples)
    for e in examples:
        ids = torch.from_numpy(e.input_ids)[None]
        nll = token_nll(reference(input_ids=ids, attention_mask=windowed(len(e))).logits, ids)
        loss = loss_numerator(nll, torch.from_numpy(e.weights)[None]) / denominator
        loss.backward()
        total += loss.item()
    grad = torch.cat([p.grad.flatten() for p in reference.parameters() if p.grad is not None])
    assert_same(varlen, (total, grad))


@torch.no_grad()
def test_sdpa_varlen_without_cu_seqlens_is_plain_sdpa():
    """Padded batches (and evaluation) reach sdpa_varlen without cu_seq_lens: exact SDPA."""
    batch = collate_padded(make_examples("it"), PAD_ID)
    inputs = model_inputs(batch, "sdpa")
    a = tiny_llama("sdpa_varlen")(**inputs).logits
    b = tiny_llama("sdpa")(**inputs).logits
    assert (a - b).abs().max() < 1e-5


def test_resolution():
    assert resolve_training_attention("auto", True, "cpu") == "sdpa_varlen"
    assert resolve_training_attention("auto", False, "cpu") == "sdpa"
    assert resolve_training_attention("eager", True, "cpu") == "eager"
    assert not flex_attention_available("cpu")
    with pytest.raises(ValueError, match="no CPU backward"):
        resolve_training_attention("flex_attention", True, "cpu")
    with pytest.raises(ValueError, match="is not one of"):
        resolve_training_attention("flash", True, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention trains on CUDA only (no CPU backward)")
def test_flex_attention_equals_padded_on_gpu():
    examples = make_examples("im")
    padded = loss_and_grad(tiny_llama("sdpa").cuda(), collate_padded(examples, PAD_ID).to("cuda"))
    assert_same(loss_and_grad(tiny_llama("flex_attention").cuda(), collate_packed(examples).to("cuda")), padded)


# --- logits at trained positions --------------------------------------------------------------------


def test_trained_positions_and_nll_at():
    examples = make_examples("it")
    batch = collate_packed(examples)
    keep = trained_positions(batch.weights)
    assert torch.equal(keep + 1, torch.nonzero(batch.weights[0] > 0).squeeze(1))
    logits = torch.randn(1, batch.n_tokens, VOCAB)
    full = token_nll(logits, batch.input_ids)
    kept = token_nll_at(logits[:, keep], batch.input_ids, keep)
    trained = batch.weights > 0
    assert torch.equal(kept[trained], full[trained]) and (kept[~trained] == 0).all()
    padded = collate_padded(examples, PAD_ID)  # padded rows: the union of the rows' trained columns
    keep = trained_positions(padded.weights)
    assert torch.equal(keep + 1, torch.nonzero((padded.weights > 0).any(0)).squeeze(1))


@pytest.mark.parametrize("policy", ["it", "im", "im_authors", "weighted"])
@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_trained_logits_equal_full_logits(policy, layout):
    examples = make_examples(policy, 0.3 if policy == "weighted" else None)
    batch = collate_packed(examples) if layout == "packed" else collate_padded(examples, PAD_ID)
    model = tiny_llama("sdpa_varlen")
    for normalisation in ("sequence_mean", "token_global"):
        assert_same(loss_and_grad(model, batch, normalisation, trained_only=True),
                    loss_and_grad(model, batch, normalisation))


def test_trained_logits_with_kl_and_neftune():
    batch = collate_packed(make_examples("it"))
    model = tiny_llama("sdpa_varlen")
    reference = -torch.rand(batch.input_ids.shape) * 5
    assert_same(loss_and_grad(model, batch, reference=reference, trained_only=True),
                loss_and_grad(model, batch, reference=reference))
    model.train()  # NEFTune adds noise in training mode only (no dropout in this config)
    with NEFTune(model) as noise:
        noisy = loss_and_grad(model, batch, noise=noise, trained_only=True)
        assert_same(noisy, loss_and_grad(model, batch, noise=noise))
    assert abs(noisy[0] - loss_and_grad(model, batch)[0]) > 1e-4  # the noise did act


def test_trained_logits_keep_gemma_final_soft_capping():
    """Gemma 3 caps the final logits (tanh(x / c) * c) after the LM head: also on the kept positions."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                              max_position_embeddings=256, final_logit_softcapping=2.0, use_cache=False,
                              sliding_window=16, pad_token_id=PAD_ID)
    model = Gemma3ForCausalLM(config).eval()
    model.set_attn_implementation("sdpa_varlen")
    batch = collate_packed(make_examples("im"))
    logits = model(**model_inputs(batch, "sdpa_varlen")).logits
    assert logits.abs().max() <= 2.0  # the cap is active in this model
    assert_same(loss_and_grad(model, batch, trained_only=True), loss_and_grad(model, batch))
    # and the packed Gemma (sliding window 16 < example lengths) equals its padded eager self
    eager = Gemma3ForCausalLM(copy.deepcopy(config)).eval()  # its own config: the implementation lives there
    eager.load_state_dict(model.state_dict())
    eager.set_attn_implementation("eager")
    assert_same(loss_and_grad(model, batch), loss_and_grad(eager, collate_padded(make_examples("im"), PAD_ID)))
    # whereas the dense block mask ignores the window (why the trainer refuses sdpa/eager packs then)
    dense = loss_and_grad(eager, batch)[0]
    assert abs(dense - loss_and_grad(model, batch)[0]) > 1e-3


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="inductor needs a C++ compiler")
@torch.no_grad()
def test_flex_attention_forward_on_cpu_isolates_examples():
    """FlexAttention's CPU forward (compiled by inductor, ~11 s once) is exact too; it has no CPU
    backward, hence never chosen for CPU training."""
    examples = make_examples("im")
    separate = torch.cat([tiny_llama("sdpa")(input_ids=torch.from_numpy(e.input_ids)[None]).logits
                          for e in examples], 1)
    packed = tiny_llama("flex_attention")(**model_inputs(collate_packed(examples), "flex_attention")).logits
    assert (packed - separate).abs().max() < 1e-4
