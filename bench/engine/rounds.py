"""Which workers each round of a run measures: the stop rule on a case's level.

A run visits its cases in rounds; in each round, every case that still needs a worker gets
one more. With a fixed `repeats = R` a case gets R workers. With `repeats = "auto"` it gets
`min_repeats` (a level's interval needs workers to compare), then one more a round while the
interval of its level — the t-interval over its workers' medians, which includes what varies
between runs — is wider than ±`target_ci`, up to `max_repeats` workers or `max_time_s` of
its workers' time in all. A case one of whose workers did not end ok gets no more: the
record says why.

The measuring window of each worker (Kalibera & Jones): the first workers get
`max_time_s / (2 max_repeats)` (within [min_time_s, max_time_s / min_repeats]); later ones the
window that buys the level's precision at the least cost, from the variance between the
workers so far and inside each (`bench.stats.plan_workers`): short windows and more workers
where workers disagree, long ones where each worker is noisy but they agree.

Rounds after the first are shuffled (seeded by the run and the round), so no case always
follows the same neighbour; cases that differ only in precision, pruning or compile mode stay
next to each other, so the speed-ups between them (bench.gate.paired.round_ratio) compare
workers measured moments apart.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from bench.results.record import Record
from bench.stats import WorkerRun, level, plan_workers
from bench.suite.spec import Case, Settings

#: The knobs whose effect a sweep compares within a workload: their cases run side by side.
COMPARED_KNOBS = ("precision", "prune", "compile")


@dataclass(frozen=True)
class Round:
    """The workers one round measures, in order, and the cases that need no more."""

    visits: list[tuple[Case, int]]
    decided: list[str]


class Rounds:
    """Plans a run's rounds from what its cases measured so far (resumed records included)."""

    def __init__(self, cases: Sequence[Case], run_id: str) -> None:
        self.cases = list(dict((c.case_id, c) for c in cases).values())
        self.run_id = run_id
        self.open = {c.case_id for c in self.cases}

    def next(self, measured: Mapping[str, Sequence[Record]]) -> Round:
        """The next round, given every record so far by case_id."""
        visits: dict[str, tuple[Case, int]] = {}
        decided: list[str] = []
        for case in self.cases:
            if case.case_id not in self.open:
                continue
            visit = next_worker(case, measured.get(case.case_id, ()))
            if visit is None:
                self.open.discard(case.case_id)
                decided.append(case.case_id)
            else:
                visits[case.case_id] = visit
        number = min((repeat for _, repeat in visits.values()), default=0)
        order = self.cases if number == 0 else self.order(number)
        return Round([visits[c.case_id] for c in order if c.case_id in visits], decided)

    def at_least(self, measured: Mapping[str, Sequence[Record]]) -> int:
        """Workers still to come for the open cases, at the least (for progress bars)."""
        return sum(max(fewest_workers(c.settings) - len(measured.get(c.case_id, ())), 0)
                   for c in self.cases if c.case_id in self.open)

    def order(self, number: int) -> list[Case]:
        """The order of round `number` (after the first): comparison groups shuffled, and the
        cases within each, seeded by the run and the round — the whole round's order, so a
        resumed run visits what is left of a round in the order it would have."""
        rng = random.Random(f"{self.run_id}:{number}")
        groups: dict[str, list[Case]] = {}
        for case in self.cases:
            groups.setdefault(comparison_group(case), []).append(case)
        ordered = list(groups.values())
        rng.shuffle(ordered)
        for group in ordered:
            rng.shuffle(group)
        return [case for group in ordered for case in group]


def comparison_group(case: Case) -> str:
    """Cases that differ only in the knobs a sweep compares share a group."""
    params = case.canonical()
    for knob in COMPARED_KNOBS:
        params.pop(knob, None)
    return repr(sorted(params.items()))


def fewest_workers(settings: Settings) -> int:
    settings = settings.for_counting()
    return settings.min_repeats if settings.auto_repeats else int(settings.repeats)


def next_worker(case: Case, records: Sequence[Record]) -> tuple[Case, int] | None:
    """The case's next worker (the case with its window, and its repeat index), or None when
    the case needs no more."""
    settings = case.settings.for_counting()
    done = {r.repeat for r in records}
    if not settings.auto_repeats:
        missing = [k for k in range(int(settings.repeats)) if k not in done]
        return (case, missing[0]) if missing else None
    if any(r.status != "ok" or not r.samples_ns for r in records):
        return None
    repeat = max(done) + 1 if done else 0
    runs = [worker_run(r) for r in records]
    window = worker_window(settings, runs)
    return None if window is None else (replace(case, window_s=window), repeat)


def worker_window(settings: Settings, runs: Sequence[WorkerRun]) -> float | None:
    """The next worker's measuring window, or None when the case has enough workers: its
    level's interval is within ±target_ci, or it has max_repeats, or another worker would
    not fit in what is left of max_time_s (which counts each worker's whole time: its
    start, build and warm-up as well as its window)."""
    longest = max(settings.max_time_s / settings.min_repeats, settings.min_time_s)
    if len(runs) < settings.min_repeats:
        return min(max(settings.max_time_s / (2 * settings.max_repeats), settings.min_time_s),
                   longest)
    if len(runs) >= settings.max_repeats:
        return None
    if level([r.median for r in runs], settings.confidence).rel <= settings.target_ci:
        return None
    overhead = statistics.median(r.overhead_s for r in runs)
    left = settings.max_time_s - sum(r.measure_s + r.overhead_s for r in runs) - overhead
    if left < settings.min_time_s or left <= 0:
        return None
    plan = plan_workers(runs, settings.target_ci, settings.confidence,
                        min_window_s=settings.min_time_s, max_window_s=longest,
                        max_workers=settings.max_repeats)
    return min(plan.window_s, left)


def worker_run(record: Record) -> WorkerRun:
    """What the planner needs of one finished worker."""
    timing = record.timing or {}
    measure_s = float(timing.get("measure_ns") or 0.0) / 1e9
    own = timing.get("ci_rel")
    return WorkerRun(median=statistics.median(record.samples_ns),
                     own_rel=float(own) if isinstance(own, (int, float)) else float("inf"),
                     measure_s=measure_s,
                     overhead_s=max(float(record.duration_s or 0.0) - measure_s, 0.0))
