"""The counting backend: one long-lived worker under callgrind that counts case after case.

Importing torch under valgrind takes minutes, so paying it per case (as
`torch.utils.benchmark.Timer.collect_callgrind` does, one valgrind process per statement)
would make a counted suite unusable. `CountingWorker` starts one process under
`valgrind --tool=callgrind --collect-atstart=no`, which imports torch once and then takes
cases one after another on a pipe (`bench.measure.counting_worker`). Isolation is kept where
it matters: a case that kills the worker is recorded `crashed` (or `timeout`), and the next
case starts a fresh worker. What callgrind cannot count (CUDA work) is `unsupported` before
any worker starts.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.engine.outcome import OnMessage, OnStart, Outcome, last_phase, outcome_from
from bench.measure.protocol import Done, Failed, Message, Ready, WorkerJob

COUNTER = "callgrind"
#: Importing torch under valgrind: ~1 minute on an idle 2-core machine, several when loaded.
STARTUP_TIMEOUT_S = 1800.0
#: How long a worker gets to exit after its pipe closes before it is killed.
EXIT_GRACE_S = 10.0
LOG_TAIL_CHARS = 4000
WORKER_MODULE = "bench.measure.counting_worker"
#: The environment of a counting worker, per `count_isa`: one thread everywhere, and for
#: "sse4.2" the SSE4.2/baseline kernels of MKL, oneDNN and ATen (see Settings.count_isa).
ISA_ENV: dict[str, dict[str, str]] = {
    "sse4.2": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41",
               "ATEN_CPU_CAPABILITY": "default"},
    "native": {},
}
FIXED_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


class CounterUnavailable(Exception):
    """No counting here (valgrind missing, torch without valgrind support): every counted
    case is `unsupported` with this reason."""


def valgrind_version(valgrind: str = "valgrind") -> str:
    """`valgrind --version` without the prefix ("3.19.0"); CounterUnavailable if absent."""
    path = shutil.which(valgrind)
    if path is None:
        raise CounterUnavailable(f"{valgrind!r} is not on the PATH; instruction counting needs "
                                 "valgrind (Debian/Ubuntu: apt-get install valgrind)")
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                             check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise CounterUnavailable(f"{path} --version failed: {exc}") from exc
    return out.removeprefix("valgrind-")


def counter_label(isa: str, valgrind: str = "valgrind") -> str:
    """What counts, for the run's environment fingerprint: another valgrind or another
    kernel choice counts the same code differently, so either is an environment mismatch for
    the gate ("callgrind 3.19.0 isa=sse4.2")."""
    try:
        return f"{COUNTER} {valgrind_version(valgrind)} isa={isa}"
    except CounterUnavailable as exc:
        return f"{COUNTER} unavailable: {exc}"


def perf_instructions() -> str:
    """Whether hardware counters could count instructions here (`perf stat -e
    instructions`), in words for the run's environment: the fast counter where they work,
    and why callgrind counts where they do not (VMs rarely expose the PMU)."""
    perf = shutil.which("perf")
    if perf is None:
        return "unavailable: perf is not installed"
    try:
        done = subprocess.run([perf, "stat", "-x", ",", "-e", "instructions", "true"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable: {exc}"
    fields = next((line.split(",") for line in done.stderr.splitlines()
                   if ",instructions" in line), None)
    if fields is None:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"unavailable: perf stat -e instructions failed ({last})"
    if not fields[0].strip().isdigit():
        return (f"unavailable: perf stat -e instructions says {fields[0].strip()} (no "
                "hardware counters here, as in most VMs)")
    return "available"


class CountingWorker:
    """A Backend whose cases run in one counting worker, restarted after a crash."""

    name = "callgrind"

    def __init__(self, isa: str = "sse4.2", *, valgrind: str = "valgrind",
                 python: str = sys.executable, module: str = WORKER_MODULE,
                 startup_timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        if isa not in ISA_ENV:
            raise ValueError(f"unknown count_isa {isa!r}; use one of {sorted(ISA_ENV)}")
        self.isa = isa
        self._valgrind = valgrind
        self._python = python
        self._module = module
        self._startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Any = None
        self._scratch: Path | None = None
        self._unavailable: str | None = None
        self._version: str | None = None
        #: Facts about the current worker, added to each record it measures.
        self._facts: dict[str, Any] = {}
        #: (when, log) of a worker spawned but not yet ready.
        self._starting: tuple[float, Path] | None = None
        self.workers_started = 0

    # ---- Backend ---------------------------------------------------------------------------
    def run(self, job: WorkerJob, timeout_s: float, on_message: OnMessage,
            on_start: OnStart | None = None) -> Outcome:
        if job.case.settings.count_isa != self.isa:
            raise ValueError(f"case {job.case.name} counts with count_isa = "
                             f"{job.case.settings.count_isa!r}; this worker with {self.isa!r}")
        if job.case.device_kind != "cpu":
            return Outcome(status="unsupported", message=(
                f"instruction counting (measure = \"instructions\") counts CPU instructions "
                f"under callgrind; the work of a {job.case.device} case runs on the GPU, "
                "which valgrind cannot see. Time it instead."))
        fresh = self._process is None or self._starting is not None
        try:
            self._ensure_worker()
        except CounterUnavailable as exc:
            return Outcome(status="unsupported", message=str(exc))
        except _StartFailed as exc:
            return Outcome(status="crashed", message=str(exc), traceback=exc.log or None)
        assert self._process is not None
        if on_start is not None:
            on_start(self._process.pid)
        self._conn.send(job)
        messages: list[Message] = []
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._stop(kill=True)
                    outcome = outcome_from(messages)
                    outcome.status, outcome.message = "timeout", (
                        f"no count within the {timeout_s:g} s case timeout (last phase: "
                        f"{last_phase(messages) or 'start'}); the counting worker was "
                        "killed and the next case starts a new one. Under valgrind a call "
                        "runs ~50x slower: raise `timeout_s`, or lower `count_calls`.")
                    return self._annotate(outcome, fresh)
                if self._conn.poll(min(remaining, 0.05)):
                    try:
                        message = self._conn.recv()
                    except (EOFError, OSError):
                        return self._annotate(self._died(messages, job), fresh)
                    messages.append(message)
                    on_message(message)
                    if isinstance(message, (Done, Failed)):
                        return self._annotate(outcome_from(messages), fresh)
                elif self._process.poll() is not None:
                    return self._annotate(self._died(messages, job), fresh)
        except BaseException:
            self._stop(kill=True)  # Ctrl-C in the parent: never leave a worker behind
            raise

    def call(self, fn: Callable[[], Any], timeout_s: float = 120.0) -> Any:
        raise NotImplementedError("the counting worker runs cases only")

    def close(self) -> None:
        self._stop()

    def start(self) -> None:
        """Start the worker now without waiting for it: its first case waits for it to be
        ready. Workers started together import torch under valgrind at the same time (the
        two sides of a counted A/B run). A worker that cannot start says so to that case."""
        if self._unavailable is not None or self._process is not None:
            return
        with contextlib.suppress(CounterUnavailable):
            self._spawn()

    # ---- the worker ------------------------------------------------------------------------
    def _ensure_worker(self) -> None:
        if self._unavailable is not None:
            raise CounterUnavailable(self._unavailable)
        if self._starting is None:
            if self._process is not None and self._process.poll() is None:
                return
            self._stop()
            self._spawn()
        self._finish_start()  # also says why a worker started early has died

    def _spawn(self) -> None:
        try:
            self._version = self._version or valgrind_version(self._valgrind)
        except CounterUnavailable as exc:
            self._unavailable = str(exc)
            raise
        self._scratch = Path(tempfile.mkdtemp(prefix="archbench-callgrind-"))
        base = self._scratch / "callgrind.out.%p"
        log = self._scratch / "worker.log"
        parent_conn, child_conn = mp.Pipe(duplex=True)
        env = {**os.environ, **FIXED_ENV, **ISA_ENV[self.isa]}
        command = [self._valgrind, "--tool=callgrind", "--collect-atstart=no",
                   f"--callgrind-out-file={base}", self._python, "-m", self._module,
                   str(child_conn.fileno()), str(base)]
        started = time.monotonic()
        with open(log, "wb") as log_file:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file,
                                             stderr=subprocess.STDOUT, env=env,
                                             pass_fds=(child_conn.fileno(),),
                                             start_new_session=True)
        child_conn.close()
        self._conn = parent_conn
        self.workers_started += 1
        self._starting = (started, log)

    def _finish_start(self) -> None:
        assert self._starting is not None
        started, log = self._starting
        self._starting = None
        ready = self._wait_ready(started + self._startup_timeout_s, log)
        if not ready.under_valgrind:
            self._unavailable = "the counting worker is not running under valgrind"
        elif ready.error is not None:
            self._unavailable = f"the counting worker cannot count: {ready.error}"
        if self._unavailable is not None:
            self._stop(kill=True)
            raise CounterUnavailable(self._unavailable)
        self._facts = {"counter": COUNTER, "valgrind_version": self._version,
                       "isa": self.isa, "counting_worker_pid": ready.pid,
                       "counting_worker_start_s": round(time.monotonic() - started, 3),
                       "counting_worker_cases": 0}

    def _wait_ready(self, deadline: float, log: Path) -> Ready:
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._conn.poll(0.2):
                try:
                    message = self._conn.recv()
                except (EOFError, OSError):
                    break
                if isinstance(message, Ready):
                    return message
                self._stop(kill=True)
                raise _StartFailed(f"the counting worker sent {type(message).__name__} before "
                                   "saying it was ready", _tail(log))
            elif self._process.poll() is not None:
                break
        else:
            self._stop(kill=True)
            raise _StartFailed(f"the counting worker did not start within "
                               f"{self._startup_timeout_s:g} s (torch's import under valgrind)",
                               _tail(log))
        code = self._process.poll()
        tail = _tail(log)
        self._stop(kill=True)
        raise _StartFailed(f"the counting worker exited with code {code} while starting "
                           "(its output is in this record's traceback)", tail)

    def _annotate(self, outcome: Outcome, fresh: bool) -> Outcome:
        """Say which worker counted the case, and whether it paid the worker's start."""
        if self._facts:
            self._facts["counting_worker_cases"] += 1
            facts = {**self._facts, "counting_worker_fresh": fresh}
            if outcome.done is not None:
                outcome.done.findings.info.setdefault("counting", {}).update(facts)
            outcome.pid = facts["counting_worker_pid"]
        return outcome

    def _died(self, messages: list[Message], job: WorkerJob) -> Outcome:
        process = self._process
        code = None
        if process is not None:
            try:
                code = process.wait(1.0)
            except subprocess.TimeoutExpired:
                code = None
        tail = _tail(Path(job.log_path)) if job.log_path else ""
        if self._scratch is not None:
            tail = (tail + "\n" + _tail(self._scratch / "worker.log")).strip()
        self._stop(kill=True)
        outcome = outcome_from(messages)
        outcome.exitcode = code
        outcome.traceback = tail[-LOG_TAIL_CHARS:] or None
        where = f" during {last_phase(messages)}" if last_phase(messages) else ""
        outcome.status = "crashed"
        if code is not None and code < 0:
            sig = signal.Signals(-code)
            outcome.message = (f"the counting worker died from {sig.name}{where}; the next "
                               "case starts a new one")
        else:
            outcome.message = (f"the counting worker exited with code {code}{where} before "
                               "reporting a count; the next case starts a new one")
        return outcome

    def _stop(self, *, kill: bool = False) -> None:
        """End the worker: EOF on its pipe lets a healthy one exit (valgrind writes its last
        dump); `kill` for one that hangs or must not finish."""
        process, self._process = self._process, None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        if process is not None and process.poll() is None:
            if kill:
                process.kill()
            try:
                process.wait(EXIT_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5.0)
        scratch, self._scratch = self._scratch, None
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        self._facts = {}
        self._starting = None


class _StartFailed(Exception):
    def __init__(self, message: str, log: str) -> None:
        super().__init__(message)
        self.log = log


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return ""
