"""The tokenised role record: one tokenisation per (dataset, tokenizer, max length).

For every example it stores the token ids of the Tulu-format text (or of the tokenizer's chat
template, :mod:`imrepro.data.chat_template`) and, per token, a
:class:`~imrepro.data.chat_format.Role` class. Label policies (IT, IM, seed-IM, weighted) are
pure functions of the roles, so every training arm sees the identical token stream.

Stored as one Parquet file (columns ``id``, ``input_ids: list<int32>``,
``roles: list<uint8>``, ``n_tokens_full``), with the build parameters in the schema
metadata; Hugging Face ``datasets`` and pandas read it directly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from imrepro.core.atomic import atomic_path
from imrepro.data.chat_format import Role, Segment, render_segments
from imrepro.data.messages import Example

BATCH = 4096  # examples per tokenizer call: large batches amortise thread start-up


@dataclass
class RoleRecord:
    """In-memory role record: flat token/role arrays plus per-example offsets."""

    ids: list[str]
    input_ids: np.ndarray  # int32, all examples concatenated
    roles: np.ndarray  # uint8, aligned with input_ids
    offsets: np.ndarray  # int64, len(ids) + 1; example i is [offsets[i], offsets[i+1])
    n_tokens_full: np.ndarray  # int64, length before truncation
    metadata: dict

    def __len__(self) -> int:
        return len(self.ids)

    def example(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return self.input_ids[lo:hi], self.roles[lo:hi]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def head(self, n: int | None) -> RoleRecord:
        """The first ``n`` examples (all when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        end = self.offsets[n]
        return RoleRecord(self.ids[:n], self.input_ids[:end], self.roles[:end], self.offsets[: n + 1],
                          self.n_tokens_full[:n], self.metadata)


def assign_roles(starts: np.ndarray, segment_ends: np.ndarray, segment_roles: np.ndarray) -> np.ndarray:
    """Role of each token = role of the segment that contains its first character.

    ``starts`` are token start offsets (-1 for BOS); ``segment_ends`` the exclusive end
    offsets of the rendered segments, in the same unit.
    """
    index = np.searchsorted(segment_ends, starts, side="right")
    roles = segment_roles[np.minimum(index, len(segment_roles) - 1)]
    roles[starts < 0] = Role.BOS
    return roles.astype(np.uint8)


def _segment_table(segments, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """Exclusive end offsets and roles of rendered segments (one example or a whole batch)."""
    if unit == "bytes":
        sizes = [len(s.text.encode("utf-8")) for s in segments]
    else:
        sizes = [len(s.text) for s in segments]
    return np.cumsum(sizes, dtype=np.int64), np.array([s.role for s in segments], dtype=np.uint8)


def render_example(example: Example, backend, index: int = 0) -> list[Segment]:
    """The role-labelled text of one example: the back-end's chat template, or the Tulu format."""
    if backend.template is not None:
        return backend.template.segments(example["messages"], conversation=str(example.get("id", index)))
    return render_segments(example["messages"], backend.eos_text)


def encode_batch(examples: Sequence[Example], backend, max_length: int | None):
    """Flat ``(input_ids, roles, kept_lengths, full_lengths)`` of a batch of examples."""
    rendered = [render_example(ex, backend, i) for i, ex in enumerate(examples)]
    encoding = backend.encode_batch(["".join(s.text for s in segs) for segs in rendered])
    # The texts are concatenated in order, so one searchsorted assigns every token of the batch.
    ends, seg_roles = _segment_table([s for segs in rendered for s in segs], backend.offset_unit)
    roles = assign_roles(encoding.starts, ends, seg_roles)
    full = encoding.counts
    if max_length is None:
        return encoding.ids.astype(np.int32), roles, full, full
    first = np.concatenate([[0], np.cumsum(full)[:-1]])
    position = np.arange(len(encoding.ids)) - np.repeat(first, full)
    keep = position < max_length
    return encoding.ids[keep].astype(np.int32), roles[keep], np.minimum(full, max_length), full


def build_role_record(
    examples: Sequence[Example], backend, max_length: int | None, metadata: dict | None = None,
    progress: bool = True,
) -> RoleRecord:
    tokens, roles, kept, full = [], [], [], []
    with tqdm(total=len(examples), desc="role record", unit="ex", disable=not progress,
              mininterval=1.0) as bar:
        for lo in range(0, len(examples), BATCH):
            batch = examples[lo : lo + BATCH]
            ids, batch_roles, batch_kept, batch_full = encode_batch(batch, backend, max_length)
            tokens.append(ids)
            roles.append(batch_roles)
            kept.append(batch_kept)
            full.append(batch_full)
            bar.update(len(batch))
    kept_lengths = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    full_lengths = np.concatenate(full) if full else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(kept_lengths)]).astype(np.int64)
    meta = dict(metadata or {})
    meta.update(max_length=max_length, role_names=[r.name for r in Role],
                n_examples=len(examples), n_tokens=int(offsets[-1]),
                n_truncated=int((full_lengths > kept_lengths).sum()))
    return RoleRecord(
        ids=[str(ex.get("id", i)) for i, ex in enumerate(examples)],
        input_ids=np.concatenate(tokens) if tokens else np.zeros(0, np.int32),
        roles=np.concatenate(roles) if roles else np.zeros(0, np.uint8),
        offsets=offsets,
        n_tokens_full=full_lengths.astype(np.int64),
        metadata=meta,
    )


def save_role_record(record: RoleRecord, path: str | os.PathLike) -> None:
    offsets = pa.array(record.offsets.astype(np.int32))
    table = pa.table({
        "id": pa.array(record.ids, pa.string()),
        "input_ids": pa.ListArray.from_arrays(offsets, pa.array(record.input_ids, pa.int32())),
        "roles": pa.ListArray.from_arrays(offsets, pa.array(record.roles, pa.uint8())),
        "n_tokens_full": pa.array(record.n_tokens_full, pa.int64()),
    })
    table = table.replace_schema_metadata({"imrepro.data.role_record": json.dumps(record.metadata)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def load_role_record(path: str | os.PathLike) -> RoleRecord:
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"imrepro.data.role_record"])
    input_ids = table.column("input_ids").combine_chunks()
    roles = table.column("roles").combine_chunks()
    return RoleRecord(
        ids=table.column("id").to_pylist(),
        input_ids=input_ids.values.to_numpy(),
        roles=roles.values.to_numpy(),
        offsets=input_ids.offsets.to_numpy().astype(np.int64),
        n_tokens_full=table.column("n_tokens_full").to_numpy(),
        metadata=meta,
    )
