"""Where a case runs: its own worker process (default) or inline for debugging.

Workers come from a forkserver that has already imported torch and `bench.worker`, so a new
worker costs a fork (~tens of ms) instead of a fresh interpreter and torch import (~2 s). The
forkserver never initialises CUDA, so forked workers can. Each worker is one case: peak RSS,
allocator and compile caches start clean, and a crash, OOM or hang ends only that case.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.jobs import Message, WorkerJob, run_inline, worker_entry

ISOLATION_MODES = ("forkserver", "spawn", "inline")
#: A worker that sent its result but does not exit within this is killed (result kept).
EXIT_GRACE_S = 10.0
#: How long a timed-out worker gets to die on SIGTERM before SIGKILL.
TERM_GRACE_S = 1.0
LOG_TAIL_CHARS = 4000


@dataclass
class Outcome:
    """What came back from one case: a payload, or a failure status with its message."""

    status: str
    payload: dict[str, Any] | None = None
    message: str | None = None
    traceback: str | None = None
    phases: list[tuple[str, float]] = field(default_factory=list)
    pid: int | None = None
    exitcode: int | None = None


OnMessage = Callable[[Message], None]
#: Called with the pid of the process running the case as soon as it exists (samplers).
OnStart = Callable[[int], None]


class Backend(Protocol):
    name: str

    def run(self, job: WorkerJob, timeout_s: float, on_message: OnMessage,
            on_start: OnStart | None = None) -> Outcome: ...

    def call(self, fn: Callable[[], Any], timeout_s: float = 120.0) -> Any: ...

    def close(self) -> None: ...


def backend_for(mode: str) -> Backend:
    if mode == "inline":
        return InlineBackend()
    if mode in ("forkserver", "spawn"):
        return ProcessBackend(mode)
    raise ValueError(f"unknown isolation {mode!r}; use one of {ISOLATION_MODES}")


class InlineBackend:
    """Runs the case in this process: debuggers and prints work, but a crash or hang takes
    the whole run down and no timeout can be enforced."""

    name = "inline"

    def run(self, job: WorkerJob, timeout_s: float, on_message: OnMessage,
            on_start: OnStart | None = None) -> Outcome:
        messages: list[Message] = []
        if on_start is not None:
            on_start(os.getpid())

        def send(message: Message) -> None:
            messages.append(message)
            on_message(message)

        run_inline(job, send)
        return outcome_from(messages)

    def call(self, fn: Callable[[], Any], timeout_s: float = 120.0) -> Any:
        return fn()

    def close(self) -> None:
        pass


class ProcessBackend:
    """One worker process per case, from a preloading forkserver (or spawn, for comparison)."""

    def __init__(self, method: str = "forkserver") -> None:
        self.name = method
        self._ctx: Any = mp.get_context(method)
        #: The last worker, which sent its result and may still be exiting (see `run`).
        self._exiting: Any = None
        if method == "forkserver":
            self._ctx.set_forkserver_preload(forkserver_preload())

    def run(self, job: WorkerJob, timeout_s: float, on_message: OnMessage,
            on_start: OnStart | None = None) -> Outcome:
        receiver, sender = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(target=worker_entry, args=(job, sender), daemon=True,
                                    name=f"archbench-{job.case.case_id}")
        process.start()
        sender.close()  # the parent keeps only the reading end, so EOF means the worker died
        # The previous worker tears its address space down (~20 ms of kernel time) while this
        # one starts; it is gone before this one can reach its timed window.
        self._reap_exiting()
        messages: list[Message] = []
        deadline = time.monotonic() + timeout_s
        try:
            if on_start is not None:
                on_start(process.pid)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    _stop(process)
                    outcome = outcome_from(messages)
                    outcome.status, outcome.message = "timeout", (
                        f"no result within the {timeout_s:g} s case timeout "
                        f"(last phase: {_last_phase(messages) or 'start'}); the worker was "
                        "killed. Raise `timeout_s` in the suite's [settings] if the case is "
                        "just slow.")
                    return outcome
                if receiver.poll(min(remaining, 0.05)):
                    try:
                        message = receiver.recv()
                    except (EOFError, OSError):
                        return self._died(process, messages, job)
                    messages.append(message)
                    on_message(message)
                    if message[0] in ("done", "error"):
                        self._exiting = process  # reaped when the next worker has started
                        outcome = outcome_from(messages)
                        outcome.pid = process.pid
                        return outcome
                elif not process.is_alive():
                    return self._died(process, messages, job)
        except BaseException:
            _stop(process)  # Ctrl-C in the parent: never leave a worker behind
            self._reap_exiting()
            raise
        finally:
            receiver.close()

    def call(self, fn: Callable[[], Any], timeout_s: float = 120.0) -> Any:
        """Run a small picklable function in a worker and return its result (env probing)."""
        with self._ctx.Pool(1) as pool:
            return pool.apply_async(fn).get(timeout_s)

    def close(self) -> None:
        self._reap_exiting()

    def _reap_exiting(self) -> None:
        """Join the worker that already reported; one stuck in its exit is killed."""
        process, self._exiting = self._exiting, None
        if process is not None:
            process.join(EXIT_GRACE_S)
            _stop(process)

    def _died(self, process: Any, messages: list[Message], job: WorkerJob) -> Outcome:
        process.join(1.0)
        code = process.exitcode
        outcome = outcome_from(messages)
        outcome.pid, outcome.exitcode = process.pid, code
        tail = _log_tail(job.log_path)
        outcome.traceback = tail or None
        where = f" during {_last_phase(messages)}" if _last_phase(messages) else ""
        if code is not None and code < 0:
            sig = signal.Signals(-code)
            if sig == signal.SIGKILL:
                outcome.status = "oom"
                outcome.message = (f"worker killed by SIGKILL{where} without archbench asking; "
                                   "on Linux that is almost always the kernel's OOM killer")
            else:
                outcome.status = "crashed"
                outcome.message = f"worker died from {sig.name} ({signal.strsignal(sig)}){where}"
        else:
            outcome.status = "crashed"
            outcome.message = f"worker exited with code {code}{where} before reporting a result"
        return outcome


def forkserver_preload() -> list[str]:
    """Modules the forkserver imports once, so each worker starts with them loaded.

    multiprocessing re-imports the parent's `__main__` in every child. Importing it once in
    the forkserver (when it is a real file, e.g. the `archbench` script) lets children skip
    that; a `python -m` main is re-run in each child, cheaply when what it imports (bench's
    parent-side modules) is already loaded. Nothing here may initialise CUDA: workers fork
    from this process. Scripts calling the runner need the usual
    `if __name__ == "__main__":` guard, as with any multiprocessing start method.
    """
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    main = ["__main__"] if main_file and os.path.isfile(main_file) else []
    # torch._dynamo: the FLOP counter (a dispatch mode) imports it on first use, ~1 s that
    # every worker would pay again. Importing it does not initialise CUDA.
    return [*main, "bench.worker", "torch._dynamo", "bench.runner", "bench.cli",
            "bench.forkserver_ready"]


def outcome_from(messages: list[Message]) -> Outcome:
    """The Outcome a list of worker messages amounts to (the last final message wins)."""
    phases = [(m[1], m[2]) for m in messages if m[0] == "phase"]
    final = next((m for m in reversed(messages) if m[0] in ("done", "error")), None)
    if final is None:
        return Outcome(status="crashed", message="no result", phases=phases)
    if final[0] == "done":
        return Outcome(status="ok", payload=final[1], phases=phases)
    _, status, message, trace = final
    return Outcome(status=status, message=message, traceback=trace, phases=phases)


def _last_phase(messages: list[Message]) -> str | None:
    phases = [m[1] for m in messages if m[0] == "phase"]
    return phases[-1] if phases else None


def _stop(process: Any) -> None:
    if process.is_alive():
        process.terminate()
        process.join(TERM_GRACE_S)
    if process.is_alive():
        process.kill()
        process.join(5.0)


def _log_tail(path: str | None) -> str:
    if not path:
        return ""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return text[-LOG_TAIL_CHARS:]
