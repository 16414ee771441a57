"""The parent's samplers around one case: start them with its worker, feed them its phases,
and turn what they saw into the parent's findings for the record.

    session = CaseSampling(case, inline=False, calibration=(data, reason))
    with session:                                   # stops every sampler, whatever happens
        outcome = backend.run(job, timeout, session.listen(on_message),
                              on_start=session.start)
    collected = session.finish(outcome)             # Findings: metrics, info, warnings

Samplers start when the backend reports the worker's pid and hear its phase messages; the
figures they produce — also for a case that crashed or ran out of memory, where the memory
curve is the most useful thing left — are merged with what the worker reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from bench.collectors import roofline, timeline
from bench.collectors.base import (
    CaseFacts,
    CollectorResult,
    ParentCollector,
    Series,
    Target,
    Window,
)
from bench.collectors.registry import parent_collectors
from bench.collectors.rss import check_against_ru_maxrss
from bench.engine.outcome import Outcome
from bench.env import measuring_cpus
from bench.measure.protocol import Findings, Message, Phase
from bench.suite.spec import Case


class CaseSampling:
    def __init__(self, case: Case, *, inline: bool = False,
                 calibration: tuple[Mapping[str, Any] | None, str | None] = (
                     None, "no calibration was looked up for this case")) -> None:
        self.case = case
        self.inline = inline
        self.calibration = calibration
        self._items: list[ParentCollector | CollectorResult] = parent_collectors(case)
        self._failed: dict[str, str] = {}
        self.phases: list[tuple[str, float]] = []
        self.target: Target | None = None
        self.ended_unix: float | None = None

    # -- while the worker runs --------------------------------------------------------------
    def start(self, pid: int) -> None:
        spare = measuring_cpus()[1] if self.case.settings.pin_cpus else None
        self.target = Target(pid=pid, started_unix=time.time(), inline=self.inline,
                             sampler_cpu=spare)
        for item in self._collectors():
            try:
                item.start(self.target)
            except Exception as exc:  # a collector bug must not cost the case
                self._failed[item.name] = f"start failed: {type(exc).__name__}: {exc}"

    def listen(self, forward: Callable[[Message], None] | None = None
               ) -> Callable[[Message], None]:
        def on_message(message: Message) -> None:
            if isinstance(message, Phase):
                self.phases.append((message.name, message.unix_time))
                for item in self._collectors():
                    try:
                        item.on_phase(message.name, message.unix_time)
                    except Exception as exc:
                        self._failed[item.name] = f"on_phase failed: {type(exc).__name__}: {exc}"
            if forward is not None:
                forward(message)
        return on_message

    def stop(self) -> None:
        if self.ended_unix is None:
            self.ended_unix = time.time()
        for item in self._collectors():
            try:
                item.stop()
            except Exception as exc:
                self._failed[item.name] = f"stop failed: {type(exc).__name__}: {exc}"

    def __enter__(self) -> CaseSampling:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _collectors(self) -> list[ParentCollector]:
        return [item for item in self._items if not isinstance(item, CollectorResult)]

    # -- after the worker ended -------------------------------------------------------------
    def finish(self, outcome: Outcome) -> Findings:
        self.stop()
        worker = outcome.done.findings if outcome.done is not None else Findings()
        worker_metrics = dict(worker.metrics)
        worker_info = dict(worker.info)
        median_s = median_seconds(outcome.done.timing if outcome.done is not None else None)
        facts = CaseFacts(batch_size=self.case.batch_size, median_s=median_s,
                          window=Window(tuple(self.phases), self.ended_unix or time.time()),
                          worker_cuda_uuid=worker_info.get("cuda_uuid"))
        results: list[CollectorResult] = []
        for item in self._items:
            if isinstance(item, CollectorResult):
                results.append(item)
            elif item.name in self._failed:
                results.append(CollectorResult(item.name, ok=False,
                                               reason=self._failed[item.name]))
            else:
                try:
                    results += item.results(facts)
                except Exception as exc:
                    results.append(CollectorResult(
                        item.name, ok=False, reason=f"result failed: {type(exc).__name__}: {exc}"))
        if not self.case.settings.telemetry:
            results.append(CollectorResult("telemetry", ok=False,
                                           reason="turned off (settings.telemetry = false)"))
        out = Findings()
        for result in results:
            out.metrics.update(result.metrics)
            out.warnings.extend(result.warnings)
            out.info.setdefault("collectors", {})[result.name] = result.status()
        self._cross_check(out, worker_metrics)
        rl = roofline.evaluate(device=self.case.device, precision=self.case.precision,
                               batch_size=self.case.batch_size, median_s=median_s,
                               metrics={**worker_metrics, **out.metrics},
                               calibration=self.calibration[0],
                               missing_reason=self.calibration[1], mode=self.case.mode)
        out.metrics.update(rl.metrics)
        out.info.setdefault("collectors", {})["roofline"] = rl.status()
        series = [s for r in results for s in r.series]
        if series and self.target is not None:
            out.info["telemetry"] = timeline.resample(
                series, facts.window, t0_unix=self.target.started_unix,
                interval_s=self._grid_interval(series))
        return out

    def _cross_check(self, out: Findings, worker_metrics: dict[str, Any]) -> None:
        if self.inline:
            # ru_maxrss of the runner is its lifetime high, not the case's: drop it. The gate
            # reads `isolation` to leave the runner's RSS out of memory verdicts.
            worker_metrics.pop("ru_maxrss_bytes", None)
            out.metrics["ru_maxrss_bytes"] = None
            out.info["isolation"] = "inline"
            return
        warning = check_against_ru_maxrss({**worker_metrics, **out.metrics})
        if warning:
            out.warnings.append(warning)

    def _grid_interval(self, series: list[Series]) -> float:
        """The NVML interval when GPU series exist (they set the pace), else the RSS one."""
        gpu = any(s.name != "rss_bytes" for s in series)
        settings = self.case.settings
        return settings.telemetry_interval_s if gpu else max(settings.rss_interval_s,
                                                             settings.telemetry_interval_s)


def median_seconds(timing: Mapping[str, Any] | None) -> float | None:
    samples = (timing or {}).get("samples_ns") or []
    return statistics.median(samples) / 1e9 if samples else None
