"""Batches for training: padding-free packs of whole examples, or classic right-padded rows.

A pack concatenates examples into one row ``[1, T]`` with ``position_ids`` restarting at 0 at
each example and attention confined to each example (block-diagonal causal). Because a label
policy gives every example ``w[0] = 0``, no loss ever predicts an example's first token from
the previous example, so packing changes the arithmetic layout but not the objective
(``tests/test_packing.py`` checks loss and gradients against the padded layout).

How attention is kept inside each example depends on the attention implementation
(measured with transformers 5.19, see docs/DESIGN.md "Training"):

* ``flash_attention_2``: ``position_ids`` alone; transformers finds the example starts from them
  and calls the varlen kernel. Memory O(T): the path for long packs.
* ``flex_attention``: ``position_ids`` alone; transformers builds a document ``BlockMask`` from
  them and FlexAttention skips the cross-example blocks (CUDA only: no CPU backward).
* ``sdpa_varlen`` (:mod:`imrepro.train.attention`): the pack's ``cu_seq_lens_q/k``, one causal
  SDPA per example; exactly the diagonal blocks, the CPU path.
* ``sdpa`` and ``eager``: an explicit 4-D additive mask from :func:`block_causal_mask`. Memory
  O(T^2) (T = 8192 in bf16: 128 MiB per pack), fine for the budgets used on CPU and for checks.
  Without the mask, transformers infers packing from ``position_ids`` only when the forward
  builds no KV cache (``use_cache=False``); with the default ``use_cache=True`` the examples
  leak into each other. :func:`model_inputs` therefore always passes the mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from imrepro.train.label_policies import it_weights, label_weights

ATTENTION_IMPLEMENTATIONS = ("flash_attention_2", "flex_attention", "sdpa_varlen", "sdpa", "eager")


@dataclass
class Example:
    """One tokenised example with its loss weights.

    ``weights[t]`` weighs the loss of predicting token ``t`` from tokens ``< t`` (``weights[0]``
    is 0). ``response`` marks the tokens the ``it`` policy trains, so prompt and response
    losses can be logged apart whatever policy trains.
    """

    input_ids: np.ndarray  # int64 [L]
    weights: np.ndarray  # float32 [L]
    response: np.ndarray  # bool [L]

    def __post_init__(self):
        self.input_ids = np.asarray(self.input_ids, np.int64)
        self.weights = np.asarray(self.weights, np.float32)
        self.response = np.asarray(self.response, bool)
        n = len(self.input_ids)
        if n == 0 or self.input_ids.ndim != 1:
            raise ValueError("an example needs a non-empty 1-D input_ids array")
        if self.weights.shape != (n,) or self.response.shape != (n,):
            raise ValueError(f"weights {self.weights.shape} and response {self.response.shape} "
                             f"must match input_ids ({n},)")

    @classmethod
    def from_roles(cls, input_ids, roles, policy: str, prompt_weight: float | None = None,
                   response_weight: float = 1.0) -> Example:
        """Build an example from a role-record entry and a named label policy."""
        roles = np.asarray(roles, np.uint8)
        return cls(input_ids, label_weights(policy, roles, prompt_weight, response_weight), it_weights(roles) > 0)

    def __len__(self) -> int:
        return len(self.input_ids)


def _to(batch, device):
    """Copy of a batch dataclass with every tensor moved to ``device``."""
    values = {f.name: getattr(batch, f.name) for f in fields(batch)}
    moved = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in values.items()}
    return type(batch)(**moved)


@dataclass
class PackedBatch:
    """Examples concatenated into one row; every per-token tensor is ``[1, T]``."""

    input_ids: torch.Tensor  # int64 [1, T]
    position_ids: torch.Tensor  # int64 [1, T], 0 at each example start
    weights: torch.Tensor  # float32 [1, T]
    response: torch.Tensor  # bool [1, T]
    example_index: torch.Tensor  # int64 [T], 0..n-1
    seq_lens: list[int]
    cu_seqlens: torch.Tensor  # int32 [n + 1]
    n_examples: int

    @property
    def n_tokens(self) -> int:
        return int(self.input_ids.shape[1])

    def to(self, device) -> PackedBatch:
        return _to(self, device)


@dataclass
class PaddedBatch:
    """Examples as right-padded rows ``[B, L]``; row ``b`` is example ``b``."""

    input_ids: torch.Tensor  # int64 [B, L]
    attention_mask: torch.Tensor  # int64 [B, L], 1 on real tokens
    position_ids: torch.Tensor  # int64 [B, L]
    weights: torch.Tensor  # float32 [B, L], 0 on padding
    response: torch.Tensor  # bool [B, L], False on padding
    example_index: torch.Tensor  # int64 [B, L], the row number (padding has weight 0)
    seq_lens: list[int]
    n_examples: int

    @property
    def n_tokens(self) -> int:
        return int(sum(self.seq_lens))

    def to(self, device) -> PaddedBatch:
        return _to(self, device)


def plan_packs(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Greedy packs of consecutive indices, each of total length ``<= token_budget``.

    The order is kept (the sampler's shuffled order is the training order, as in the
    authors' batch-size-1 regime); no bin-packing reordering. An example longer than the
    budget gets a pack of its own.
    """
    if token_budget < 1:
        raise ValueError(f"token_budget must be positive, got {token_budget}")
    packs: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, n in enumerate(lengths):
        if n < 1:
            raise ValueError(f"example {i} has length {n}")
        if current and used + n > token_budget:
            packs.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        packs.append(current)
    return packs


