"""Analysis subsets of the paper's Fig. 2: instruction/output ratio subsets and size subsets.

Ratio subsets port the authors' ``select_data.py``: shuffle (seeded), sort stably by
``|instruction/output - target|`` and keep the first ``count`` (3,000 in the paper). The
per-example lengths come from a module missing in their repository; we use the Table 5
word counts (:mod:`imrepro.data.stats`), the only length unit the paper's numbers pin down.

Size subsets (Fig. 2 right: Tulu V2 subsets of 1k..35k examples at ratio ~10) draw ``size``
examples at random from the ``pool`` examples nearest to the target ratio, so every size
shares one ratio regime.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from imrepro.data.messages import Example
from imrepro.data.stats import instruction_output_words


def instruction_output_ratio(example: Example) -> float:
    instruction, output = instruction_output_words(example)
    return instruction / output if output > 0 else 0.0


def ratio_subset(examples: Sequence[Example], target_ratio: float, count: int, seed: int = 42) -> list[Example]:
    if count > len(examples):
        raise ValueError(f"ratio subset: asked for {count} examples, the source has {len(examples)}")
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    shuffled.sort(key=lambda ex: abs(instruction_output_ratio(ex) - target_ratio))
    return shuffled[:count]


def size_subset(examples: Sequence[Example], size: int, target_ratio: float, pool: int,
                seed: int = 42, max_words: int | None = None) -> list[Example]:
    """``max_words``: draw only from examples of at most that many words (instruction + output), e.g. those
    that fit a short max length whole, so that truncation drops no example's output."""
    if size > pool:
        raise ValueError(f"size subset: size {size} is larger than the pool of {pool}")
    if max_words is not None:
        examples = fitting(examples, max_words=max_words)
    candidates = ratio_subset(examples, target_ratio, pool, seed)
    return random.Random(seed).sample(candidates, k=size)


def fitting(examples: Sequence[Example], *, max_words: int | None = None,
            max_instruction_words: int | None = None) -> list[Example]:
    """The examples within the word limits (instruction + output, and instruction alone), in order."""
    def fits(example: Example) -> bool:
        instruction, output = instruction_output_words(example)
        return ((max_words is None or instruction + output <= max_words)
                and (max_instruction_words is None or instruction <= max_instruction_words))
    return [example for example in examples if fits(example)]
