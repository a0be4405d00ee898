"""Per-example output-token loss of one model on its training set and on the held-out set.

    python workflow_scripts/eval_output_loss.py --model results/train/RUN --run RUN \
        --train results/data/records/llama2_ml256/lima_head64.parquet \
        --heldout results/data/records/llama2_ml256/demo_heldout.parquet --output results/eval/RUN/output_loss.json
"""

import argparse
import json
import logging
from pathlib import Path

from imrepro.core.atomic import atomic_open
from imrepro.core.cli import run_main
from imrepro.data.role_record import load_role_record
from imrepro.eval.output_loss import describe, per_example_output_loss
from imrepro.train.scoring import load_scoring_model
from imrepro.train.settings import DEFAULT_TOKEN_BUDGET


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--run", required=True)
    parser.add_argument("--train", type=Path, help="role record of the training set (none for a base model)")
    parser.add_argument("--heldout", type=Path, help="role record of the held-out set")
    parser.add_argument("--token-budget", type=int, default=DEFAULT_TOKEN_BUDGET)
    parser.add_argument("--limit", type=int, help="first N examples of each set")
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args()
    if not (args.train or args.heldout):
        raise ValueError("nothing to score: give --train and/or --heldout")
    model, attn, device = load_scoring_model(args.model)
    result = {"benchmark": "output_loss", "kind": "loss", "status": "scored", "run": args.run, "model": str(args.model)}
    for split, path in (("train", args.train), ("heldout", args.heldout)):
        if path is None:
            result[split] = None
            continue
        record = load_role_record(path).head(args.limit)
        losses = per_example_output_loss(model, record, args.token_budget, attn, device)
        result[split] = {"dataset": path.stem, "record": str(path), **describe(losses), "ids": record.ids,
                         "losses": [None if loss != loss else float(loss) for loss in losses]}
        logging.getLogger("output_loss").info("%s (%s): mean output loss %s over %d examples", split, path.stem,
                                              result[split]["mean"], len(losses))
    result["value"] = (result["heldout"] or result["train"])["mean"]
    with atomic_open(args.output) as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    run_main(main)
