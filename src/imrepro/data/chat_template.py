"""A model's own chat template, rendered into the role record (``tokenizers.<name>.chat_template``).

``chat_template: model`` renders every conversation with the tokenizer's own Jinja template (what
``apply_chat_template`` renders); a path to a ``.jinja`` file renders with that template instead. The text is
labelled with the :class:`~imrepro.data.chat_format.Role` classes of the Tulu format, found by rendering, never
by reading the template:

* **parts**: message ``k``'s part of the text is what the rendering of ``messages[:k+1]`` adds to that of
  ``messages[:k]`` (LLaMA-Factory's prefix diff);
* **content**: message ``k``'s content is where the whole rendering changes when that content is replaced by
  a placeholder (Axolotl's diff). One render with every content replaced by its own placeholder usually
  settles all of them (the rendering must then be that text with each content, as is or trimmed, in its
  placeholder's place); otherwise each content is replaced on its own, by two placeholders in turn. A
  template may put a content outside its own part (Gemma 3 puts the system prompt inside the first user
  turn);
* **template text** is everything else: the template's ``bos_token`` at the start is BOS; in message ``k``'s
  part, text before its content is its header, text after its content its end of turn: EOS for an assistant
  message (the model must learn to stop), the separator role for a system or user message.

Text a template injects (Qwen 2.5's default system prompt, Llama 3.1's knowledge cut-off and date) lands in
a header, so it is template text, not instruction: IM (Eq. 4) trains every token but BOS and headers, and
does not train it. ``strftime_now`` renders the fixed :data:`TEMPLATE_DATE` (the date Llama 3.1's template
falls back to), so a record built tomorrow has the same tokens.

A template is refused, with an error naming the tokenizer and the conversation, unless it is
**prefix-stable** for every conversation of the data: the rendering of every ``messages[:k]`` is a prefix of
the whole rendering, and before every assistant message ``k`` the rendering of ``messages[:k]`` with
``add_generation_prompt`` is a prefix that ends exactly where message ``k``'s content starts (so the
generation prompt is the training text up to the answer; Qwen3's template, which drops earlier turns'
``<think>`` blocks and adds an empty one to the last, fails both). It must not render ``bos_token`` twice;
the text is tokenised without special tokens, so no second BOS is added either. Where the template marks
assistant text with ``{% generation %}``, the marked characters must be assistant content or end of turn,
and cover every assistant content (the markers may leave out the end of turn: we train it as EOS either way).
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from imrepro.data.chat_format import CONTENT, HEADER, Role, Segment

MODEL = "model"  # the setting that means "the tokenizer's own template"
TEMPLATE_DATE = datetime.datetime(2024, 7, 26)
PLACEHOLDERS = ("\ue000", "\ue001")  # private-use characters: never in the data, never trimmed
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")
_END_OF_TURN = {"system": Role.SEPARATOR, "user": Role.SEPARATOR, "assistant": Role.EOS}


class TemplateError(ValueError):
    """A chat template that cannot be used for this conversation (the message says why and where)."""


def special_token_strings(tokenizer) -> dict[str, str]:
    """A Hugging Face tokenizer's special-token strings, as ``apply_chat_template`` passes them to a template."""
    return {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}


def _fixed_strftime(fmt: str) -> str:
    return TEMPLATE_DATE.strftime(fmt)


def load_template_text(setting: str, tokenizer=None, *, name: str) -> str:
    """The template text of a ``chat_template`` setting: ``model`` (the tokenizer's own) or a file path."""
    if setting == MODEL:
        text = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
        if not isinstance(text, str) or not text.strip():
            raise TemplateError(f"tokenizer {name!r}: chat_template: model, but the tokenizer has no chat "
                                "template (give the path of a .jinja file instead)")
        return text
    path = Path(setting)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer {name!r}: chat template file {setting} not found")
    return path.read_text(encoding="utf-8")


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _common_suffix(a: str, b: str) -> int:
    return _common_prefix(a[::-1], b[::-1])


