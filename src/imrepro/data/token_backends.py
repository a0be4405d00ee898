"""Tokenizer back-ends that return, for every token, the offset where it starts in the text.

* :class:`SentencePieceBackend` reproduces the token ids of the authors' transformers-4.x
  *slow* Llama tokenizer (legacy mode): BOS, then SentencePiece ``encode`` of each chunk of
  text between special tokens, each chunk with SentencePiece's dummy prefix ``▁``. Modern
  transformers cannot reproduce those ids (see docs/DESIGN.md, "Tokenizer fidelity"), so Llama-2 runs that claim
  to match the paper use this back-end. Offsets are UTF-8 byte offsets.
* :class:`HFBackend` wraps any fast Hugging Face tokenizer (OPT, other models). Offsets are
  character offsets from ``return_offsets_mapping``.

Either may carry a :class:`~imrepro.data.chat_template.ChatTemplate` (``tokenizers.<name>.chat_template``):
texts are then the template's renderings, which hold their own BOS, so the back-end adds none.

Both encode a whole batch into one :class:`FlatEncoding`: flat token ids, the offset where
each token starts in the concatenation of the batch's texts (``-1`` for tokens that are not
in the text, such as BOS), and the number of tokens of each text. Working on flat arrays
keeps the per-example Python overhead out of the hot path.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class FlatEncoding(NamedTuple):
    ids: np.ndarray  # int64, every token of the batch
    starts: np.ndarray  # int64, start offset in the concatenated texts; -1 = not in the text
    counts: np.ndarray  # int64, tokens per text

    def per_text(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(ids, starts) of each text, starts relative to that text (for tests and debugging)."""
        bounds = np.concatenate([[0], np.cumsum(self.counts)])
        out = []
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            starts = self.starts[lo:hi]
            base = starts[starts >= 0].min() if (starts >= 0).any() else 0
            out.append((self.ids[lo:hi], np.where(starts >= 0, starts - base, -1)))
        return out


@dataclass(frozen=True)
class TokenizerSpec:
    """How to build a tokenizer; mirrors one entry of ``tokenizers:`` in config.yaml."""

    name: str
    backend: str  # "sentencepiece" or "hf"
    path: str  # tokenizer.model file, or a HF model id / directory
    revision: str | None = None
    chat_template: str | None = None  # None: the Tulu format; "model" or a .jinja path: that template

    @classmethod
    def from_config(cls, name: str, entry: dict) -> TokenizerSpec:
        return cls(name=name, backend=entry["backend"], path=entry["path"],
                   revision=entry.get("revision"), chat_template=entry.get("chat_template"))


def _interleave(pieces: list[str], separator: str) -> list[str]:
    out = [pieces[0]]
    for piece in pieces[1:]:
        out += (separator, piece)
    return out


