"""The authors' label masking, re-implemented as the reference for the golden tests.

Source: ``src/finetune.py``, ``encode_with_messages_format`` (with and without
``use_lm_loss``), ZhengxiangShi/InstructionModelling at commit
325b77e256d44e6280ba123a8781b26ef85ec362. The logic is kept line for line - including the
prefix re-tokenisation of ``messages[:i]`` for IT and the buggy ``use_lm_loss`` pattern
search for ``["wa\\n", "<|system|>\\n", "<|user|>\\n"]``, each pattern tokenised standalone
WITH BOS - only with numpy arrays instead of ``(1, L)`` torch tensors. Their tokenizer (the
transformers-4.x slow Llama tokenizer) is not available; ``make_tokenize`` rebuilds its ids
(BOS + SentencePiece ``encode`` of each chunk between special tokens) from our
SentencePieceBackend, truncating to ``max_seq_length`` as ``truncation=True`` does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Tokenize = Callable[[str], np.ndarray]
EOS_TOKEN = "</s>"


def make_tokenize(backend, max_seq_length: int = 2048) -> Tokenize:
    """``tokenizer(text, max_length=..., truncation=True).input_ids`` for one text."""

    def tokenize(text: str) -> np.ndarray:
        return backend.encode_batch([text]).ids[:max_seq_length]

    return tokenize


def concat_messages(messages, eos_token: str = EOS_TOKEN) -> str:
    """Their ``_concat_messages`` (not stripped: the caller strips the full text only)."""
    message_text = ""
    for message in messages:
        if message["role"] == "system":
            message_text += "<|system|>\n" + message["content"].strip() + "\n"
        elif message["role"] == "user":
            message_text += "<|user|>\n" + message["content"].strip() + "\n"
        elif message["role"] == "assistant":
            message_text += "<|assistant|>\n" + message["content"].strip() + eos_token + "\n"
        else:
            raise ValueError("Invalid role: {}".format(message["role"]))
    return message_text


def _mask_lm_loss(input_ids: np.ndarray, labels: np.ndarray, tokenize: Tokenize) -> None:
    """``use_lm_loss``: mask every window equal to a standalone-tokenised "header"."""
    # The comment in their code says <|assistant|>\n; the string is "wa\n".
    for special_token in ["wa\n", "<|system|>\n", "<|user|>\n"]:
        special_token_ids = tokenize(special_token)
        length = len(special_token_ids)
        if len(input_ids) < length:  # their range(...) is empty then
            continue
        windows = sliding_window_view(input_ids, length)
        for idx in np.flatnonzero((windows == special_token_ids).all(axis=1)):
            labels[idx : idx + length] = -100


def _mask_non_assistant(messages, labels: np.ndarray, tokenize: Tokenize,
                        max_seq_length: int) -> None:
    """IT: mask each non-assistant message up to the end of a following assistant header."""
    for message_idx, message in enumerate(messages):
        if message["role"] == "assistant":
            continue
        if message_idx == 0:
            message_start_idx = 0
        else:
            message_start_idx = len(tokenize(concat_messages(messages[:message_idx])))
        if message_idx < len(messages) - 1 and messages[message_idx + 1]["role"] == "assistant":
            messages_so_far = concat_messages(messages[: message_idx + 1]) + "<|assistant|>\n"
        else:
            messages_so_far = concat_messages(messages[: message_idx + 1])
        message_end_idx = len(tokenize(messages_so_far))
        labels[message_start_idx:message_end_idx] = -100
        if message_end_idx >= max_seq_length:
            break


def encode_with_messages_format(example, tokenize: Tokenize, max_seq_length: int = 2048,
                                use_lm_loss: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(input_ids, labels)`` exactly as the authors' function builds them."""
    messages = example["messages"]
    if len(messages) == 0:
        raise ValueError("messages field is empty.")
    input_ids = np.asarray(tokenize(concat_messages(messages).strip()), np.int64)
    labels = input_ids.copy()
    if use_lm_loss:
        _mask_lm_loss(input_ids, labels, tokenize)
    else:
        _mask_non_assistant(messages, labels, tokenize, max_seq_length)
    return input_ids, labels
