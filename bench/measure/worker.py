"""What runs inside a case's worker process: build, warm up, time, report back.

The parent sends a `WorkerJob`; the worker answers with the messages of
`bench.measure.protocol` on a pipe: a `Phase` as it enters build / warmup / timed /
teardown (parent-side samplers align with these), then exactly one `Done` or `Failed`.

Imported by the forkserver at start (preloading torch), so it must never initialise CUDA at
import time.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from bench.env import auto_threads
from bench.errors import BuildError, UnsupportedCase
from bench.measure import affinity, allocator, capability, lifeline
from bench.measure.clock import Clock, CudaEventClock, PerfCounterClock
from bench.measure.generation import Generation, per_token
from bench.measure.models.build import BuiltModel, Inputs, build
from bench.measure.probes.attach import WorkerProbes
from bench.measure.probes.host_memory import faults_per_call
from bench.measure.protocol import Done, Failed, Findings, Phase, Send, WorkerJob
from bench.measure.stages import prepare
from bench.measure.timing import TimingResult, measure
from bench.measure.transforms.precision import tf32_flags
from bench.plain import plain

if TYPE_CHECKING:
    from bench.measure.counting import Dumps


def worker_main(job: WorkerJob, conn: Any) -> None:
    """Entry point of a worker process."""
    # The parent owns Ctrl-C and SIGTERM (sent to the whole process group by `timeout` and
    # CI cancellation): it decides whether to stop the worker and what to record.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    lifeline.die_with_parent()
    if job.log_path:
        redirect_output(job.log_path)
    # The parent enforces the case timeout; should it stop doing so (stopped, or gone where
    # the kernel cannot tell us), this C thread ends the worker anyway, leaving its stack in
    # the log. It needs no GIL, so a case stuck in native code cannot hold it off.
    faulthandler.dump_traceback_later(job.case.settings.timeout_s + lifeline.WATCHDOG_GRACE_S,
                                      exit=True)
    allocator.pin()
    affinity.pin(job.case.settings)
    try:
        run_case(job, conn.send)
    finally:
        conn.close()


def run_case(job: WorkerJob, send: Send, prebuilt: Prebuilt | None = None,
             counter: Dumps | None = None) -> None:
    """Run one case and send exactly one final message; used inline and in workers.

    `prebuilt` (a model and its input) replaces the build step: the pytest fixture measures
    a module the caller already holds, through the same stages as a suite case. `counter`
    is the counting worker's callgrind access, for cases with measure = "instructions".
    """
    try:
        timing, findings = execute(job, send, prebuilt, counter)
    except UnsupportedCase as exc:
        send(Failed("unsupported", str(exc)))
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        message = str(exc) if isinstance(exc, BuildError) else f"{type(exc).__name__}: {exc}"
        send(Failed("oom" if is_oom(exc) else "failed", message, traceback.format_exc()))
    else:
        send(Done(timing=plain(timing.to_dict()) if timing is not None else None,
                  findings=Findings(metrics=plain(findings.metrics), info=plain(findings.info),
                                    warnings=plain(findings.warnings))))


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or
                                              "can't allocate memory" in text)


Prebuilt = tuple[BuiltModel, Inputs]


class PhaseBus:
    """Announces phases to the parent (for samplers outside the worker) and to listeners
    inside it (collectors that reset or read per-phase counters)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._listeners: list[Callable[[str], None]] = []

    def subscribe(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    def __call__(self, name: str) -> None:
        for listener in self._listeners:
            listener(name)
        self._send(Phase(name, time.time()))


def execute(job: WorkerJob, send: Send, prebuilt: Prebuilt | None = None,
            counter: Dumps | None = None) -> tuple[TimingResult | None, Findings]:
    """Build, prepare and time (or count) one case. Stages, in order:

    capability check -> build (seeded) -> prepare (device, reference output, pruning,
    precision, statistics, fidelity, step, compile; see bench.measure.stages) -> warm-up and timed
    window -> profile (when asked) -> teardown. Everything a stage learns goes into
    `Findings`; collectors (`bench.measure.probes.attach`) hook in at the phase messages.
    A counted case runs the same stages and replaces the timed window by counted samples
    (`bench.measure.counting`).
    """
    case, settings = job.case, job.case.settings
    if settings.counted and counter is None:
        raise UnsupportedCase("measure = \"instructions\" is counted only in archbench's "
                              "counting worker under valgrind (`archbench run`, or pytest's "
                              "suite items); this process cannot count")
    if settings.counted and case.mode == "generate":
        raise UnsupportedCase('mode "generate" is timed, not counted: use measure = "time"')
    phase = PhaseBus(send)
    out = Findings()
    probes = WorkerProbes.attach(job, phase, out)
    device = torch.device(case.device)
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch_threads(settings.threads or auto_threads()))
        out.info["tf32"] = stack.enter_context(tf32_flags(device, case.precision))
        out.info["allocator"] = allocator.state()
        out.info["cpu_affinity"] = affinity.state()
        out.warnings += capability.check(case)
        phase("build")
        built_at = time.perf_counter()
        built, inputs = prebuilt or build(case, job.search_path)
        out.info.update(built.info)
        prepared = prepare(case, built, inputs, out.metrics, out.info, stack)
        out.metrics["build_s"] = time.perf_counter() - built_at
        if "fidelity_note" in out.info:
            out.warnings.append(out.info["fidelity_note"])
        probes.after_build(prepared, case.batch_size)
        timing: TimingResult | None = None
        with prepared.grad_mode():
            if counter is not None and settings.counted:
                _count(job, prepared.step, counter, out, phase)
            elif prepared.generation is not None:
                timing = _generate(prepared.generation, device, job, out, phase)
            else:
                timing = replace(measure(prepared.step, clock_for(device),
                                         case.worker_settings(), on_phase=phase),
                                 window_s=case.window_s)
        out.warnings += prepared.finish(out.metrics)
        probes.after_timing(prepared, device, phase)
        phase("teardown")
        probes.finish()
        if timing is not None:
            faults_per_call(out.metrics, len(timing.samples_ns) * timing.block_size)
        out.metrics["threads"] = torch.get_num_threads()
        out.info.update(device_name=device_name(device), torch_version=str(torch.__version__))
        return timing, out


