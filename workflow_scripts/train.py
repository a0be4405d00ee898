"""Fine-tune a causal LM on one role record with one label policy (IT, IM, seed-IM, weighted),
optionally with NEFTune. One process on CPU, or under `accelerate launch` on GPUs.

    python workflow_scripts/train.py --settings '{"model_path": "results/models/demo_llama",
        "record_path": "results/data/records/llama2_ml256/lima_head64.parquet",
        "output_dir": "results/train/demo_llama__lima_head64__it__ep1", "scratch_dir": "scratch/...",
        "labels": "it", "epochs": 1, "effective_batch_size": 16, "precision": "fp32"}'
    accelerate launch --num_processes 4 --use_deepspeed --deepspeed_config_file configs/deepspeed/zero3.json \
        workflow_scripts/train.py --settings @settings.json

`--settings` takes JSON, or @file with JSON; keys are the fields of imrepro.train.settings.TrainSettings
(one documented line each).
"""

import argparse
import dataclasses
import json
import logging
from pathlib import Path

from imrepro.core.cli import run_main
from imrepro.train.label_policies import DEPRECATED_POLICIES, POLICIES, resolve_policy
from imrepro.train.settings import TrainSettings
from imrepro.train.trainer import train


def parse_settings(text: str) -> TrainSettings:
    raw = json.loads(Path(text[1:]).read_text() if text.startswith("@") else text)
    known = {f.name for f in dataclasses.fields(TrainSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"--settings: unknown key(s) {unknown}; known: {sorted(known)}")
    settings = TrainSettings(**raw)
    if settings.labels not in (*POLICIES, *DEPRECATED_POLICIES):
        raise ValueError(f"--settings: labels {settings.labels!r} is not one of {POLICIES}")
    return dataclasses.replace(settings, labels=resolve_policy(settings.labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", required=True, help="JSON or @file.json")
    settings = parse_settings(parser.parse_args().settings)
    summary = train(settings)
    logging.getLogger("train").info(
        "done: %d steps, final loss %.4f, %.0f tokens/s, %d examples dropped (no response token)",
        summary["optimizer_steps"], summary["final_loss"], summary["mean_tokens_per_s"] or 0,
        summary["n_dropped_no_response_token"])


if __name__ == "__main__":
    run_main(main)
