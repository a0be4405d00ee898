"""Tokenise a canonical dataset once into its role record (token ids + per-token role class).

    python workflow_scripts/build_role_record.py --input results/data/canonical/lima.jsonl \
        --tokenizer-backend sentencepiece --tokenizer-path resources/tokenizers/llama2/tokenizer.model \
        --max-length 2048 --output results/data/records/llama2_ml2048/lima.parquet

``--chat-template model`` (the tokenizer's own) or ``--chat-template FILE.jinja`` renders the conversations with
that chat template instead of the Tulu format (imrepro.data.chat_template); a template that is not
prefix-stable on some conversation is refused, naming the tokenizer and the conversation.
"""

import argparse
import logging
from pathlib import Path

import numpy as np

from imrepro.core.cli import run_main
from imrepro.data.chat_format import Role
from imrepro.data.messages import load_messages_jsonl
from imrepro.data.role_record import build_role_record, save_role_record
from imrepro.data.token_backends import TokenizerSpec, load_backend

log = logging.getLogger("build_role_record")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--tokenizer-name", default="tokenizer")
    parser.add_argument("--tokenizer-backend", required=True, choices=["sentencepiece", "hf"])
    parser.add_argument("--tokenizer-path", required=True)
    parser.add_argument("--tokenizer-revision")
    parser.add_argument("--chat-template", help="'model' or a .jinja file: render with that chat template")
    parser.add_argument("--max-length", type=int, required=True)
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args()

    spec = TokenizerSpec(args.tokenizer_name, args.tokenizer_backend, args.tokenizer_path,
                         args.tokenizer_revision, args.chat_template)
    backend = load_backend(spec)
    examples = load_messages_jsonl(args.input)
    if not examples:
        raise ValueError(f"{args.input}: no examples")
    record = build_role_record(examples, backend, args.max_length, metadata={
        "source": str(args.input), "tokenizer": spec.name, "tokenizer_backend": spec.backend,
        "tokenizer_path": spec.path, "tokenizer_revision": spec.revision,
        "bos_id": backend.bos_id, "eos_id": backend.eos_id, "pad_id": backend.pad_id,
        "chat_template": spec.chat_template,
        "chat_template_text": backend.template.template if backend.template is not None else None,
    })
    save_role_record(record, args.output)
    counts = np.bincount(record.roles, minlength=len(Role))
    shares = ", ".join(f"{r.name.lower()} {counts[r] / counts.sum():.3f}" for r in Role)
    log.info("%d examples, %d tokens (mean %.1f), %d truncated at %d; role shares: %s",
             len(record), record.metadata["n_tokens"], record.metadata["n_tokens"] / len(record),
             record.metadata["n_truncated"], args.max_length, shares)


if __name__ == "__main__":
    run_main(main)
