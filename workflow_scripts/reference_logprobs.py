"""Log-probabilities of every token of a role record under a (base) model, for KL-regularised IT.

    python workflow_scripts/reference_logprobs.py --model results/models/demo_llama \
        --record results/data/records/llama2_ml256/lima_head64.parquet \
        --output results/kl_ref/demo_llama/lima_head64.npy
"""

import argparse
import logging
from pathlib import Path

import numpy as np

from imrepro.core.atomic import atomic_path
from imrepro.core.cli import run_main
from imrepro.data.role_record import load_role_record
from imrepro.train.scoring import load_scoring_model, token_logprobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--record", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--token-budget", type=int, required=True, help="tokens per packed micro-batch")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], required=True)
    args = parser.parse_args()

    model, attn, device = load_scoring_model(args.model, args.precision)
    record = load_role_record(args.record)
    logp = token_logprobs(model, record, args.token_budget, attn, device)
    with atomic_path(args.output) as tmp, open(tmp, "wb") as handle:
        np.save(handle, logp)
    logging.getLogger("reference_logprobs").info("%d tokens, mean log-prob %.4f", len(logp), logp.mean())


if __name__ == "__main__":
    run_main(main)
