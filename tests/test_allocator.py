"""Workers fix glibc's malloc thresholds so a case's speed does not hang on heap history."""

import os
import subprocess
import sys
import textwrap

import pytest

from bench.measure import allocator

glibc = pytest.mark.skipif(not os.confstr("CS_GNU_LIBC_VERSION"), reason="needs glibc")

# Allocate, touch and free an 8 MiB block 30 times; print the page faults per round. A block
# served by mmap faults on every page each time (2,048); one reused from the heap does not.
FAULTS_PER_ROUND = textwrap.dedent("""
    import ctypes, resource, sys
    from bench.measure import allocator
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    if sys.argv[1] == "pin":
        allocator.pin()
    else:  # glibc's start-up threshold, held fixed: every large block is a fresh mmap
        libc.mallopt(allocator.M_MMAP_THRESHOLD, 128 * 1024)
    size = 8 * 1024 * 1024
    def round_trip():
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        libc.free(ctypes.c_void_p(block))
    round_trip()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(30):
        round_trip()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 30)
""")


def faults_per_round(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", FAULTS_PER_ROUND, mode], check=True,
                          capture_output=True, text=True)
    return float(done.stdout)


@glibc
def test_pinned_thresholds_keep_large_blocks_on_the_heap():
    assert faults_per_round("pin") < 50
    assert faults_per_round("mmap") > 1500, "the control: 8 MiB from mmap faults every page"


@glibc
def test_pin_reports_what_it_set():
    done = subprocess.run([sys.executable, "-c",
                           "from bench.measure import allocator; print(allocator.pin())"],
                          check=True, capture_output=True, text=True)
    assert "'pinned': True" in done.stdout and "glibc" in done.stdout
    assert str(allocator.MMAP_THRESHOLD_BYTES) in done.stdout


@pytest.fixture(autouse=True)
def keep_state(monkeypatch):
    monkeypatch.setattr(allocator, "_state", allocator.state())


def test_other_allocators_are_left_alone_and_say_why(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc_version", lambda: None)
    state = allocator.pin()
    assert state["pinned"] is False and "not glibc" in state["why"]
    assert allocator.state() == state


@glibc
def test_a_preloaded_malloc_is_detected(monkeypatch):
    monkeypatch.setattr(allocator, "_malloc_is_from", lambda libc: False)
    state = allocator.pin()
    assert state["pinned"] is False and "LD_PRELOAD" in state["why"]


@glibc
def test_glibc_malloc_is_recognised_as_glibc():
    import ctypes
    import ctypes.util

    assert allocator._malloc_is_from(ctypes.CDLL(ctypes.util.find_library("c")))
