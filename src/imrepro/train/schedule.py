"""Which examples go into which optimizer step, rank and micro-batch.

Everything here is a pure function of (dataset size, seed, settings), so every rank computes
the same plan without communication, a resumed run skips exactly the steps it has done, and
the loss denominators of a step are known before its first micro-batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from imrepro.train.packing import plan_packs


def optimizer_steps(n_examples: int, effective_batch: int, epochs: float, seed: int) -> list[np.ndarray]:
    """Example indices of every optimizer step: a fresh seeded shuffle per epoch, chunks of
    ``effective_batch`` (the last chunk of an epoch may be smaller), ``epochs`` may be fractional."""
    if n_examples == 0:
        raise ValueError("no training examples")
    steps: list[np.ndarray] = []
    per_epoch = math.ceil(n_examples / effective_batch)
    total = math.ceil(epochs * per_epoch)
    epoch = 0
    while len(steps) < total:
        order = np.random.default_rng([seed, epoch]).permutation(n_examples)
        steps += [order[i : i + effective_batch] for i in range(0, n_examples, effective_batch)]
        epoch += 1
    return steps[:total]


def rank_share(step: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's examples of a step (strided, so ranks get similar length mixes)."""
    return step[rank::world_size]


def micro_batches(
    examples: np.ndarray, lengths: Sequence[int], packing: bool, token_budget: int, batch_size: int,
) -> list[np.ndarray]:
    """Split one rank's examples into micro-batches: token-budget packs, or fixed-size groups."""
    if packing:
        packs = plan_packs([lengths[i] for i in examples], token_budget)
        return [examples[np.asarray(pack, dtype=np.int64)] for pack in packs]
    return [examples[i : i + batch_size] for i in range(0, len(examples), batch_size)]


def equalise(per_rank: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """Give every rank the same number of micro-batches (collectives in each forward/backward
    under DDP and ZeRO must line up): split the largest micro-batches of the ranks that have
    fewer; a rank that cannot split further repeats an empty micro-batch (``None``)."""
    target = max(len(batches) for batches in per_rank)
    out = []
    for batches in per_rank:
        batches = list(batches)
        while len(batches) < target:
            largest = max(range(len(batches)), key=lambda i: len(batches[i]) if batches[i] is not None else 0)
            if batches[largest] is None or len(batches[largest]) < 2:
                batches.append(None)
                continue
            half = len(batches[largest]) // 2
            batches[largest : largest + 1] = [batches[largest][:half], batches[largest][half:]]
        out.append(batches)
    return out
