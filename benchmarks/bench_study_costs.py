"""What a study run costs on this CPU, and what the two exact speed-ups buy, on the study's model.

    python benchmarks/bench_study_costs.py --model-dir results/models/gemma3_270m \
        --record results/data/records/gemma3_ml64/study_heldout.parquet

All in one process, same model, baseline first in every pair, ``--rounds`` alternating rounds:

  * ``lm_head``: the LM head's matrix product (``--tokens`` x hidden by hidden x vocabulary), GFLOP/s:
    what bounds both training and scoring with a 262k-token vocabulary;
  * ``adamw``: one optimizer step over all parameters (gradients from one real forward/backward),
    ``torch.optim.AdamW`` default (per-tensor loop / foreach) vs ``fused=True`` (the trainer's);
  * ``scoring``: per-example output losses of the record, logits at every position (baseline) vs the
    LM head only at the answer positions (``token_logprobs(wanted=...)``, what ``output_loss`` runs);
    the largest difference between the two sets of losses is printed (they must agree).

Printed: each round's seconds and ratio to the baseline, then the median ratio per pair.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_lm_head(model, tokens: int) -> float:
    weight = model.get_output_embeddings().weight.detach()
    x = torch.randn(tokens, weight.shape[1])
    torch.nn.functional.linear(x, weight)  # warm-up
    seconds = _timed(lambda: torch.nn.functional.linear(x, weight))
    return 2 * tokens * weight.shape[0] * weight.shape[1] / seconds / 1e9


def adamw_pair(model, tokens: int):
    """(foreach step seconds, fused step seconds) after one real backward on random tokens."""
    ids = torch.randint(10, model.config.vocab_size, (1, tokens))
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    params = [p for p in model.parameters() if p.requires_grad]
    state = [p.detach().clone() for p in params]
    out = []
    for fused in (False, True):
        opt = torch.optim.AdamW(params, lr=1e-5, fused=fused)
        opt.step()  # first step allocates the state
        out.append(_timed(opt.step))
        with torch.no_grad():
            for p, s in zip(params, state, strict=True):
                p.copy_(s)
    model.zero_grad(set_to_none=True)
    return out


def scoring_pair(model, attn: str, record, token_budget: int):
    from imrepro.eval.output_loss import per_example_output_loss
    from imrepro.train import scoring
    from imrepro.train.label_policies import it_weights

    def full():
        logp = scoring.token_logprobs(model, record, token_budget, attn, progress=False)
        losses = []
        for i in range(len(record)):
            lo, hi = record.offsets[i], record.offsets[i + 1]
            mask = it_weights(record.roles[lo:hi]) > 0
            losses.append(-float(logp[lo:hi][mask].mean()) if mask.any() else np.nan)
        return np.array(losses)

    start = time.perf_counter()
    base = full()
    t_full = time.perf_counter() - start
    start = time.perf_counter()
    fast = per_example_output_loss(model, record, token_budget, attn)
    t_fast = time.perf_counter() - start
    return t_full, t_fast, float(np.nanmax(np.abs(base - fast)))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", required=True)
    p.add_argument("--record", required=True, help="a role record to score (the study's held-out set)")
    p.add_argument("--tokens", type=int, default=384, help="tokens of the LM-head product and of the backward")
    p.add_argument("--token-budget", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from imrepro.data.role_record import load_role_record
    from imrepro.train.scoring import load_scoring_model

    model, attn, _ = load_scoring_model(args.model_dir)  # as the output-loss job loads it
    record = load_role_record(args.record)
    print(f"model {args.model_dir}: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"vocabulary {model.config.vocab_size:,}; record {args.record}: {len(record)} examples, "
          f"{len(record.input_ids):,} tokens; attention {attn}, {args.threads} threads")
    ratios = {"adamw": [], "scoring": []}
    for r in range(1, args.rounds + 1):
        print(f"round {r}: lm_head {args.tokens} x {model.config.hidden_size} x {model.config.vocab_size}: "
              f"{bench_lm_head(model, args.tokens):.1f} GFLOP/s")
        foreach, fused = adamw_pair(model, args.tokens)
        ratios["adamw"].append(foreach / fused)
        print(f"round {r}: adamw step foreach {foreach:.2f} s, fused {fused:.2f} s: {foreach / fused:.2f}x")
        t_full, t_fast, diff = scoring_pair(model, attn, record, args.token_budget)
        ratios["scoring"].append(t_full / t_fast)
        print(f"round {r}: output loss, all logits {t_full:.1f} s, answer positions only {t_fast:.1f} s: "
              f"{t_full / t_fast:.2f}x (largest loss difference {diff:.2e})")
    for name, values in ratios.items():
        print(f"median speed-up {name}: {statistics.median(values):.2f}x over {len(values)} rounds")


if __name__ == "__main__":
    main()
