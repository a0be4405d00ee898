"""NEFTune (Jain et al., 2023): uniform noise on the input embeddings while training.

Each token of example ``e`` gets noise ``U(-a_e, a_e)`` with ``a_e = alpha / sqrt(L_e * d)``,
``L_e`` the length of that example and ``d`` the hidden size. The authors trained with batch
size 1, where ``L_e`` is the sequence length; with padding or packing the row length is not
``L_e``, so the trainer passes the per-token scale of each batch (:func:`neftune_scale`).

Usage (the authors hooked the unwrapped model's input embeddings after ``accelerator.prepare``)::

    neftune = NEFTune(accelerator.unwrap_model(model))        # or the embedding module itself
    for batch in micro_batches:
        scale = neftune_scale(batch, alpha, hidden_size)
        with neftune.active(scale, generator):                # noise for the forwards in this block
            logits = model(**model_inputs(batch, impl, dtype)).logits
    neftune.remove()

``set_scale(scale)`` is the one-shot alternative: the next training-mode forward uses it and
clears it. A training-mode forward with no scale raises rather than silently adding no noise
or reusing a stale scale. In eval mode nothing is added.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from imrepro.train.packing import PackedBatch, PaddedBatch


def neftune_scale(batch: PackedBatch | PaddedBatch, alpha: float, hidden_size: int) -> torch.Tensor:
    """Per-token noise amplitude ``alpha / sqrt(L_e * d)``, shaped ``[B, T, 1]`` (0 on padding)."""
    if isinstance(batch, PackedBatch):
        lens = torch.tensor(batch.seq_lens, dtype=torch.float32)
        per_token = torch.repeat_interleave(lens, torch.tensor(batch.seq_lens))[None]
        return (alpha / torch.sqrt(per_token * hidden_size))[..., None]
    if isinstance(batch, PaddedBatch):
        mask = batch.attention_mask.float()
        lens = mask.sum(1, keepdim=True).clamp_min(1)
        return (alpha / torch.sqrt(lens * hidden_size) * mask)[..., None]
    raise TypeError(f"expected a PackedBatch or PaddedBatch, got {type(batch).__name__}")


class NEFTune:
    """Forward hook on the input embeddings that adds scaled uniform noise in training mode.

    ``target`` is the model (its ``get_input_embeddings()`` is hooked) or the embedding module.
    ``alpha`` is only kept for :meth:`scale_for`; the noise follows whatever scale is set.
    """

    def __init__(self, target: nn.Module, alpha: float | None = None, generator: torch.Generator | None = None):
        getter = getattr(target, "get_input_embeddings", None)
        self.embedding = getter() if callable(getter) else target
        self.alpha = alpha
        self.generator = generator
        self._scale: torch.Tensor | None = None
        self._one_shot = False
        self._handle = self.embedding.register_forward_hook(self._hook)

    def scale_for(self, batch: PackedBatch | PaddedBatch) -> torch.Tensor:
        if self.alpha is None:
            raise ValueError("NEFTune was built without alpha")
        return neftune_scale(batch, self.alpha, self.embedding.embedding_dim)  # ZeRO-3 safe, unlike weight.shape

    def set_scale(self, scale: torch.Tensor | None) -> None:
        """Scale for the next training-mode forward only; broadcastable to the embeddings ``[B, T, 1]``."""
        self._scale, self._one_shot = scale, True

    @contextlib.contextmanager
    def active(self, scale: torch.Tensor, generator: torch.Generator | None = None):
        """Use ``scale`` (and ``generator``, if given) for every forward inside the block."""
        saved = self.generator
        self._scale, self._one_shot = scale, False
        if generator is not None:
            self.generator = generator
        try:
            yield self
        finally:
            self._scale, self.generator = None, saved

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> NEFTune:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def _uniform(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        """U(-1, 1) in float32, drawn on the generator's device when one is given."""
        where = self.generator.device if self.generator is not None else device
        noise = torch.rand(shape, generator=self.generator, device=where, dtype=torch.float32)
        return (noise * 2 - 1).to(device)

    def _hook(self, module: nn.Module, args, output: torch.Tensor) -> torch.Tensor | None:
        if not module.training:
            return None
        if self._scale is None:
            raise RuntimeError("NEFTune: no noise scale for this training forward "
                               "(use `with neftune.active(neftune_scale(batch, ...))` or set_scale)")
        scale = self._scale.to(output.device, torch.float32)
        if self._one_shot:
            self._scale = None
        noise = self._uniform(output.shape, output.device) * scale
        return output + noise.to(output.dtype)
