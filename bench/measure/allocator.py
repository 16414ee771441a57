"""Fix glibc malloc's thresholds in worker processes, so a case's speed does not depend on
what happened to the heap before its clock started.

glibc serves a block above `M_MMAP_THRESHOLD` (128 KiB at start) with a fresh `mmap` and
returns it on free, so every such allocation pays page faults on first touch: a CPU forward
pass whose activations are a few MiB takes thousands of faults per call. glibc also *raises*
the threshold whenever a mmapped block of up to 32 MiB is freed, after which the same blocks
come from the heap with no faults. Whether that has happened by the timed window depends on
incidental history (what the build freed, which thread freed it): the seed CNN, built the same
way in fresh processes, runs at 0 or ~3,000 faults per call, 13 or 19 ms, at random, and a
pruned model (whose transform frees the dense weights) looked 1.4x faster than the dense one
for that reason alone.

Workers therefore set both thresholds, which also switches the dynamic adjustment off. The
values are the state a long-running process reaches anyway: blocks up to 32 MiB reuse heap
memory, and the heap is not trimmed back between calls. Records carry what was set
(`info.allocator`), and why nothing was set where that is so (another allocator, not glibc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: The largest value glibc accepts for M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2), and
#: the ceiling its dynamic threshold climbs to.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES

_state: dict[str, Any] = {"pinned": False,
                          "why": "inline: the case ran in the caller's process, whose "
                                 "allocator is left as it is"}


def pin() -> dict[str, Any]:
    """Set glibc's mmap and trim thresholds for this process; return what was done."""
    global _state
    _state = _pin()
    return dict(_state)


def state() -> dict[str, Any]:
    """What `pin` did in this process (for the record)."""
    return dict(_state)


def _pin() -> dict[str, Any]:
    libc_version = _glibc_version()
    if libc_version is None:
        return {"pinned": False, "why": "not glibc: its allocator's defaults are kept"}
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not _malloc_is_from(libc):
        return {"pinned": False, "allocator": "preloaded",
                "why": "malloc is not glibc's (LD_PRELOAD, e.g. jemalloc or tcmalloc): "
                       "that allocator's own settings apply"}
    ok = (libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
          and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
    if not ok:
        return {"pinned": False, "allocator": f"glibc {libc_version}",
                "why": "mallopt refused the thresholds"}
    return {"pinned": True, "allocator": f"glibc {libc_version}",
            "mmap_threshold_bytes": MMAP_THRESHOLD_BYTES,
            "trim_threshold_bytes": TRIM_THRESHOLD_BYTES}


def _glibc_version() -> str | None:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None
    if not text or not text.startswith("glibc"):
        return None
    return text.split()[-1]


def _malloc_is_from(libc: ctypes.CDLL) -> bool:
    """True when the process's `malloc` is the one in `libc` (not an interposed allocator)."""
    process = ctypes.CDLL(None)
    return (ctypes.cast(process.malloc, ctypes.c_void_p).value
            == ctypes.cast(libc.malloc, ctypes.c_void_p).value)
