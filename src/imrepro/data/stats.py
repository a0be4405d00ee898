"""Dataset length statistics as in the paper's Table 5.

Unit (not stated in the paper, reproduced exactly on LIMA / Alpagasus Dolly 3k / Alpagasus
Alpaca 5k): whitespace words of ``"<|role|>\\n" + content.strip()``, summed per example over
the messages of that role. Instruction = user (and system) messages, output = assistant
messages. Means over examples, *population* standard deviation, ratio = ratio of the means.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from imrepro.data.messages import Example

TABLE5_COLUMNS = [
    "dataset", "n_examples", "avg_total", "avg_output", "std_output",
    "avg_instruction", "std_instruction", "ratio_output_instruction",
]


def message_words(message: dict) -> int:
    return len(f"<|{message['role']}|>\n{message['content'].strip()}".split())


def instruction_output_words(example: Example) -> tuple[int, int]:
    """Word counts of the instruction side (user + system) and the output side (assistant)."""
    instruction = output = 0
    for message in example["messages"]:
        if message["role"] == "assistant":
            output += message_words(message)
        else:
            instruction += message_words(message)
    return instruction, output


def length_arrays(examples: Iterable[Example]) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.array([instruction_output_words(ex) for ex in examples], dtype=np.float64)
    if pairs.size == 0:
        raise ValueError("no examples: cannot compute length statistics")
    return pairs[:, 0], pairs[:, 1]


def table5_row(dataset: str, examples: Iterable[Example]) -> dict:
    instruction, output = length_arrays(examples)
    return {
        "dataset": dataset,
        "n_examples": len(instruction),
        "avg_total": round(float(instruction.mean() + output.mean()), 2),
        "avg_output": round(float(output.mean()), 2),
        "std_output": round(float(output.std()), 2),
        "avg_instruction": round(float(instruction.mean()), 2),
        "std_instruction": round(float(instruction.std()), 2),
        "ratio_output_instruction": round(float(output.mean() / instruction.mean()), 4),
    }
