"""Cases in worker processes: one per case, from a preloading forkserver (or spawn).

Workers come from a forkserver that has already imported torch and the worker's modules, so a
new worker costs a fork (~tens of ms) instead of a fresh interpreter and torch import (~2 s).
The forkserver never initialises CUDA, so forked workers can. Each worker is one case: peak
RSS, allocator and compile caches start clean, and a crash, OOM or hang ends only that case.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.engine.outcome import OnMessage, OnStart, Outcome, last_phase, outcome_from
from bench.measure import lifeline
from bench.measure.entry import worker_entry
from bench.measure.protocol import Done, Failed, Message, WorkerJob

#: A worker that sent its result but does not exit within this is killed (result kept).
EXIT_GRACE_S = 10.0
LOG_TAIL_CHARS = 4000


class ProcessBackend:
    """One worker process per case, from a preloading forkserver (or spawn, for comparison)."""

    def __init__(self, method: str = "forkserver") -> None:
        self.name = method
        self._ctx: Any = mp.get_context(method)
        #: The last worker, which sent its result and may still be exiting (see `run`).
        self._exiting: Any = None
        self._started = False
        if method == "forkserver":
            self._ctx.set_forkserver_preload(forkserver_preload())
        # Read by the forkserver (and spawned workers) to die with this process.
        os.environ[lifeline.PARENT_ENV] = str(os.getpid())

    def preload(self, modules: list[str]) -> None:
        """Have the forkserver import these too (a run's transformers families), so each
        worker does not import them again; only before the first worker starts it."""
        if self.name != "forkserver" or self._started or not modules:
            return
        preload = forkserver_preload()
        self._ctx.set_forkserver_preload([*preload[:-1], *modules, preload[-1]])

    def run(self, job: WorkerJob, timeout_s: float, on_message: OnMessage,
            on_start: OnStart | None = None) -> Outcome:
        self._started = True
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
                    return _timed_out(messages, timeout_s, "the worker was killed")
                if receiver.poll(min(remaining, 0.05)):
                    try:
                        message = receiver.recv()
                    except (EOFError, OSError):
                        return self._died(process, messages, job, deadline)
                    messages.append(message)
                    on_message(message)
                    if isinstance(message, (Done, Failed)):
                        self._exiting = process  # reaped when the next worker has started
                        outcome = outcome_from(messages)
                        outcome.pid = process.pid
                        return outcome
                elif not process.is_alive():
                    return self._died(process, messages, job, deadline)
        except BaseException:
            _stop(process)  # Ctrl-C in the parent: never leave a worker behind
            self._reap_exiting()
            raise
        finally:
            receiver.close()

    def call(self, fn: Callable[[], Any], timeout_s: float = 120.0) -> Any:
        """Run a small picklable function in a worker and return its result (env probing)."""
        self._started = True
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

    def _died(self, process: Any, messages: list[Message], job: WorkerJob,
              deadline: float) -> Outcome:
        process.join(1.0)
        if time.monotonic() >= deadline:  # this process was stopped; the watchdog was not
            outcome = _timed_out(messages, job.case.settings.timeout_s,
                                 "the worker's own watchdog ended it")
            outcome.pid, outcome.exitcode = process.pid, process.exitcode
            outcome.traceback = _log_tail(job.log_path) or None
            return outcome
        code = process.exitcode
        outcome = outcome_from(messages)
        outcome.pid, outcome.exitcode = process.pid, code
        tail = _log_tail(job.log_path)
        outcome.traceback = tail or None
        where = f" during {last_phase(messages)}" if last_phase(messages) else ""
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

    multiprocessing re-imports the parent's main module in every child (as `__mp_main__`).
    Importing it once in the forkserver lets children find it and what it imports loaded:
    by path when it is a real file (the `archbench` script), by name when it was run with
    `python -m` (its `__main__` guard keeps it from running). Nothing here may initialise
    CUDA: workers fork from this process. Scripts calling the runner need the usual
    `if __name__ == "__main__":` guard, as with any multiprocessing start method.
    """
    main_module = sys.modules.get("__main__")
    main_file = getattr(main_module, "__file__", None)
    spec_name = getattr(getattr(main_module, "__spec__", None), "name", None)
    if spec_name:  # `python -m NAME`; children skip a package's __main__ anyway
        main = [] if spec_name.endswith("__main__") else [spec_name]
    else:
        main = ["__main__"] if main_file and os.path.isfile(main_file) else []
    # The worker's entry and stages; torch._dynamo: the FLOP counter (a dispatch mode)
    # imports it on first use, ~1 s that every worker would pay again. Importing it does not
    # initialise CUDA. The freeze comes last, after everything else is loaded.
    # The lifeline comes first: from then on the server dies with this process.
    return [LIFELINE_MODULE, *main, "bench.measure.entry", "bench.measure.worker",
            "torch._dynamo", FREEZE_MODULE]


#: Imported first and last by the forkserver: see their docstrings.
LIFELINE_MODULE = "bench.engine.lifeline"
FREEZE_MODULE = "bench.engine.freeze"


def _stop(process: Any) -> None:
    """Kill a worker: it ignores SIGINT and SIGTERM (the parent decides what a signal means
    for the run), so SIGKILL it is."""
    if process.is_alive():
        process.kill()
        process.join(5.0)


def _timed_out(messages: list[Message], timeout_s: float, how: str) -> Outcome:
    outcome = outcome_from(messages)
    outcome.status, outcome.message = "timeout", (
        f"no result within the {timeout_s:g} s case timeout "
        f"(last phase: {last_phase(messages) or 'start'}); {how}. Raise `timeout_s` in the "
        "suite's [settings] if the case is just slow.")
    return outcome


def _log_tail(path: str | None) -> str:
    if not path:
        return ""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return crash_excerpt(text)


#: Where faulthandler's dump starts: a fatal signal, or the worker's watchdog firing.
_DUMP_START = re.compile(r"^(Fatal Python error: |Timeout \(\d+:\d\d:\d\d(\.\d+)?\)!)", re.M)
_MODULE_LIST = re.compile(r"^\s*Extension modules: .*(\n|$)", re.M)
_THREAD = re.compile(r"^(Current thread|Thread) 0x[0-9a-f]+ .*?(?=^\S|\Z)", re.M | re.S)


def crash_excerpt(log: str, limit: int = LOG_TAIL_CHARS) -> str:
    """What a dead worker's record keeps of its log: the frames that crashed.

    faulthandler ends its dump with the list of loaded extension modules (thousands of
    characters with torch), so the log's tail is mostly that list. Here the list goes, the
    crashing thread's stack comes first, then the other threads, then as much of the output
    before the crash as fits in `limit`. A log without a dump keeps its last characters.
    """
    starts = list(_DUMP_START.finditer(log))
    if not starts:
        return log[-limit:]
    start = starts[-1].start()
    dump = _MODULE_LIST.sub("", log[start:]).rstrip()
    header = dump.splitlines()[0]
    threads = [m.group(0).rstrip() for m in _THREAD.finditer(dump)]
    threads.sort(key=lambda block: not block.startswith("Current thread"))
    excerpt = "\n\n".join([header, *threads])[:limit]
    room = limit - len(excerpt) - 1
    before = log[:start].rstrip()
    if room > 0 and before:
        excerpt = f"{before[-room:]}\n{excerpt}"
    return excerpt
