"""Per-example loss on output tokens only (paper Fig. 3/8/9): how well a model fits the responses.

"Output tokens" are the tokens instruction tuning trains (the ``it`` label policy: assistant content
and ``</s>``), whatever method trained the model, so IT and IM models are compared on the same tokens.
"""

from __future__ import annotations

import numpy as np

from imrepro.data.role_record import RoleRecord
from imrepro.train.label_policies import it_weights
from imrepro.train.scoring import token_logprobs


def per_example_output_loss(model, record: RoleRecord, token_budget: int, attn_implementation: str,
                            device="cpu") -> np.ndarray:
    """Mean negative log-likelihood over each example's output tokens (NaN for an example without any)."""
    masks = [it_weights(record.roles[record.offsets[i] : record.offsets[i + 1]]) > 0 for i in range(len(record))]
    wanted = np.concatenate(masks) if masks else np.zeros(0, bool)
    logp = token_logprobs(model, record, token_budget, attn_implementation, device, wanted=wanted)
    losses = np.full(len(record), np.nan)
    for i, mask in enumerate(masks):
        if mask.any():
            losses[i] = -float(logp[record.offsets[i] : record.offsets[i + 1]][mask].mean())
    return losses


def describe(losses: np.ndarray) -> dict:
    finite = losses[np.isfinite(losses)]
    return {"n": int(len(losses)), "n_without_output": int(len(losses) - len(finite)),
            "mean": float(finite.mean()) if len(finite) else None,
            "median": float(np.median(finite)) if len(finite) else None,
            "std": float(finite.std()) if len(finite) else None}