class SentencePieceBackend:
    """Llama-2 ids exactly as the authors' slow tokenizer produced them."""

    offset_unit = "bytes"
    # The strings the slow tokenizer split out as special tokens (``<pad>`` was added by the
    # authors' training script before tokenising).
    special_tokens = ("<s>", "</s>", "<unk>", "<pad>")

    template = None  # a ChatTemplate, set by load_backend

    def __init__(self, model_file: str | os.PathLike, num_threads: int = -1, add_bos: bool = True):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.num_threads = num_threads
        self.add_bos = add_bos  # False for rendered chat templates: their "<s>" is the BOS
        self.bos_id = self.sp.bos_id()
        self.eos_id = self.sp.eos_id()
        self.eos_text = self.sp.id_to_piece(self.eos_id)
        self.vocab_size = self.sp.get_piece_size()
        # ``<pad>`` gets the next free id, as in the authors' resized vocabulary (32000).
        self.special_ids = {"<s>": self.bos_id, "</s>": self.eos_id,
                            "<unk>": self.sp.unk_id(), "<pad>": self.vocab_size}
        self.pad_id = self.special_ids["<pad>"]
        self._split = re.compile("(" + "|".join(map(re.escape, self.special_tokens)) + ")")
        self._piece_bytes = self._piece_byte_lengths()

    @property
    def special_token_strings(self) -> dict[str, str]:
        """The strings a chat template knows as ``bos_token``, ``eos_token``, ... (``apply_chat_template``'s)."""
        return {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}

    def _piece_byte_lengths(self) -> np.ndarray:
        """Bytes of input text each piece covers (``▁`` stands for one space)."""
        lengths = np.zeros(self.vocab_size, dtype=np.int64)
        for i in range(self.vocab_size):
            if self.sp.is_byte(i):
                lengths[i] = 1
            elif not (self.sp.is_control(i) or self.sp.is_unknown(i)):
                lengths[i] = len(self.sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
        return lengths

    def encode_batch(self, texts: Sequence[str]) -> FlatEncoding:
        """Tokenise ``texts`` at once; offsets are bytes into the texts' concatenation."""
        # Plan every text as items in order: BOS, then chunks of plain text and special tokens.
        # Plain chunks are encoded in one multi-threaded SentencePiece call; offsets come from a
        # per-piece byte-length table, vectorised over the whole batch.
        item_ids: list = []  # token-id list per item
        item_offset: list[int] = []  # global byte offset where the item's text starts
        item_kind: list[int] = []  # 0 = BOS, 1 = special token, 2 = plain chunk
        chunk_items: list[int] = []
        chunks: list[str] = []
        chunk_bytes: list[int] = []
        counts = []
        position = 0
        for text in texts:
            first_item = len(item_ids)
            if self.add_bos:
                item_ids.append((self.bos_id,))
                item_offset.append(-1)
                item_kind.append(0)
            # str.split is much faster than the regex; most texts hold no special token but </s>
            parts = (self._split.split(text) if self._rare_special(text)
                     else _interleave(text.split("</s>"), "</s>"))
            for part in parts:
                if not part:
                    continue
                item_offset.append(position)
                size = len(part.encode("utf-8"))
                if part in self.special_ids:
                    item_ids.append((self.special_ids[part],))
                    item_kind.append(1)
                else:
                    chunk_items.append(len(item_ids))
                    chunks.append(part)
                    chunk_bytes.append(size)
                    item_ids.append(None)
                    item_kind.append(2)
                position += size
            counts.append(len(item_ids) - first_item)
        for index, ids in zip(chunk_items, self.sp.encode(chunks, num_threads=self.num_threads),
                              strict=True):
            item_ids[index] = ids

        item_lengths = np.fromiter(map(len, item_ids), dtype=np.int64, count=len(item_ids))
        ids = np.fromiter(itertools.chain.from_iterable(item_ids), dtype=np.int64,
                          count=int(item_lengths.sum()))
        item_of_token = np.repeat(np.arange(len(item_ids)), item_lengths)
        kind = np.asarray(item_kind, dtype=np.int8)[item_of_token]
        offset = np.asarray(item_offset, dtype=np.int64)[item_of_token]
        # bytes before each token within its item; plain chunks start with the dummy prefix
        piece_bytes = np.where(kind == 2, self._piece_bytes[ids], 0)
        before = np.cumsum(piece_bytes) - piece_bytes
        item_first = np.concatenate([[0], np.cumsum(item_lengths)[:-1]])
        within = before - before[item_first][item_of_token]
        starts = np.where(kind == 2, offset + np.maximum(within - 1, 0), offset)
        # Pieces must cover each chunk exactly (+1 byte of dummy prefix); where they do not
        # (pieces without a byte length, e.g. <unk>), take SentencePiece's own offsets.
        covered = np.add.reduceat(piece_bytes, item_first)[chunk_items] if chunk_items else []
        for k in np.flatnonzero(np.asarray(covered) != np.asarray(chunk_bytes) + 1):
            index = chunk_items[k]
            lo, hi = item_first[index], item_first[index] + item_lengths[index]
            proto_ids, proto_starts = self._encode_with_proto(chunks[k])
            if list(proto_ids) != list(ids[lo:hi]):
                raise RuntimeError(f"SentencePiece disagrees with itself on {chunks[k][:40]!r}")
            starts[lo:hi] = proto_starts + item_offset[index]
        tokens_per_text = np.add.reduceat(item_lengths, np.concatenate([[0], np.cumsum(counts)[:-1]])) \
            if counts else np.zeros(0, np.int64)
        return FlatEncoding(ids, starts, tokens_per_text)

    def _rare_special(self, text: str) -> bool:
        return any(token in text for token in self.special_tokens if token != "</s>")

    def _encode_with_proto(self, text: str) -> tuple[np.ndarray, np.ndarray]:
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
    template = None  # a ChatTemplate, set by load_backend: then texts are tokenised without special tokens

    def __init__(self, name_or_path: str, revision: str | None = None, tokenizer=None):
        from transformers import AutoTokenizer

        self.tok = tokenizer or AutoTokenizer.from_pretrained(name_or_path, revision=revision)
        if not self.tok.is_fast:
            raise ValueError(f"{name_or_path}: a fast tokenizer is required for offsets")
        self.bos_id = self.tok.bos_token_id
        self.eos_id = self.tok.eos_token_id
        self.eos_text = self.tok.eos_token
        # models without a pad token get one appended to the vocabulary, as the authors did
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else len(self.tok)

    def encode_batch(self, texts: Sequence[str]) -> FlatEncoding:
        enc = self.tok(list(texts), add_special_tokens=self.template is None, return_offsets_mapping=True)
        counts = np.fromiter(map(len, enc["input_ids"]), dtype=np.int64, count=len(texts))
        ids = np.fromiter(itertools.chain.from_iterable(enc["input_ids"]), dtype=np.int64,
                          count=int(counts.sum()))
        spans = np.fromiter(itertools.chain.from_iterable(itertools.chain.from_iterable(
            enc["offset_mapping"])), dtype=np.int64, count=2 * len(ids)).reshape(-1, 2)
        text_start = np.concatenate([[0], np.cumsum([len(t) for t in texts])[:-1]]).astype(np.int64)
        starts = spans[:, 0] + np.repeat(text_start, counts)
        starts[(spans[:, 0] == spans[:, 1]) & (ids == self.bos_id)] = -1  # the BOS it adds
        return FlatEncoding(ids, starts, counts)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids))

    @property
    def special_token_strings(self) -> dict[str, str]:
        from imrepro.data.chat_template import special_token_strings

        return special_token_strings(self.tok)


def load_backend(spec: TokenizerSpec) -> SentencePieceBackend | HFBackend:
    if spec.backend == "sentencepiece":
        backend = SentencePieceBackend(spec.path, add_bos=spec.chat_template is None)
    elif spec.backend == "hf":
        backend = HFBackend(spec.path, spec.revision)
    else:
        raise ValueError(f"tokenizer {spec.name!r}: unknown backend {spec.backend!r} "
                         "(expected 'sentencepiece' or 'hf')")
    if spec.chat_template is not None:
        from imrepro.data.chat_template import template_for

        backend.template = template_for(spec.chat_template, backend.special_token_strings, name=spec.name,
                                        tokenizer=getattr(backend, "tok", None))
    return backend
