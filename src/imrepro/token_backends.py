"""Tokenizer back-ends that return, for every token, the offset where it starts in the text.

* :class:`SentencePieceBackend` reproduces the token ids of the authors' transformers-4.x
  *slow* Llama tokenizer (legacy mode): BOS, then SentencePiece ``encode`` of each chunk of
  text between special tokens, each chunk with SentencePiece's dummy prefix ``▁``. Modern
  transformers cannot reproduce those ids (see docs/DESIGN.md), so Llama-2 runs that claim
  to match the paper use this back-end. Offsets are UTF-8 byte offsets.
* :class:`HFBackend` wraps any fast Hugging Face tokenizer (OPT, other models). Offsets are
  character offsets from ``return_offsets_mapping``.

Both return ``(ids, starts)`` per text as numpy arrays; ``starts[i]`` is where token ``i``
begins (``-1`` for tokens that are not in the text, such as BOS).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Encoded = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class TokenizerSpec:
    """How to build a tokenizer; mirrors one entry of ``tokenizers:`` in config.yaml."""

    name: str
    backend: str  # "sentencepiece" or "hf"
    path: str  # tokenizer.model file, or a HF model id / directory
    revision: str | None = None

    @classmethod
    def from_config(cls, name: str, entry: dict) -> TokenizerSpec:
        return cls(name=name, backend=entry["backend"], path=entry["path"],
                   revision=entry.get("revision"))


class SentencePieceBackend:
    """Llama-2 ids exactly as the authors' slow tokenizer produced them."""

    offset_unit = "bytes"
    # The strings the slow tokenizer split out as special tokens (``<pad>`` was added by the
    # authors' training script before tokenising).
    special_tokens = ("<s>", "</s>", "<unk>", "<pad>")

    def __init__(self, model_file: str | os.PathLike, num_threads: int = -1):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.num_threads = num_threads
        self.bos_id = self.sp.bos_id()
        self.eos_id = self.sp.eos_id()
        self.eos_text = self.sp.id_to_piece(self.eos_id)
        self.vocab_size = self.sp.get_piece_size()
        # ``<pad>`` gets the next free id, as in the authors' resized vocabulary (32000).
        self.special_ids = {"<s>": self.bos_id, "</s>": self.eos_id,
                            "<unk>": self.sp.unk_id(), "<pad>": self.vocab_size}
        self._split = re.compile("(" + "|".join(map(re.escape, self.special_tokens)) + ")")
        self._piece_bytes = self._piece_byte_lengths()

    def _piece_byte_lengths(self) -> np.ndarray:
        """Bytes of input text each piece covers (``▁`` stands for one space)."""
        lengths = np.zeros(self.vocab_size, dtype=np.int64)
        for i in range(self.vocab_size):
            if self.sp.is_byte(i):
                lengths[i] = 1
            elif not (self.sp.is_control(i) or self.sp.is_unknown(i)):
                lengths[i] = len(self.sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
        return lengths

    def encode_batch(self, texts: Sequence[str]) -> list[Encoded]:
        # Split each text at special tokens; encode all ordinary chunks in one batch call.
        plans: list[list[tuple[int, str | int]]] = []  # per text: (byte offset, chunk | special id)
        chunks: list[str] = []
        for text in texts:
            plan, offset = [], 0
            for part in self._split.split(text):
                if not part:
                    continue
                if part in self.special_ids:
                    plan.append((offset, self.special_ids[part]))
                else:
                    plan.append((offset, part))
                    chunks.append(part)
                offset += len(part.encode("utf-8"))
            plans.append(plan)
        chunk_ids = iter(self.sp.encode(chunks, num_threads=self.num_threads))

        out: list[Encoded] = []
        for plan in plans:
            ids_parts = [np.array([self.bos_id], dtype=np.int64)]
            start_parts = [np.array([-1], dtype=np.int64)]
            for offset, part in plan:
                if isinstance(part, int):
                    ids_parts.append(np.array([part], dtype=np.int64))
                    start_parts.append(np.array([offset], dtype=np.int64))
                    continue
                ids = np.asarray(next(chunk_ids), dtype=np.int64)
                lengths = self._piece_bytes[ids]
                if lengths.sum() != len(part.encode("utf-8")) + 1:  # +1: the dummy prefix
                    ids, starts = self._encode_with_proto(part)
                else:
                    starts = np.cumsum(lengths) - lengths - 1  # shift out the dummy prefix
                ids_parts.append(ids)
                start_parts.append(np.maximum(starts, 0) + offset)
            out.append((np.concatenate(ids_parts), np.concatenate(start_parts)))
        return out

    def _encode_with_proto(self, text: str) -> Encoded:
        """Slow exact path (offsets from SentencePiece itself), for unusual inputs."""
        proto = self.sp.encode(text, return_type="proto")
        ids = np.array([p.id for p in proto.pieces], dtype=np.int64)
        starts = np.array([p.begin for p in proto.pieces], dtype=np.int64)
        return ids, starts

    def decode(self, ids: Sequence[int]) -> str:
        return self.sp.decode([int(i) for i in ids if i < self.vocab_size])


class HFBackend:
    """Any fast Hugging Face tokenizer; the BOS it adds (if any) gets offset -1."""

    offset_unit = "chars"

    def __init__(self, name_or_path: str, revision: str | None = None):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(name_or_path, revision=revision)
        if not self.tok.is_fast:
            raise ValueError(f"{name_or_path}: a fast tokenizer is required for offsets")
        self.bos_id = self.tok.bos_token_id
        self.eos_id = self.tok.eos_token_id
        self.eos_text = self.tok.eos_token

    def encode_batch(self, texts: Sequence[str]) -> list[Encoded]:
        enc = self.tok(list(texts), add_special_tokens=True, return_offsets_mapping=True)
        out = []
        for ids, offsets in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
            ids = np.asarray(ids, dtype=np.int64)
            spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
            starts = spans[:, 0].copy()
            starts[(spans[:, 0] == spans[:, 1]) & (ids == self.bos_id)] = -1  # added BOS
            out.append((ids, starts))
        return out

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids))


def load_backend(spec: TokenizerSpec) -> SentencePieceBackend | HFBackend:
    if spec.backend == "sentencepiece":
        return SentencePieceBackend(spec.path)
    if spec.backend == "hf":
        return HFBackend(spec.path, spec.revision)
    raise ValueError(f"tokenizer {spec.name!r}: unknown backend {spec.backend!r} "
                     "(expected 'sentencepiece' or 'hf')")
