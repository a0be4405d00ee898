"""Attention for packed training batches: which implementation, and a varlen SDPA for the CPU.

A pack is one row of whole examples; attention must stay inside each example (block-diagonal
causal). The implementations, fastest first (:func:`resolve_training_attention` picks one when
the setting is ``auto``; ``train_summary.json`` records which ran):

* ``flash_attention_2`` (CUDA, flash-attn installed): the varlen kernel; transformers finds the
  example starts from ``position_ids``. O(T) memory, no wasted blocks.
* ``flex_attention`` (CUDA, torch >= 2.5): transformers builds a document ``BlockMask`` from the
  packed ``position_ids`` (``masking_utils.find_packed_sequence_indices``) and the compiled
  FlexAttention kernel skips every cross-example block. Not on CPU: torch 2.13's FlexAttention
  has no CPU backward ("FlexAttention does not support backward on CPU").
* ``sdpa_varlen`` (anywhere): registered here with transformers' ``AttentionInterface``; one
  causal SDPA call per example of the pack, given the pack's ``cu_seq_lens_q`` (the FlashAttention
  varlen keyword that transformers forwards to the attention function). Computes exactly the
  diagonal blocks; the CPU default.
* ``sdpa`` / ``eager`` with the dense ``[T, T]`` additive mask of ``packing.block_causal_mask``:
  computes every cross-example block and throws it away; the last resort.

Without ``cu_seq_lens_q`` (padded batches, evaluation) ``sdpa_varlen`` is plain transformers SDPA
with the mask transformers builds, so it is exact whatever it is given.
"""

from __future__ import annotations

import contextlib

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

SDPA_VARLEN = "sdpa_varlen"
TRAINING_ATTENTION = ("auto", "flash_attention_2", "flex_attention", SDPA_VARLEN, "sdpa", "eager")


def _segment_mask(length: int, window: int, device) -> torch.Tensor:
    """Bool ``[L, L]`` causal mask limited to the last ``window`` keys (sliding-window layers)."""
    i = torch.arange(length, device=device)
    offset = i[:, None] - i[None, :]
    return (offset >= 0) & (offset < window)


def sdpa_varlen_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                                  scaling: float | None = None, cu_seq_lens_q: torch.Tensor | None = None,
                                  **kwargs):
    """Attention of a packed ``[1, H, T, D]`` batch as one causal SDPA per example.

    Same signature and output (``[B, T, H, D]``, None) as transformers' ``sdpa_attention_forward``,
    which does each example's work (GQA, scaling, dropout). Sliding-window layers (Gemma) keep
    their window inside each example.
    """
    if cu_seq_lens_q is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    if query.shape[0] != 1:
        raise ValueError(f"sdpa_varlen: cu_seq_lens_q describes one packed row, got a batch of {query.shape[0]}")
    bounds = cu_seq_lens_q.tolist()
    window = getattr(module, "sliding_window", None)
    outputs = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        mask = None
        if window and end - start > window:
            mask = _segment_mask(end - start, window, query.device)
        out, _ = sdpa_attention_forward(module, query[:, :, start:end], key[:, :, start:end],
                                        value[:, :, start:end], mask, dropout=dropout, scaling=scaling,
                                        is_causal=mask is None)
        outputs.append(out)
    return torch.cat(outputs, dim=1), None


AttentionInterface.register(SDPA_VARLEN, sdpa_varlen_attention_forward)
# Without cu_seq_lens the function is plain SDPA, so it takes SDPA's masks.
ALL_MASK_ATTENTION_FUNCTIONS.register(SDPA_VARLEN, sdpa_mask)


def flex_attention_available(device_type: str) -> bool:
    """FlexAttention can train here: CUDA and torch >= 2.5 (no CPU backward in torch <= 2.13)."""
    if device_type != "cuda":
        return False
    with contextlib.suppress(ImportError):
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
        return True
    return False


def resolve_training_attention(requested: str, packing: bool, device_type: str) -> str:
    """The implementation a training run uses: ``requested`` unless it is ``auto``."""
    if requested not in TRAINING_ATTENTION:
        raise ValueError(f"attn_implementation {requested!r} is not one of {', '.join(TRAINING_ATTENTION)}")
    if requested != "auto":
        if requested == "flex_attention" and not flex_attention_available(device_type):
            raise ValueError(f"attn_implementation flex_attention cannot train on {device_type} "
                             f"(FlexAttention has no CPU backward): use auto or sdpa_varlen")
        return requested
    if device_type == "cuda":
        with contextlib.suppress(ImportError):
            import flash_attn  # noqa: F401
            return "flash_attention_2"
        if packing and flex_attention_available(device_type):
            return "flex_attention"
    return SDPA_VARLEN if packing else "sdpa"
