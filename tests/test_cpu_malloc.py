"""``cpu_malloc_reuse``: with the switches, a process that allocates and frees the same large tensor again and
again stops faulting in fresh pages (glibc only: other C libraries ignore the variables)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from imrepro.core.cpu_malloc import MALLOC_REUSE_ENV

# 30 times a 64 MiB tensor, written and freed: minor page faults of the loop alone
LOOP = """
import resource, torch
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    torch.empty(16 * 2**20).fill_(1.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(extra_env: dict) -> int:
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_REUSE_ENV}
    env.update(OMP_NUM_THREADS="1", **extra_env)
    return int(subprocess.run([sys.executable, "-c", LOOP], env=env, capture_output=True, text=True, check=True,
                              timeout=120).stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the switches are glibc's")
def test_freed_tensors_are_reused_instead_of_faulted_in_again():
    default, reuse = page_faults({}), page_faults(MALLOC_REUSE_ENV)
    # default: every round maps fresh pages (30 x 16,384 faults of 4 KiB pages); reuse: only until the heap
    # holds enough freed memory (about 7 rounds on glibc 2.36)
    assert reuse <= default / 2, (reuse, default)
