"""Weighted causal-LM loss, split into a per-micro-batch numerator and a per-step denominator.

The optimizer step's loss is ``sum(numerators) / denominator``, the sum running over every
micro-batch of the step on every rank. The trainer computes the denominator for the whole step
before its first forward (and all-reduces it across ranks), then back-propagates
``loss_numerator(...) / denominator`` for each micro-batch, so the accumulated gradient is
independent of how the step's examples are split into micro-batches, packs or padded rows.

Normalisations (docs/DESIGN.md "Training", paper_notes.md §6 "Loss reduction"):

* ``sequence_mean`` - the authors' regime (batch size 1, Hugging Face mean over each example's
  trained tokens, accumulated): every example weighs the same whatever its length.
  Numerator = sum over examples of (sum_t w_t nll_t / sum_t w_t); denominator = number of
  examples with sum w > 0.
* ``token_global`` - Hugging Face Trainer style: every trained token weighs the same.
  Numerator = sum_t w_t nll_t; denominator = sum of all weights in the step.

Examples without a trained token (sum w == 0) add nothing to either.

``weight_normalisation`` says what "sum of weights" means in both denominators above: ``sum`` - the
weights themselves (LLaMA-Factory's per-token ``loss_weight``; this code before lambda_r existed);
``count`` - the number of tokens whose weight is non-zero (Weighted Instruction Tuning and TRL's
proposal), so a small lambda_p shrinks the prompt's gradient instead of being normalised away.
With 0/1 weights (``it``, ``im``, ``im_seed``) the two are the same numbers exactly.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

NORMALISATIONS = ("sequence_mean", "token_global")
WEIGHT_NORMALISATIONS = ("sum", "count")


def check_normalisations(normalisation: str, weight_normalisation: str) -> None:
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"unknown loss normalisation {normalisation!r} (expected one of {', '.join(NORMALISATIONS)})")
    if weight_normalisation not in WEIGHT_NORMALISATIONS:
        raise ValueError(f"unknown weight normalisation {weight_normalisation!r} "
                         f"(expected one of {', '.join(WEIGHT_NORMALISATIONS)})")


def denominator_weights(weights, weight_normalisation: str):
    """What a denominator sums per token: the weights (``sum``) or 1 where the weight is non-zero (``count``)."""
    if weight_normalisation == "sum":
        return weights
    nonzero = weights > 0
    return nonzero.to(weights.dtype) if isinstance(weights, torch.Tensor) else nonzero.astype(weights.dtype)


def token_nll(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Per-position NLL ``[..., T]`` in float32: ``nll[..., t] = -log p(input_ids[t] | < t)``, ``nll[..., 0] = 0``.

    Cross-entropy runs on the unshifted logits against left-rolled targets, so the logits are
    never sliced into a copy; the only large temporaries are the float32 upcast (none if the
    logits are already float32) and what ``F.cross_entropy`` itself keeps. The last position's
    prediction (of nothing) is computed and dropped.
    """
    if logits.shape[:-1] != input_ids.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match input_ids {tuple(input_ids.shape)}")
    targets = input_ids.roll(-1, dims=-1)
    flat = F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), reduction="none")
    next_token_nll = flat.view(input_ids.shape)
    return F.pad(next_token_nll[..., :-1], (1, 0))


def takes_logits_to_keep(forward) -> bool:
    """Whether a CausalLM ``forward`` takes ``logits_to_keep`` (an index tensor): transformers then applies
    the LM head (and any final soft-capping) only there; a model without it computes every position."""
    return "logits_to_keep" in inspect.signature(forward).parameters


def trained_positions(weights: torch.Tensor) -> torch.Tensor:
    """1-D positions ``t`` whose logits predict a trained label (``weights[..., t + 1] > 0`` in any
    row): the ``logits_to_keep`` index of a transformers CausalLM forward."""
    rows = weights.reshape(-1, weights.shape[-1])
    return torch.nonzero((rows[:, 1:] > 0).any(0)).squeeze(1)


