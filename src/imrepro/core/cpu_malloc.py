"""``cpu_malloc_reuse: true``: glibc's malloc keeps freed memory for reuse instead of mapping fresh pages for every
large tensor. Set once in the workflow's process (and the tests'), so that every job it starts inherits it.

PyTorch's CPU allocator takes its memory from malloc, and glibc serves every block above its mmap threshold (at most
32 MiB; the logits of 1,000 tokens over Llama-2's 32k vocabulary are 128 MiB) with a fresh ``mmap`` that the kernel
zero-fills page by page on first touch and unmaps again on ``free``: a demo training job spent 5.3 s of its 17.4 s in
the kernel doing that, 1.0 s of 12.7 s with these switches, same weights, 1.2x the peak memory (BENCHMARKS.md,
"CPU allocator"). The switches are glibc's documented environment variables (mallopt(3)), read when a process
starts; other C libraries ignore them. For CPU runs (the demo profile, the tests): on a GPU node a job that once
held a large host buffer (a 7B checkpoint on its way to the GPU) would keep that memory for the rest of the job.
"""

from __future__ import annotations

import os

MALLOC_REUSE_ENV = {
    "MALLOC_MMAP_MAX_": "0",                 # no mmap'd blocks: large tensors come from the heap and return to it
    "MALLOC_TRIM_THRESHOLD_": str(1 << 40),  # never hand the heap's free top back to the kernel
}


def reuse_freed_memory(environ: dict | None = None) -> None:
    """Set every switch of :data:`MALLOC_REUSE_ENV` in ``environ`` (default ``os.environ``)."""
    (os.environ if environ is None else environ).update(MALLOC_REUSE_ENV)
