"""The benchmark names the workflow knows: one result file ``results/eval/<target>/<name>.json`` each.

* the 17 lm-evaluation-harness tasks of the paper (keys of :data:`imrepro.eval.aggregate.PAPER_TASKS`);
* ``humaneval`` (the 18th NLP task, scored in a sandbox);
* ``mt_bench``, ``alpaca_eval_1``, ``alpaca_eval_2`` (judged generations);
* ``regen_bleu`` (Table 2) and ``output_loss`` (Fig. 3/8/9).
"""

from __future__ import annotations

from imrepro.eval.aggregate import PAPER_TASKS

LM_EVAL_TASKS: tuple[str, ...] = tuple(t.key for t in PAPER_TASKS if t.lm_eval_task is not None)
JUDGED = ("mt_bench", "alpaca_eval_1", "alpaca_eval_2")
ANALYSES = ("regen_bleu", "output_loss")
ALL_BENCHMARKS: tuple[str, ...] = (*LM_EVAL_TASKS, "humaneval", *JUDGED, *ANALYSES)
NEEDS_TRAINING_SET = ("regen_bleu",)  # not defined for a base model

# name in eval_long.csv / the paper's tables
DISPLAY_NAMES = {
    "mt_bench": "MT-Bench",
    "alpaca_eval_1": "AlpacaEval 1.0",
    "alpaca_eval_2": "AlpacaEval 2.0",
    "regen_bleu": "Regeneration BLEU",
}
ALPACA_EVAL_REFERENCE = {"alpaca_eval_1": "text_davinci_003", "alpaca_eval_2": "gpt4_1106_preview"}


def ordered(names) -> tuple[str, ...]:
    """``names`` in catalogue order (stable file lists, stable summaries)."""
    wanted = set(names)
    return tuple(name for name in ALL_BENCHMARKS if name in wanted)
