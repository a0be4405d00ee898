"""The tokenised role record: one tokenisation per (dataset, tokenizer, max length).

For every example it stores the token ids of the Tulu-format text and, per token, a
:class:`~imrepro.chat_format.Role` class. Label policies (IT, IM, seed-IM, weighted) are
pure functions of the roles, so every training arm sees the identical token stream.

Stored as one Parquet file (columns ``id``, ``input_ids: list<int32>``,
``roles: list<uint8>``, ``n_tokens_full``), with the build parameters in the schema
metadata; Hugging Face ``datasets`` and pandas read it directly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from imrepro.atomic import atomic_path
from imrepro.chat_format import Role, render_segments
from imrepro.messages import Example

BATCH = 512


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
    if unit == "bytes":
        sizes = [len(s.text.encode("utf-8")) for s in segments]
    else:
        sizes = [len(s.text) for s in segments]
    return np.cumsum(sizes, dtype=np.int64), np.array([s.role for s in segments], dtype=np.uint8)


def encode_examples(examples: Sequence[Example], backend, max_length: int | None) -> Iterator[tuple]:
    """Yield ``(id, input_ids, roles, n_tokens_full)`` per example, in order."""
    for lo in range(0, len(examples), BATCH):
        batch = examples[lo : lo + BATCH]
        rendered = [render_segments(ex["messages"], backend.eos_text) for ex in batch]
        encoded = backend.encode_batch(["".join(s.text for s in segs) for segs in rendered])
        for ex, segs, (ids, starts) in zip(batch, rendered, encoded, strict=True):
            ends, seg_roles = _segment_table(segs, backend.offset_unit)
            roles = assign_roles(starts, ends, seg_roles)
            n_full = len(ids)
            if max_length is not None:
                ids, roles = ids[:max_length], roles[:max_length]
            yield str(ex.get("id", lo)), ids.astype(np.int32), roles, n_full


def build_role_record(
    examples: Sequence[Example], backend, max_length: int | None, metadata: dict | None = None,
    progress: bool = True,
) -> RoleRecord:
    ids, tokens, roles, full = [], [], [], []
    rows = encode_examples(examples, backend, max_length)
    for ex_id, tok, role, n_full in tqdm(rows, total=len(examples), desc="role record",
                                         unit="ex", disable=not progress, mininterval=1.0):
        ids.append(ex_id)
        tokens.append(tok)
        roles.append(role)
        full.append(n_full)
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    meta = dict(metadata or {})
    meta.update(max_length=max_length, role_names=[r.name for r in Role],
                n_examples=len(ids), n_tokens=int(offsets[-1]),
                n_truncated=int(sum(f > len(t) for f, t in zip(full, tokens, strict=True))))
    return RoleRecord(
        ids=ids,
        input_ids=np.concatenate(tokens) if tokens else np.zeros(0, np.int32),
        roles=np.concatenate(roles) if roles else np.zeros(0, np.uint8),
        offsets=offsets,
        n_tokens_full=np.array(full, dtype=np.int64),
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
    table = table.replace_schema_metadata({"imrepro.role_record": json.dumps(record.metadata)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def load_role_record(path: str | os.PathLike) -> RoleRecord:
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"imrepro.role_record"])
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