def token_nll_at(logits: torch.Tensor, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """:func:`token_nll` from the logits at ``positions`` only (``[..., K, V]``, K = len(positions)).

    Equal to ``token_nll`` wherever a label is trained; 0 at the other positions (their weight is
    0, so no loss, no logging and no KL term reads them).
    """
    if logits.shape[:-1] != (*input_ids.shape[:-1], len(positions)):
        raise ValueError(f"logits {tuple(logits.shape)} do not match input_ids {tuple(input_ids.shape)} "
                         f"at {len(positions)} positions")
    targets = input_ids[..., positions + 1]
    kept = F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), reduction="none").view(targets.shape)
    return kept.new_zeros(input_ids.shape).index_copy(-1, positions + 1, kept)


def _per_example_sums(values: torch.Tensor, example_index: torch.Tensor | None) -> torch.Tensor:
    """Sum of ``values`` per example: per row when ``example_index`` is None, else by index."""
    if example_index is None:
        return values.flatten(1).sum(1)
    index = example_index.reshape(-1).to(values.device)
    n = int(index.max()) + 1 if index.numel() else 0
    return values.new_zeros(n).index_add(0, index, values.reshape(-1))


def loss_numerator(nll: torch.Tensor, weights: torch.Tensor, example_index: torch.Tensor | None = None,
                   normalisation: str = "sequence_mean", weight_normalisation: str = "sum") -> torch.Tensor:
    """This micro-batch's share of the step loss numerator (a differentiable scalar).

    ``example_index`` gives the example of each position: a packed batch's ``[T]`` index, or a
    padded batch's ``[B, L]`` row ids; None means each row of ``[B, L]`` is one example.
    """
    check_normalisations(normalisation, weight_normalisation)
    weighted = weights.to(nll.dtype) * nll
    if normalisation == "token_global":
        return weighted.sum()
    sums = _per_example_sums(weighted, example_index)
    totals = _per_example_sums(denominator_weights(weights.to(nll.dtype), weight_normalisation), example_index)
    # Dividing by 1 where the total is 0 keeps the gradient finite; those sums are 0 anyway.
    return (sums / torch.where(totals > 0, totals, torch.ones_like(totals))).sum()


def step_denominator(example_weights: Iterable[np.ndarray | torch.Tensor], normalisation: str,
                     weight_normalisation: str = "sum") -> float:
    """Denominator of one optimizer step on this rank, from the weight arrays of all its examples.

    Sum the result over ranks (all-reduce) before dividing.
    """
    check_normalisations(normalisation, weight_normalisation)
    totals = [float(denominator_weights(np.asarray(w, np.float64), weight_normalisation).sum())
              for w in example_weights]
    if normalisation == "token_global":
        return float(sum(totals))
    return float(sum(t > 0 for t in totals))


class LossParts(NamedTuple):
    """Detached 0-d float32 sums; iterate or ``torch.stack`` them in this order to all-reduce."""

    prompt_nll: torch.Tensor
    prompt_tokens: torch.Tensor
    response_nll: torch.Tensor
    response_tokens: torch.Tensor


@torch.no_grad()
def loss_parts(nll: torch.Tensor, weights: torch.Tensor, response: torch.Tensor) -> LossParts:
    """Sums for logging the mean loss on prompt and on response tokens separately.

    Only trained positions (w > 0) count, so under ``it`` the prompt count is 0; the NLL sums
    are unweighted. Sum over micro-batches and ranks, then divide each ``*_nll`` by its
    ``*_tokens``.
    """
    trained = weights > 0
    is_response = trained & response
    is_prompt = trained & ~response
    nll = nll.detach().float()
    return LossParts(
        prompt_nll=(nll * is_prompt).sum(),
        prompt_tokens=is_prompt.sum().float(),
        response_nll=(nll * is_response).sum(),
        response_tokens=is_response.sum().float(),
    )
