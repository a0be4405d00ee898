"""The Tulu-v1 instruction encoding templates of open-instruct (Apache-2.0), as the authors used them.

Ported from ``src/instruction_encode_templates.py`` of ZhengxiangShi/InstructionModelling
@ 325b77e (itself open-instruct's file, typos included: "Plase" is theirs). Changing a
template or a weight changes which template every later example draws, so they are kept
verbatim.
"""

from __future__ import annotations

import random

# (prompt template, completion template, weight)
TEMPLATES_WITH_INPUT = [
    ("{instruction}\n\n{input}\n\n", "{output}", 0.2),
    ("{instruction}\n{input}\n\n", "{output}", 0.1),
    ("{instruction}\n{input}\n", "{output}", 0.1),
    ("{instruction}\n\nInput: {input}\n\nOutput:", "{output}", 0.05),
    ("{instruction}\nInput: {input}\nOutput:", "{output}", 0.05),
    ("{instruction}\n{input}\n\nResponse:", "{output}", 0.05),
    ("{instruction}\n\nAdditional Context:\n{input}\n\nAnswer:", "{output}", 0.05),
    ("Task: {instruction}\nInput: {input}\nOutput:", "{output}", 0.05),
    ("Task: {instruction}\n\n{input}\n\n", "{output}", 0.05),
    ("Task: {instruction}\n\n{input}\n\nAnswer:", "{output}", 0.05),
    ("You need to complete the following task:\n\n{instruction}\n\n{input}\n\nAnswer:", "{output}", 0.05),
    ("{instruction}\n\nNow complete the following instance -\nInput: {input}\nOutput:", "{output}", 0.05),
    ("Instruction:{instruction}\n\nInput: {input}\n\n", "{output}", 0.05),
    ("Below is an instruction that describes a task, paired with an input that provides further "
     "context. Write a response that appropriately completes the request.\n\n"
     "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:", "{output}", 0.1),
]

TEMPLATES_WITHOUT_INPUT = [
    ("{instruction}\n\n", "{output}", 0.2),
    ("{instruction}\n", "{output}", 0.1),
    ("{instruction}", "\n{output}", 0.1),
    ("{instruction} Output:", "{output}", 0.05),
    ("{instruction}\nResponse:", "{output}", 0.05),
    ("{instruction}\n\nAnswer:", "{output}", 0.05),
    ("Task: {instruction}\n\n", "{output}", 0.05),
    ("Instruction: {instruction}\n", "{output}", 0.05),
    ("Instruction: {instruction}\nOutput:", "{output}", 0.05),
    ("You need to complete the following task:\n\n{instruction}\n\n", "{output}", 0.05),
    ("Can you help with this?\n\n{instruction}\n", "{output}", 0.05),
    ("Plase answer the following request: {instruction}\nAnswer:", "{output}", 0.05),
    ("Tell me how would you respond to the following request.\n{instruction}\n", "{output}", 0.05),
    ("Write a response that appropriately completes the request.\n\n### Instruction:\n"
     "{instruction}\n\n### Response:", "{output}", 0.1),
]


def choose_template(rng: random.Random, has_input: bool) -> tuple[str, str]:
    """One weighted draw, consuming exactly one ``rng.random()`` call (as ``random.choices`` does)."""
    table = TEMPLATES_WITH_INPUT if has_input else TEMPLATES_WITHOUT_INPUT
    prompt, completion, _ = rng.choices(table, weights=[w for _, _, w in table])[0]
    return prompt, completion


def encode_instruction_example(rng: random.Random, instruction: str, input: str | None,
                               output: str) -> tuple[str, str]:
    """(prompt, completion) with a randomly drawn template, as open-instruct's function does."""
    has_input = input is not None and input.strip() != ""
    prompt_t, completion_t = choose_template(rng, has_input)
    if has_input:
        prompt = prompt_t.format(instruction=instruction.strip(), input=input.strip())
    else:
        prompt = prompt_t.format(instruction=instruction.strip())
    return prompt, completion_t.format(output=output.strip())
