"""The Tulu chat format used by open-instruct and the authors, rendered as labelled segments.

``<|system|>\\n{c}\\n``, ``<|user|>\\n{c}\\n``, ``<|assistant|>\\n{c}</s>\\n``, contents stripped,
the whole text stripped (so the final newline after the last ``</s>`` is dropped). BOS is
added by the tokenizer, not rendered here.

Each segment carries a :class:`Role` so that the tokenised record can say, for every token,
which part of the conversation it came from; label policies (IT, IM, ...) are functions of
those roles.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import NamedTuple

EOS_TEXT = "</s>"


class Role(enum.IntEnum):
    """Per-token role class stored in the role record (uint8)."""

    BOS = 0
    SYSTEM_HEADER = 1
    SYSTEM_CONTENT = 2
    USER_HEADER = 3
    USER_CONTENT = 4
    ASSISTANT_HEADER = 5
    ASSISTANT_CONTENT = 6
    EOS = 7
    SEPARATOR = 8  # the newline closing each message


HEADER = {"system": Role.SYSTEM_HEADER, "user": Role.USER_HEADER, "assistant": Role.ASSISTANT_HEADER}
CONTENT = {"system": Role.SYSTEM_CONTENT, "user": Role.USER_CONTENT, "assistant": Role.ASSISTANT_CONTENT}


class Segment(NamedTuple):
    text: str
    role: Role


HEADER_TEXT = {role: f"<|{role}|>\n" for role in HEADER}
SEPARATOR_SEGMENT = Segment("\n", Role.SEPARATOR)


def render_segments(messages: Sequence[dict], eos_text: str = EOS_TEXT) -> list[Segment]:
    """Segments whose concatenation is exactly the authors' (stripped) training text."""
    segments: list[Segment] = []
    append = segments.append
    for message in messages:
        role = message["role"]
        append(Segment(HEADER_TEXT[role], HEADER[role]))
        append(Segment(message["content"].strip(), CONTENT[role]))
        if role == "assistant":
            append(Segment(eos_text, Role.EOS))
        append(SEPARATOR_SEGMENT)
    # open-instruct strips the whole text: drop trailing whitespace-only segments, then
    # right-strip the last one (it is a header only if the last message was empty).
    segments = [s for s in segments if s.text]
    while segments and not segments[-1].text.strip():
        segments.pop()
    if segments:
        segments[-1] = Segment(segments[-1].text.rstrip(), segments[-1].role)
    return segments


def render_text(messages: Sequence[dict], eos_text: str = EOS_TEXT) -> str:
    return "".join(s.text for s in render_segments(messages, eos_text))


def generation_prompt(instruction: str) -> str:
    """Prompt used for generation (AlpacaEval, regeneration BLEU): ``<|user|>\\n...\\n<|assistant|>\\n``."""
    return f"<|user|>\n{instruction.strip()}\n<|assistant|>\n"
