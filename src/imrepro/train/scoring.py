"""Per-token log-probabilities of a role record under a model (no gradients).

Used for the KL-regularised IT baseline (reference log-probs of the base model, computed once
per (model, dataset) and reused by every KL run) and for loss analyses. The record is scored
in padding-free packs, so the result is exact per example and independent of the pack size.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from imrepro.core.models import load_causal_lm
from imrepro.data.role_record import RoleRecord
from imrepro.train import packing
from imrepro.train.loss import takes_logits_to_keep, token_nll, token_nll_at, trained_positions


def load_scoring_model(model_dir, precision: str = "bf16"):
    """``(model, attn_implementation, device)``: a causal LM for scoring, bf16 on a GPU when asked, else fp32."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if precision in ("auto", "bf16") and device == "cuda" else torch.float32
    model, attn = load_causal_lm(model_dir, dtype=dtype, device=device)
    return model, attn, device


@torch.no_grad()
def token_logprobs(model, record: RoleRecord, token_budget: int, attn_implementation: str,
                   device: torch.device | str = "cpu", progress: bool = True,
                   wanted: np.ndarray | None = None) -> np.ndarray:
    """Flat float32 array aligned with ``record.input_ids``: ``log p(x_t | x_<t)``, 0 at each
    example's first token.

    ``wanted`` (bool, aligned with ``record.input_ids``): only these tokens are scored, the others are
    NaN. The LM head then runs only at the positions that predict them (``logits_to_keep``): with
    Gemma's 262k-token vocabulary that head costs more than the rest of the model per position.
    """
    model.eval()
    dtype = next(model.parameters()).dtype
    if wanted is not None and len(wanted) != len(record.input_ids):
        raise ValueError(f"wanted has {len(wanted)} entries for {len(record.input_ids)} tokens")
    selective = wanted is not None and takes_logits_to_keep(model.forward)
    out = np.zeros(len(record.input_ids), dtype=np.float32)
    lengths = record.lengths
    packs = packing.plan_packs(lengths.tolist(), token_budget)
    for pack in tqdm(packs, desc="score", unit="pack", disable=not progress, mininterval=1.0):
        examples = []
        for i in pack:
            ids, _ = record.example(i)
            examples.append(packing.Example(ids.astype(np.int64), np.zeros(len(ids), np.float32),
                                            np.zeros(len(ids), bool)))
        batch = packing.collate_packed(examples).to(device)
        inputs = packing.model_inputs(batch, attn_implementation, dtype=dtype)
        if selective:
            mask = np.concatenate([wanted[record.offsets[i] : record.offsets[i + 1]] for i in pack])
            keep = trained_positions(torch.as_tensor(mask, dtype=torch.float32, device=device)[None])
            nll = token_nll_at(model(**inputs, logits_to_keep=keep).logits, batch.input_ids, keep)
        else:
            nll = token_nll(model(**inputs).logits, batch.input_ids)
        logp = (-nll)[0].float().cpu().numpy()
        start = 0
        for i, n in zip(pack, batch.seq_lens, strict=True):
            out[record.offsets[i] : record.offsets[i] + n] = logp[start : start + n]
            out[record.offsets[i]] = 0.0
            start += n
    if wanted is not None:
        out[~wanted] = np.nan
    return out