class ChatTemplate:
    """One tokenizer's chat template: rendering, prefix-stability checks and the role-labelled segments.

    ``special_tokens``: the tokenizer's special-token strings (``bos_token``, ``eos_token``, ...), passed to the
    template as ``apply_chat_template`` passes them. ``name`` names the tokenizer in errors.
    """

    def __init__(self, template: str, special_tokens: Mapping[str, str], *, name: str):
        self.template = template
        self.name = name
        self.special_tokens = {k: v for k, v in special_tokens.items() if isinstance(v, str)}
        self.bos_text = self.special_tokens.get("bos_token") or ""
        self.has_generation_markers = bool(_GENERATION_TAG.search(template))
        self.renders_bos = bool(self.bos_text) and self.render(
            [{"role": "user", "content": PLACEHOLDERS[0]}], add_generation_prompt=True,
            where="a one-message probe").startswith(self.bos_text)

    # ---- rendering ------------------------------------------------------------------------------------

    def _render(self, messages: Sequence[Mapping], add_generation_prompt: bool, markers: bool, where: str):
        from jinja2 import TemplateError as JinjaError
        from transformers.utils.chat_template_utils import render_jinja_template

        try:
            texts, indices = render_jinja_template(
                conversations=[list(messages)], chat_template=self.template,
                add_generation_prompt=add_generation_prompt, return_assistant_tokens_mask=markers,
                strftime_now=_fixed_strftime, **self.special_tokens)
        except JinjaError as err:
            raise TemplateError(f"tokenizer {self.name!r}: its chat template fails on {where}: {err}") from None
        return texts[0], (indices[0] if markers else [])

    def render(self, messages: Sequence[Mapping], add_generation_prompt: bool = False, *,
               where: str = "a conversation") -> str:
        return self._render(messages, add_generation_prompt, False, where)[0]

    def generation_prompt(self, messages: Sequence[Mapping]) -> str:
        """The prompt that asks for the next assistant message: the template's own generation prompt, which
        :meth:`segments` checked is the training text up to the answer."""
        if not messages or messages[-1]["role"] != "user":
            raise ValueError("a generation prompt needs a conversation that ends with a user message")
        return self.render(messages, add_generation_prompt=True, where="a generation prompt")

    # ---- the role-labelled text -------------------------------------------------------------------------

    def segments(self, messages: Sequence[Mapping], conversation: str = "?") -> list[Segment]:
        """The rendered conversation as consecutive role-labelled segments (their texts joined = the text)."""
        messages = [dict(m) for m in messages]
        where = f"conversation {conversation}"
        full, generation = self._render(messages, False, self.has_generation_markers, where)
        fail = self._failure(where)
        if self.bos_text and full.startswith(self.bos_text * 2):
            raise fail("it renders bos_token twice")
        bounds = self._part_bounds(messages, full, fail, where)
        spans = self._content_spans(messages, full, fail, where)
        self._check_generation_prompts(messages, full, spans, fail, where)
        roles = np.empty(len(full), np.uint8)
        for k, message in enumerate(messages):
            lo, hi = bounds[k], bounds[k + 1]
            start = spans[k][0]
            roles[lo:min(max(start, lo), hi)] = HEADER[message["role"]]
            roles[min(max(start, lo), hi):hi] = _END_OF_TURN[message["role"]]
        for message, (lo, hi) in zip(messages, spans, strict=True):
            roles[lo:hi] = CONTENT[message["role"]]
        if self.bos_text and full.startswith(self.bos_text):
            roles[:len(self.bos_text)] = Role.BOS
        if generation:
            self._check_markers(roles, generation, fail)
        return _runs(full, roles)

    def _failure(self, where: str):
        def fail(reason: str) -> TemplateError:
            return TemplateError(f"tokenizer {self.name!r}: chat template is not usable for training on "
                                 f"{where}: {reason}")
        return fail

    def _part_bounds(self, messages, full, fail, where) -> list[int]:
        """Where each message's part starts (and the text ends): prefix renderings must be prefixes."""
        bounds = [0]
        for k in range(1, len(messages)):
            prefix = self.render(messages[:k], where=f"{where}, its first {k} message(s)")
            if not full.startswith(prefix):
                raise fail(f"not prefix-stable: the rendering of its first {k} message(s) is not a prefix of the "
                           f"whole rendering (they part at character {_common_prefix(prefix, full)}: "
                           f"{prefix[_common_prefix(prefix, full):][:40]!r}); the template rewrites earlier "
                           "turns when later ones follow")
            if len(prefix) < bounds[-1]:
                raise fail(f"not prefix-stable: its first {k} message(s) render shorter than its first {k - 1}")
            bounds.append(len(prefix))
        bounds.append(len(full))
        return bounds

    def _content_spans(self, messages, full, fail, where) -> list[tuple[int, int]]:
        """Each message's content span in ``full``, checked to hold that content (stripped at most)."""
        for k, message in enumerate(messages):
            if not isinstance(message.get("content"), str):
                raise fail(f"message {k}: content must be a string")
        spans = self._spans_from_skeleton(messages, full, where) or self._spans_by_diff(messages, full, where)
        for k, (message, (lo, hi)) in enumerate(zip(messages, spans, strict=True)):
            if full[lo:hi].strip() != message["content"].strip():
                raise fail(f"message {k} ({message['role']}): the template changes its content "
                           f"({message['content'].strip()[:40]!r} renders as {full[lo:hi].strip()[:40]!r})")
            if any(lo < end and start < hi for start, end in spans[:k]):
                raise fail(f"message {k} ({message['role']}): its content overlaps an earlier message's")
        return spans

    def _spans_from_skeleton(self, messages, full, where) -> list[tuple[int, int]] | None:
        """The fast path, one render: every content replaced by its own placeholder character gives the
        template text between contents; ``full`` must be that text with each content (as is, or stripped as
        Jinja's ``trim`` does) in its placeholder's place. None where it is not (then :meth:`_spans_by_diff`)."""
        marks = [chr(0xE000 + k) for k in range(len(messages))]  # private-use characters, one per message
        if len(messages) > 6400 or any(m in message["content"] for m in marks for message in messages):
            return None
        skeleton = self.render([{**m, "content": mark} for m, mark in zip(messages, marks, strict=True)],
                               where=f"{where}, its contents replaced by placeholders")
        positions = [skeleton.find(mark) for mark in marks]
        if any(p < 0 or skeleton.count(mark) != 1 for p, mark in zip(positions, marks, strict=True)):
            return None
        order = sorted(range(len(messages)), key=positions.__getitem__)
        pieces = [skeleton[:positions[order[0]]]]
        pieces += [skeleton[positions[a] + 1:positions[b]] for a, b in zip(order[:-1], order[1:], strict=True)]
        pieces.append(skeleton[positions[order[-1]] + 1:])
        if not full.startswith(pieces[0]):
            return None
        spans, cursor = [None] * len(messages), len(pieces[0])
        for k, after in zip(order, pieces[1:], strict=True):
            content = messages[k]["content"]
            for candidate in dict.fromkeys((content, content.strip())):
                end = cursor + len(candidate)
                if full.startswith(candidate, cursor) and full.startswith(after, end):
                    spans[k], cursor = (cursor, end), end + len(after)
                    break
            else:
                return None
        return spans if cursor == len(full) else None

    def _spans_by_diff(self, messages, full, where) -> list[tuple[int, int]]:
        """Message by message: where the rendering changes when that content alone is replaced by a placeholder
        (two placeholders, so a content that starts or ends like one is still found whole)."""
        spans = []
        for k, message in enumerate(messages):
            starts, ends = [], []
            for placeholder in PLACEHOLDERS:
                changed = messages[:k] + [{**message, "content": placeholder}] + messages[k + 1:]
                other = self.render(changed, where=f"{where}, message {k} replaced by a placeholder")
                starts.append(_common_prefix(full, other))
                ends.append(len(full) - _common_suffix(full, other))
            lo = min(starts)
            spans.append((lo, max(max(ends), lo)))
        return spans

    def _check_generation_prompts(self, messages, full, spans, fail, where) -> None:
        for k, message in enumerate(messages):
            if message["role"] != "assistant" or k == 0:
                continue
            prompt = self.render(messages[:k], add_generation_prompt=True,
                                 where=f"{where}, the generation prompt of message {k}")
            if not full.startswith(prompt) or len(prompt) != spans[k][0]:
                raise fail(f"not prefix-stable: the generation prompt before message {k} ({prompt[-40:]!r}) is not "
                           f"the training text up to that answer ({full[:spans[k][0]][-40:]!r})")

    def _check_markers(self, roles, generation, fail) -> None:
        marked = np.zeros(len(roles), bool)
        for lo, hi in generation:
            marked[lo:hi] = True
        answer = np.isin(roles, [Role.ASSISTANT_CONTENT, Role.EOS])
        if (marked & ~answer).any() or (~marked & (roles == Role.ASSISTANT_CONTENT)).any():
            raise fail("its {% generation %} markers disagree with the assistant spans found by diffing "
                       f"(marked {int(marked.sum())} characters, {int((marked & ~answer).sum())} of them not an "
                       "answer)")


def _runs(text: str, roles: np.ndarray) -> list[Segment]:
    if not len(text):
        return []
    cuts = np.flatnonzero(roles[1:] != roles[:-1]) + 1
    edges = [0, *cuts.tolist(), len(text)]
    return [Segment(text[lo:hi], Role(int(roles[lo]))) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def template_for(setting: str | os.PathLike, special_tokens: Mapping[str, str], *, name: str,
                 tokenizer=None) -> ChatTemplate:
    """A :class:`ChatTemplate` from a config setting (``model`` or a path)."""
    return ChatTemplate(load_template_text(str(setting), tokenizer, name=name), special_tokens, name=name)