def _count(job: WorkerJob, step: Callable[[], Any], counter: Dumps, out: Findings,
           phase: Callable[[str], None]) -> None:
    """The counted window: instructions per call in the metrics, raw counts in the info."""
    from pathlib import Path

    from bench.measure.counting import count

    settings = job.case.settings
    keep = None
    if job.run_dir:
        stem = job.case.case_id if job.repeat == 0 else f"{job.case.case_id}-r{job.repeat}"
        keep = Path(job.run_dir) / "callgrind" / f"{stem}.out"
    result = count(step, counter, calls=settings.count_calls, samples=settings.count_samples,
                   warmup_iters=settings.count_warmup, on_phase=phase, keep=keep)
    out.metrics.update(result.metrics(job.case.batch_size))
    out.info["counting"] = {**result.to_dict(), "isa": settings.count_isa,
                            "threads": torch.get_num_threads(),
                            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if keep is not None and keep.exists():
        out.info["counting"]["callgrind_out"] = str(keep.relative_to(job.run_dir or ""))


def _generate(generation: Generation, device: torch.device, job: WorkerJob, out: Findings,
              phase: Callable[[str], None]) -> TimingResult:
    """A generate case: the prefill timed first (inside the build phase for the samplers),
    then the decode loop in the timed window; both by the one timing loop. Returns the decode
    timing per token; the prefill's samples and statistics go to the record's info and
    metrics, the KV cache's size after a full decode to its metrics."""
    from bench.stats import summarize

    settings, batch = job.case.worker_settings(), job.case.batch_size
    prefill = measure(generation.prefill, clock_for(device), settings)
    stats = summarize(prefill.samples_ns, items_per_iter=batch * generation.prompt_tokens,
                      confidence=settings.confidence)
    out.metrics.update(prefill_ms=stats.median_ms, prefill_ci_low_ms=stats.ci_low_ms,
                       prefill_ci_high_ms=stats.ci_high_ms,
                       prefill_throughput_items_s=stats.throughput_items_s)
    decode = per_token(measure(generation.decode, clock_for(device), settings,
                               on_phase=phase), generation.new_tokens)
    out.metrics["kv_cache_bytes"] = generation.kv_cache_bytes()
    out.metrics["prompt_tokens"] = generation.prompt_tokens
    out.info["generate"] = {
        "prompt_tokens": generation.prompt_tokens, "new_tokens": generation.new_tokens,
        "decode": "greedy, one token per call through the KV cache; samples per token",
        "kv_cache": type(generation.cache).__name__, "prefill_timing": prefill.to_dict()}
    return decode


def clock_for(device: torch.device) -> Clock:
    return CudaEventClock(device) if device.type == "cuda" else PerfCounterClock()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from bench.env import cpu_model
    return cpu_model()


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Fix torch's intra-op thread count for the case, restoring it after (inline runs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def redirect_output(path: str) -> None:
    """Send fd 1 and 2 to the case's log, and dump Python stacks there on a fatal signal,
    so a segfault or abort leaves a readable trace for the record."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    faulthandler.enable(file=sys.stderr, all_threads=True)
