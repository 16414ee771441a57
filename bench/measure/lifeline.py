"""Processes archbench starts die with the process that started them.

When the `archbench` process is killed outright (SIGKILL from a CI runner or the OOM killer)
nothing of it runs any more: no `finally`, no timeout. On Linux the kernel can still do the
job: `prctl(PR_SET_PDEATHSIG)` asks it to send a signal to a process when its parent exits.
The forkserver asks for it against the archbench process, and every process it forks (each
case's worker) asks for it against the forkserver, so killing archbench takes the chain down;
multiprocessing's resource tracker then sees its last writer close and exits too.

The forkserver makes the request first thing (`bench.engine.lifeline` is its first preload),
but the parent may already be gone by then; `die_with_parent` compares the parent with the
expected one (`ARCHBENCH_PARENT_PID`, set by the process backend) and exits if it changed.
The kernel ties the request to the parent *thread*: the forkserver must be started from a
thread that lives as long as the runs do (the main thread, as the CLI and pytest do).
Elsewhere (macOS) there is no such request: the worker's own watchdog (`WATCHDOG_GRACE_S`
past the case timeout) still ends a hung case.

Torch-free (stdlib only): the parent imports it for `PARENT_ENV`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

#: Environment variable carrying the pid of the archbench process to the forkserver.
PARENT_ENV = "ARCHBENCH_PARENT_PID"
#: A worker ends itself this long after its case timeout if the parent has not killed it.
WATCHDOG_GRACE_S = 5.0
_PR_SET_PDEATHSIG = 1
_forking_pid: int | None = None


def die_with_parent(expected_parent: int | None = None, sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send `sig` to this process when its parent exits; True when it will.

    With `expected_parent`, a process whose parent is already someone else (the parent died
    before the request) exits at once with status 1.
    """
    armed = _prctl_pdeathsig(sig)
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)
    return armed


def _prctl_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _before_fork() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


def _after_fork_in_child() -> None:
    die_with_parent(_forking_pid)


def chain_children() -> None:
    """Every process forked from this one from now on dies with it (hooks on `os.fork`)."""
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def parent_from_env() -> int | None:
    value = os.environ.get(PARENT_ENV, "")
    return int(value) if value.isdigit() else None
