"""Train-set regeneration BLEU (paper Table 2): greedy outputs for the training instructions vs the training
outputs (first user turn in Tulu format -> first assistant turn; see imrepro.eval.regen_bleu).

    python workflow_scripts/eval_regen_bleu.py --model results/train/<run> \
        --dataset results/data/canonical/lima.jsonl --max-new-tokens 8192 \
        --tokenizer-model resources/tokenizers/llama2/tokenizer.model \
        --output results/eval/<run>/regen_bleu.json --generations-output results/eval/<run>/regen_generations.jsonl
"""

import argparse
import json
import logging
from pathlib import Path

from imrepro.core.atomic import atomic_open
from imrepro.core.cli import run_main
from imrepro.data.messages import load_messages_jsonl
from imrepro.eval.generation import (
    BACKENDS,
    DEFAULT_BATCH_SIZE,
    PRECISIONS,
    Sampling,
    chat_prompt,
    count_empty,
    load_generator,
)
from imrepro.eval.regen_bleu import bleu_scores, regeneration_pair

log = logging.getLogger("eval_regen_bleu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--dataset", required=True, type=Path, help="canonical messages JSONL (training data)")
    parser.add_argument("--tokenizer-model", type=Path,
                        help="SentencePiece file the model was trained with (prompt ids as in training)")
    parser.add_argument("--limit", type=int, help="only the first N examples")
    parser.add_argument("--max-new-tokens", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--generations-output", type=Path, help="JSONL: id, reference, generation, sentence_bleu")
    args = parser.parse_args()
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")

    examples = load_messages_jsonl(args.dataset)[:args.limit]
    if not examples:
        raise ValueError(f"{args.dataset}: no examples")
    pairs = [regeneration_pair(example) for example in examples]
    generator = load_generator(args.model, backend=args.backend, batch_size=args.batch_size,
                               precision=args.precision, tokenizer_model=args.tokenizer_model)
    texts = generator.generate([chat_prompt(messages) for messages, _ in pairs],
                               Sampling(max_new_tokens=args.max_new_tokens, temperature=0.0), desc="regeneration")
    generations = [samples[0] for samples in texts]
    references = [reference for _, reference in pairs]
    scores = bleu_scores(generations, references)

    if args.generations_output:
        with atomic_open(args.generations_output) as out:
            for example, reference, generation, bleu in zip(examples, references, generations,
                                                            scores["sentence_bleu"], strict=True):
                out.write(json.dumps({"id": example.get("id"), "reference": reference, "generation": generation,
                                      "sentence_bleu": bleu}) + "\n")
    result = {
        "benchmark": "regen_bleu", "kind": "generation", "status": "scored",
        "value": scores["mean_sentence_bleu"], "metric": "mean sentence BLEU-4 (0-100)",
        "corpus_bleu": scores["corpus_bleu"], "mean_sentence_bleu": scores["mean_sentence_bleu"],
        "signature": scores["signature"], "n": len(pairs), "n_empty": count_empty(texts), "limit": args.limit,
        "max_new_tokens": args.max_new_tokens, "n_truncated_prompts": generator.n_truncated,
        "backend": generator.backend_name, "model": str(args.model), "dataset": str(args.dataset),
    }
    with atomic_open(args.output) as out:
        json.dump(result, out, indent=2)
    log.info("regeneration BLEU on %d examples: mean sentence %.2f, corpus %.2f (%d empty)", len(pairs),
             result["value"], result["corpus_bleu"], result["n_empty"])


if __name__ == "__main__":
    run_main(main)
