"""Train-set regeneration BLEU (paper Table 2): greedy outputs on training instructions vs training outputs.

The authors' ``src/generate.py`` prompts with the *first* user turn of each training example in the Tulu
format (``<|user|>\\n{instruction}\\n<|assistant|>\\n``); the reference is that example's first assistant
turn. Their BLEU script is not public. The paper calls the number "BLEU up to 4-grams" and the table an
average, so the reported value is the mean of per-example sentence BLEU (sacrebleu, 13a tokenisation,
exponential smoothing, effective order as sacrebleu recommends for single sentences); corpus BLEU over
the same pairs is reported next to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sacrebleu.metrics import BLEU


def regeneration_pair(example: Mapping) -> tuple[list[dict], str]:
    """(prompt messages, reference): everything up to the first user turn, and the assistant turn after it."""
    messages = example["messages"]
    first_user = next((i for i, m in enumerate(messages) if m["role"] == "user"), None)
    if first_user is None or first_user + 1 >= len(messages) or messages[first_user + 1]["role"] != "assistant":
        raise ValueError(f"example {example.get('id')!r}: no user turn followed by an assistant turn")
    return [dict(m) for m in messages[:first_user + 1]], messages[first_user + 1]["content"]


def bleu_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    """Corpus BLEU, per-example sentence BLEU and their mean (0-100), with sacrebleu's signatures."""
    if len(hypotheses) != len(references) or not references:
        raise ValueError(f"need as many hypotheses as references (>0), got {len(hypotheses)} and {len(references)}")
    hypotheses = [h.strip() for h in hypotheses]
    references = [r.strip() for r in references]
    corpus = BLEU()
    sentence = BLEU(effective_order=True)
    per_example = [sentence.sentence_score(h, [r]).score for h, r in zip(hypotheses, references, strict=True)]
    return {
        "corpus_bleu": corpus.corpus_score(hypotheses, [references]).score,
        "mean_sentence_bleu": sum(per_example) / len(per_example),
        "sentence_bleu": per_example,
        "signature": {"corpus": str(corpus.get_signature()), "sentence": str(sentence.get_signature())},
    }
