"""Loss: NLL alignment, the two normalisations, packed vs padded, and the authors' batch-size-1 regime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from imrepro.data.chat_format import Role
from imrepro.train.label_policies import weights_to_labels
from imrepro.train.loss import WEIGHT_NORMALISATIONS, loss_numerator, loss_parts, step_denominator, token_nll
from imrepro.train.packing import Example, collate_packed, collate_padded, model_inputs, plan_packs

VOCAB = 512
PAD_ID = 0
LENGTHS = [(4, 6), (15, 3), (2, 20), (9, 9), (30, 2)]  # (prompt content, response content) tokens
NORMALISATIONS = ("sequence_mean", "token_global")


def tiny_llama(attn_implementation: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                         attn_implementation=attn_implementation)
    return LlamaForCausalLM(config).eval()  # eval: no dropout; gradients flow all the same


def chat_roles(n_prompt: int, n_response: int) -> np.ndarray:
    parts = [(Role.BOS, 1), (Role.USER_HEADER, 3), (Role.USER_CONTENT, n_prompt), (Role.SEPARATOR, 1),
             (Role.ASSISTANT_HEADER, 3), (Role.ASSISTANT_CONTENT, n_response), (Role.EOS, 1)]
    return np.concatenate([np.full(n, role, np.uint8) for role, n in parts])


def make_examples(policy: str, prompt_weight: float | None = None, response_weight: float = 1.0,
                  seed: int = 0) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for n_prompt, n_response in LENGTHS:
        roles = chat_roles(n_prompt, n_response)
        out.append(Example.from_roles(rng.integers(1, VOCAB, len(roles)), roles, policy, prompt_weight,
                                      response_weight))
    return out


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def model(request):
    return tiny_llama(request.param)


def micro_batch_numerator(model, batch, normalisation, weight_normalisation="sum"):
    logits = model(**model_inputs(batch, model.config._attn_implementation)).logits
    nll = token_nll(logits, batch.input_ids)
    return loss_numerator(nll, batch.weights, batch.example_index, normalisation, weight_normalisation)


def step_loss_and_grad(model, batches, denominator, normalisation, weight_normalisation="sum"):
    """Accumulate numerator / denominator over micro-batches, as the trainer does."""
    model.zero_grad(set_to_none=True)
    total = 0.0
    for batch in batches:
        loss = micro_batch_numerator(model, batch, normalisation, weight_normalisation) / denominator
        loss.backward()
        total += loss.item()
    grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return total, grad


# --- token NLL -------------------------------------------------------------------------------


def test_token_nll_alignment():
    torch.manual_seed(0)
    logits = torch.randn(2, 7, 11)
    ids = torch.randint(0, 11, (2, 7))
    nll = token_nll(logits, ids)
    expected = -torch.log_softmax(logits, -1)[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    assert nll.shape == ids.shape and (nll[:, 0] == 0).all()
    torch.testing.assert_close(nll[:, 1:], expected)


def test_token_nll_is_float32_for_bf16_logits():
    torch.manual_seed(0)
    logits = torch.randn(1, 9, 13)
    ids = torch.randint(0, 13, (1, 9))
    nll = token_nll(logits.bfloat16(), ids)
    assert nll.dtype == torch.float32
    torch.testing.assert_close(nll, token_nll(logits.bfloat16().float(), ids))


# --- numerator / denominator -----------------------------------------------------------------


def test_numerator_by_hand():
    nll = torch.tensor([[0.0, 1.0, 2.0, 3.0], [0.0, 4.0, 5.0, 0.0]])
    weights = torch.tensor([[0.0, 1.0, 0.5, 0.0], [0.0, 1.0, 1.0, 0.0]])
    # sequence_mean: (1 + 1) / 1.5 + (4 + 5) / 2
    assert loss_numerator(nll, weights, None, "sequence_mean").item() == pytest.approx(2 / 1.5 + 4.5)
    assert loss_numerator(nll, weights, None, "token_global").item() == pytest.approx(2 + 9)
    # The same, packed into one row with an example index.
    index = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    assert loss_numerator(nll.reshape(1, -1), weights.reshape(1, -1), index, "sequence_mean").item() == \
        pytest.approx(2 / 1.5 + 4.5)
    assert step_denominator(weights.numpy(), "sequence_mean") == 2
    assert step_denominator(list(weights.numpy()), "token_global") == pytest.approx(3.5)
    with pytest.raises(ValueError):
        loss_numerator(nll, weights, None, "mean")


def test_untrained_example_adds_nothing_and_keeps_gradients_finite():
    nll = torch.tensor([[0.0, 1.0, 2.0], [0.0, 3.0, 4.0]], requires_grad=True)
    weights = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    for normalisation in NORMALISATIONS:
        numerator = loss_numerator(nll, weights, None, normalisation)
        assert numerator.item() == pytest.approx(1.5 if normalisation == "sequence_mean" else 3.0)
        (grad,) = torch.autograd.grad(numerator, nll)
        assert torch.isfinite(grad).all() and (grad[1] == 0).all()
    assert step_denominator(weights.numpy(), "sequence_mean") == 1


def test_loss_parts_split_prompt_and_response():
    nll = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]])
    weights = torch.tensor([[0.0, 0.5, 0.0, 1.0, 1.0]])
    response = torch.tensor([[False, False, False, True, True]])
    parts = loss_parts(nll, weights, response)
    assert [p.item() for p in parts] == [1.0, 1.0, 7.0, 2.0]  # prompt nll, prompt n, response nll, response n
    assert parts.response_nll.item() == 7.0 and parts.prompt_tokens.item() == 1.0


# --- packed vs padded, micro-batch splits ------------------------------------------------------


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.double(), b.double(), dim=0).item()


@pytest.mark.parametrize("normalisation", NORMALISATIONS)
def test_packed_and_padded_give_the_same_loss_and_gradient(model, normalisation):
    examples = make_examples("weighted", prompt_weight=0.3)
    denominator = step_denominator([e.weights for e in examples], normalisation)
    packed_loss, packed_grad = step_loss_and_grad(model, [collate_packed(examples)], denominator, normalisation)
    padded_loss, padded_grad = step_loss_and_grad(model, [collate_padded(examples, PAD_ID)], denominator,
                                                  normalisation)
    assert packed_loss == pytest.approx(padded_loss, abs=1e-5)
    assert cosine(packed_grad, padded_grad) >= 0.9999


@pytest.mark.parametrize("normalisation", NORMALISATIONS)
def test_step_loss_does_not_depend_on_the_micro_batch_split(model, normalisation):
    """One step over all examples = the same step accumulated over several packs (and padded rows)."""
    examples = make_examples("im")
    denominator = step_denominator([e.weights for e in examples], normalisation)
    whole_loss, whole_grad = step_loss_and_grad(model, [collate_packed(examples)], denominator, normalisation)
    packs = plan_packs([len(e) for e in examples], token_budget=60)
    assert 1 < len(packs) < len(examples)
    split = [collate_packed([examples[i] for i in pack]) for pack in packs]
    split_loss, split_grad = step_loss_and_grad(model, split, denominator, normalisation)
    single = [collate_padded([e], PAD_ID) for e in examples]
    single_loss, single_grad = step_loss_and_grad(model, single, denominator, normalisation)
    assert split_loss == pytest.approx(whole_loss, abs=1e-5)
    assert single_loss == pytest.approx(whole_loss, abs=1e-5)
    assert cosine(split_grad, whole_grad) >= 0.9999 and cosine(single_grad, whole_grad) >= 0.9999


# --- the two normalisations against Hugging Face's per-example loss ---------------------------


@torch.no_grad()
def hf_losses(model, examples) -> list[float]:
    """Hugging Face causal-LM loss of each example alone: batch size 1, mean over its labels."""
    losses = []
    for e in examples:
        ids = torch.from_numpy(e.input_ids)[None]
        labels = torch.from_numpy(weights_to_labels(e.input_ids, e.weights))[None]
        losses.append(model(input_ids=ids, labels=labels).loss.item())
    return losses


@torch.no_grad()
@pytest.mark.parametrize("policy", ["it", "im", "im_authors"])
def test_sequence_mean_is_the_authors_batch_size_one_mean(model, policy):
    examples = make_examples(policy)
    batch = collate_packed(examples)
    loss = micro_batch_numerator(model, batch, "sequence_mean") / step_denominator(
        [e.weights for e in examples], "sequence_mean")
    assert loss.item() == pytest.approx(float(np.mean(hf_losses(model, examples))), abs=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("policy", ["it", "im"])
def test_token_global_is_the_token_weighted_mean(model, policy):
    examples = make_examples(policy)
    batch = collate_packed(examples)
    loss = micro_batch_numerator(model, batch, "token_global") / step_denominator(
        [e.weights for e in examples], "token_global")
    counts = [int(e.weights.sum()) for e in examples]
    expected = np.dot(hf_losses(model, examples), counts) / sum(counts)
    assert loss.item() == pytest.approx(expected, abs=1e-5)


@torch.no_grad()
def test_sequence_mean_with_fractional_weights(model):
    """weighted policy: per-example weighted mean, then the plain mean over examples."""
    examples = make_examples("weighted", prompt_weight=0.25)
    per_example = []
    for e in examples:
        ids = torch.from_numpy(e.input_ids)[None]
        nll = token_nll(model(input_ids=ids).logits, ids)[0].numpy()
        per_example.append(float(np.dot(nll, e.weights) / e.weights.sum()))
    batch = collate_packed(examples)
    loss = micro_batch_numerator(model, batch, "sequence_mean") / len(examples)
    assert loss.item() == pytest.approx(np.mean(per_example), abs=1e-5)


# --- weight normalisation: sum of weights or count of weighted tokens --------------------------


def _collate(examples, packed):
    return collate_packed(examples) if packed else collate_padded(examples, PAD_ID)


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("weight_normalisation", WEIGHT_NORMALISATIONS)
@pytest.mark.parametrize("normalisation", NORMALISATIONS)
@pytest.mark.parametrize(("policy", "weights"), [("it", (0.0, 1.0)), ("im", (1.0, 1.0))])
def test_weighted_endpoints_give_it_and_im_losses_and_gradients_exactly(model, policy, weights, normalisation,
                                                                       weight_normalisation, packed):
    """weighted (0, 1) = it and (1, 1) = im, bit for bit, under both normalisations of each kind, packed
    and padded (the default ``sum`` path is the code before ``weight_normalisation`` existed)."""
    today = make_examples(policy)
    weighted = make_examples("weighted", *weights)
    denominator = step_denominator([e.weights for e in today], normalisation)
    assert step_denominator([e.weights for e in weighted], normalisation, weight_normalisation) == denominator
    loss, grad = step_loss_and_grad(model, [_collate(today, packed)], denominator, normalisation)
    w_loss, w_grad = step_loss_and_grad(model, [_collate(weighted, packed)], denominator, normalisation,
                                        weight_normalisation)
    assert w_loss == loss
    assert torch.equal(w_grad, grad)


@torch.no_grad()
@pytest.mark.parametrize("normalisation", NORMALISATIONS)
def test_count_divides_by_the_weighted_tokens(model, normalisation):
    """count: sum w nll over the number of tokens with w > 0 (per example under sequence_mean, per step
    under token_global); sum: over the sum of w. Packed and padded agree."""
    examples = make_examples("weighted", prompt_weight=0.1, response_weight=0.6)
    nlls = []
    for e in examples:
        ids = torch.from_numpy(e.input_ids)[None]
        nlls.append(token_nll(model(input_ids=ids).logits, ids)[0].numpy().astype(np.float64))
    sums = [float(np.dot(nll, e.weights)) for nll, e in zip(nlls, examples, strict=True)]
    expected = {}
    for kind, divisor in (("sum", lambda w: float(w.sum())), ("count", lambda w: float(np.count_nonzero(w)))):
        if normalisation == "token_global":
            expected[kind] = sum(sums) / sum(divisor(e.weights) for e in examples)
        else:
            expected[kind] = float(np.mean([x / divisor(e.weights) for x, e in zip(sums, examples, strict=True)]))
    assert expected["count"] < expected["sum"]  # weights below 1: more tokens than weight
    for kind in WEIGHT_NORMALISATIONS:
        denominator = step_denominator([e.weights for e in examples], normalisation, kind)
        for packed in (True, False):
            loss = micro_batch_numerator(model, _collate(examples, packed), normalisation, kind) / denominator
            assert loss.item() == pytest.approx(expected[kind], rel=1e-5)


def test_unknown_weight_normalisation_is_an_error():
    with pytest.raises(ValueError, match="unknown weight normalisation 'mean'"):
        step_denominator([np.ones(3, np.float32)], "sequence_mean", "mean")
