"""glibc's malloc, settled for a training loop.

glibc serves a block above its mmap threshold (128 KiB at start) with a fresh mapping, which is
handed back to the OS when freed; each step of a loop then faults every page of those blocks in
again. glibc raises the threshold by itself when such a block is freed (up to 32 MiB on a 64-bit
machine, with the trim threshold at twice it), so how fast a process trains depends on which
blocks happened to be freed first: the same LSTM step on a CPU took 16 or 28 ms with 0 or ~7,000
page faults. Fixing both thresholds where glibc's own rule ends them makes the fast case the
only one. Nothing a tensor holds changes; freed memory up to the trim threshold stays with the
process for the next step, as in torch's GPU caching allocator.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

#: glibc's ceiling for its adaptive mmap threshold on 64-bit machines, and its trim threshold then
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD

#: ``SEQTRAIN_MALLOC=0`` leaves malloc as the process found it
ENV = "SEQTRAIN_MALLOC"

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
#: a user's own malloc settings, or another allocator, which are left alone
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


@functools.cache
def settle_malloc() -> str:
    """Fix glibc's mmap and trim thresholds for this process (once); returns what was done, or
    why nothing was, in a few words (``metrics.json`` records it)."""
    if os.environ.get(ENV, "1") == "0":
        return f"default ({ENV}=0)"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "default (not glibc)"
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if any(os.environ.get(name) for name in _USER_SETTINGS) or "glibc.malloc" in tunables:
        return "default (malloc settings in the environment)"
    preloaded = os.environ.get("LD_PRELOAD", "")
    if any(name in preloaded for name in _OTHER_ALLOCATORS):
        return "default (another allocator preloaded)"
    try:
        libc = ctypes.CDLL("libc.so.6")
        done = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                 TRIM_THRESHOLD)
    except (OSError, AttributeError):
        done = 0
    if not done:
        return "default (mallopt refused)"
    return f"glibc, mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 20} MiB"