def _check_first_weights(examples: Sequence[Example]) -> None:
    """A non-zero first weight would train a label predicted across an example boundary."""
    bad = [i for i, e in enumerate(examples) if e.weights[0] != 0]
    if bad:
        raise ValueError(f"examples {bad[:5]} have a non-zero weight on their first token")


def collate_packed(examples: Sequence[Example]) -> PackedBatch:
    """One padding-free row of the examples, in the given order."""
    if not examples:
        raise ValueError("cannot pack zero examples")
    _check_first_weights(examples)
    seq_lens = [len(e) for e in examples]
    lens = torch.tensor(seq_lens, dtype=torch.int64)
    cu_seqlens = torch.zeros(len(seq_lens) + 1, dtype=torch.int32)
    cu_seqlens[1:] = torch.cumsum(lens, 0)
    starts = torch.repeat_interleave(cu_seqlens[:-1].long(), lens)
    positions = torch.arange(int(cu_seqlens[-1])) - starts

    def cat(name):
        return torch.from_numpy(np.concatenate([getattr(e, name) for e in examples]))[None]

    return PackedBatch(
        input_ids=cat("input_ids"),
        position_ids=positions[None],
        weights=cat("weights"),
        response=cat("response"),
        example_index=torch.repeat_interleave(torch.arange(len(seq_lens)), lens),
        seq_lens=seq_lens,
        cu_seqlens=cu_seqlens,
        n_examples=len(seq_lens),
    )


def collate_padded(examples: Sequence[Example], pad_id: int) -> PaddedBatch:
    """Right-padded rows; padding gets weight 0 and attention mask 0."""
    if not examples:
        raise ValueError("cannot collate zero examples")
    _check_first_weights(examples)
    seq_lens = [len(e) for e in examples]
    shape = (len(examples), max(seq_lens))
    input_ids = np.full(shape, pad_id, np.int64)
    weights = np.zeros(shape, np.float32)
    response = np.zeros(shape, bool)
    for row, e in enumerate(examples):
        n = len(e)
        input_ids[row, :n], weights[row, :n], response[row, :n] = e.input_ids, e.weights, e.response
    attention_mask = (torch.arange(shape[1])[None] < torch.tensor(seq_lens)[:, None]).long()
    return PaddedBatch(
        input_ids=torch.from_numpy(input_ids),
        attention_mask=attention_mask,
        position_ids=(attention_mask.cumsum(1) - 1).clamp_min(0),
        weights=torch.from_numpy(weights),
        response=torch.from_numpy(response),
        example_index=torch.arange(shape[0])[:, None].expand(shape).contiguous(),
        seq_lens=seq_lens,
        n_examples=len(examples),
    )


def block_causal_mask(seq_lens: Sequence[int], dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Additive ``[1, 1, T, T]`` mask: 0 where query ``i`` may attend key ``j``, finfo.min elsewhere.

    Allowed = same example and ``j <= i``. The additive float form is the one both ``sdpa`` and
    ``eager`` accept in transformers 5.19 (eager adds it to the scores; a bool mask there is
    silently wrong). Use the model's compute dtype. Memory is O(T^2): ``T * T * dtype size`` plus
    bool temporaries of the same count; long packs belong to the FlashAttention-2 varlen path.
    """
    lens = torch.as_tensor(list(seq_lens), dtype=torch.int64, device=device)
    example = torch.repeat_interleave(torch.arange(len(lens), device=device), lens)
    n = len(example)
    causal = torch.ones(n, n, dtype=torch.bool, device=device).tril_()
    allowed = causal & (example[:, None] == example[None, :])
    mask = torch.zeros(n, n, dtype=dtype, device=device).masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def model_inputs(batch: PackedBatch | PaddedBatch, attn_implementation: str,
                 dtype: torch.dtype = torch.float32) -> dict:
    """Tensors for ``model(**inputs)`` (no labels: the loss is computed outside).

    ``dtype`` is the model's compute dtype (e.g. bf16), used for the additive mask of packed
    sdpa/eager batches; the mask is built on the device of ``batch.input_ids``, so move the
    batch first (``batch.to(device)``) rather than copying a T x T mask.
    """
    if attn_implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"unknown attention implementation {attn_implementation!r} "
                         f"(expected one of {', '.join(ATTENTION_IMPLEMENTATIONS)})")
    inputs = {"input_ids": batch.input_ids, "position_ids": batch.position_ids}
    if isinstance(batch, PaddedBatch):
        inputs["attention_mask"] = batch.attention_mask
    elif attn_implementation == "sdpa_varlen":
        cu = batch.cu_seqlens.to(batch.input_ids.device)
        longest = max(batch.seq_lens)
        inputs.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=longest, max_length_k=longest)
    elif attn_implementation not in ("flash_attention_2", "flex_attention"):
        inputs["attention_mask"] = block_causal_mask(batch.seq_lens, dtype, batch.input_ids.device)
    return inputs
