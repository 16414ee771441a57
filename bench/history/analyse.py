"""From stored points to findings: every series fitted, changes grouped by commit, the check.

A *series* is one case on one environment fingerprint: series from different machines or
builds are never joined, since their levels differ for reasons no commit caused. A *finding*
is every change that starts at the same commit, in the same direction and of the same kind,
whatever the series: one commit slowing 40 cases is one finding with 40 members.

Pure given the points frame (bench.history.store reads it).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.gate.thresholds import TIMING_METRIC
from bench.history.detect import (
    DEFAULT_ALPHA,
    DEFAULT_DRIFT_GAP,
    DEFAULT_WINDOW,
    DEFAULT_Z,
    ChangePoint,
    SeriesFit,
    fit_series,
)

if TYPE_CHECKING:
    import pandas as pd

    from bench.gate.thresholds import ThresholdRule
    from bench.history.store import Accepted


@dataclass(frozen=True)
class DetectOptions:
    """Knobs of the detector (defaults chosen by benchmarks/history_quality.py)."""

    z_threshold: float = DEFAULT_Z
    alpha: float = DEFAULT_ALPHA
    window: int = DEFAULT_WINDOW
    drift_gap: int = DEFAULT_DRIFT_GAP


@dataclass(frozen=True)
class Series:
    """One case on one environment: its points, oldest first."""

    fingerprint: str
    environment: str
    case_id: str
    name: str
    commits: tuple[str, ...]
    times: tuple[datetime, ...]
    log_level: np.ndarray
    se_log: np.ndarray
    low_ms: np.ndarray
    high_ms: np.ndarray
    runs: tuple[int, ...]
    #: Per-repeat medians behind each point (its error's degrees of freedom + 1).
    repeats: tuple[int, ...] = ()
    #: What the series measures: the timing level (median_ms) or a memory or count metric
    #: of bench.gate.thresholds (its unit is the metric's; `level_ms` then holds it).
    metric: str = TIMING_METRIC

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.fingerprint, self.case_id, self.metric)

    @property
    def level_ms(self) -> np.ndarray:
        return np.exp(self.log_level)

    @property
    def label(self) -> str:
        """The case's name, with the metric when it is not the timing."""
        return self.name if self.metric == TIMING_METRIC else f"{self.name} [{self.metric}]"


def direction(metric: str, ratio: float) -> str:
    """"slower"/"faster" for the timing, "larger"/"smaller" for memory and counts."""
    if metric == TIMING_METRIC:
        return "slower" if ratio > 1 else "faster"
    return "larger" if ratio > 1 else "smaller"


@dataclass(frozen=True)
class Change:
    """A change point of one series, placed in the project's history.

    The change came in with `commit` (the first commit measured at the new level), after
    `previous` (the last one at the old level): the culprit is in `previous..commit`. For a
    drift, `first` is where the level started to move.
    """

    series: Series
    point: ChangePoint
    commit: str
    previous: str
    first: str
    time: datetime
    accepted: bool = False

    @property
    def direction(self) -> str:
        return direction(self.series.metric, self.point.ratio)


@dataclass(frozen=True)
class Finding:
    """Changes of several series that came in with the same commit, kind and direction."""

    commit: str
    previous: str
    first: str
    time: datetime
    kind: str
    direction: str
    changes: tuple[Change, ...]
    metric: str = TIMING_METRIC

    @property
    def accepted(self) -> bool:
        return all(c.accepted for c in self.changes)

    def pct_range(self) -> tuple[float, float]:
        values = [c.point.change_pct for c in self.changes]
        return min(values), max(values)


@dataclass(frozen=True)
class History:
    """Every series with its fit, the findings (newest first) and the commit order."""

    series: tuple[Series, ...]
    fits: Mapping[tuple[str, str, str], SeriesFit]
    findings: tuple[Finding, ...]
    commits: tuple[str, ...]
    accepted: tuple[Accepted, ...] = ()
    options: DetectOptions = field(default_factory=DetectOptions)

    def changes(self) -> list[Change]:
        return [c for f in self.findings for c in f.changes]


def series_from_points(points: pd.DataFrame) -> list[Series]:
    """Split the store's points frame (ordered by series, then time) into series."""
    if points.empty:
        return []
    fingerprints = points["fingerprint"].to_numpy()
    case_ids = points["case_id"].to_numpy()
    metrics = points["metric"].astype(str).to_numpy() if "metric" in points.columns else \
        np.full(len(points), TIMING_METRIC)
    starts = np.flatnonzero((fingerprints[1:] != fingerprints[:-1]) |
                            (case_ids[1:] != case_ids[:-1]) | (metrics[1:] != metrics[:-1])) + 1
    bounds = [0, *starts.tolist(), len(points)]
    commits = points["commit"].astype(str).tolist()
    times = list(points["commit_time"].dt.to_pydatetime())
    columns = {name: points[name].to_numpy(dtype=float)
               for name in ("log_level", "se_log", "low_ms", "high_ms")}
    runs = points["runs"].astype(int).tolist()
    repeats = points["n_repeats"].astype(int).tolist()
    names = points["name"].astype(str).tolist()
    environments = points["environment"].astype(str).tolist()
    out = []
    for a, b in itertools.pairwise(bounds):
        out.append(Series(
            fingerprint=str(fingerprints[a]), environment=environments[b - 1],
            case_id=str(case_ids[a]), name=names[b - 1], commits=tuple(commits[a:b]),
            times=tuple(times[a:b]), log_level=columns["log_level"][a:b],
            se_log=columns["se_log"][a:b], low_ms=columns["low_ms"][a:b],
            high_ms=columns["high_ms"][a:b], runs=tuple(runs[a:b]),
            repeats=tuple(repeats[a:b]), metric=str(metrics[a])))
    return out


def analyse(series: Sequence[Series], accepted: Iterable[Accepted] = (),
            options: DetectOptions = DetectOptions()) -> History:
    """Fit every series (cut at its accepted commits) and group the changes by commit."""
    accepted = tuple(accepted)
    order = _order(series)
    commits = tuple(sorted(order, key=lambda c: (order[c], c)))
    fits: dict[tuple[str, str, str], SeriesFit] = {}
    changes: list[Change] = []
    for s in series:
        fit = _fit(s, accepted, order, options)
        fits[s.key] = fit
        for point in fit.change_points:
            changes.append(_place(s, point, accepted=False))
        for point in fit.accepted:
            changes.append(_place(s, point, accepted=True))
    groups: dict[tuple[str, str, str, bool, str], list[Change]] = {}
    for change in changes:
        kind = "accepted" if change.accepted else change.point.kind
        groups.setdefault((change.commit, kind, change.direction, change.accepted,
                           change.series.metric), []).append(change)
    findings = [Finding(commit=commit, previous=members[0].previous, first=members[0].first,
                        time=members[0].time, kind=kind, direction=way, metric=metric,
                        changes=tuple(sorted(members, key=lambda c: -abs(c.point.change_pct))))
                for (commit, kind, way, _, metric), members in groups.items()]
    findings.sort(key=lambda f: (f.time, f.commit), reverse=True)
    return History(series=tuple(series), fits=fits, findings=tuple(findings), commits=commits,
                   accepted=accepted, options=options)


def _order(series: Iterable[Series]) -> dict[str, datetime]:
    """Each commit's time (its earliest in any series)."""
    order: dict[str, datetime] = {}
    for s in series:
        for commit, when in zip(s.commits, s.times, strict=True):
            known = order.get(commit)
            if known is None or when < known:
                order[commit] = when
    return order


def _fit(s: Series, accepted: Sequence[Accepted], order: Mapping[str, datetime],
         options: DetectOptions) -> SeriesFit:
    """One series fitted, cut at its accepted commits."""
    return fit_series(s.log_level, s.se_log, z_threshold=options.z_threshold,
                      alpha=options.alpha, window=options.window,
                      drift_gap=options.drift_gap, forced=_cuts(s, accepted, order))


def _cuts(s: Series, accepted: Sequence[Accepted], order: Mapping[str, datetime]) -> list[int]:
    """Indices where an accepted change starts a new level in this series: at the accepted
    commit, or at the series' first point after it when the series skipped that commit."""
    out = []
    for entry in accepted:
        if not entry.covers(s.name, s.case_id) or entry.commit not in order:
            continue
        when = order[entry.commit]
        if entry.commit in s.commits:
            out.append(s.commits.index(entry.commit))
            continue
        later = [i for i, t in enumerate(s.times) if t > when]
        if later:
            out.append(later[0])
    return out


def _place(s: Series, point: ChangePoint, *, accepted: bool) -> Change:
    return Change(series=s, point=point, commit=s.commits[point.index],
                  previous=s.commits[point.start - 1], first=s.commits[point.start],
                  time=s.times[point.index], accepted=accepted)


# ---- the CI check ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """A change in the newest commits judged against its threshold (percent; None = off)."""

    change: Change
    threshold: float | None
    verdict: str  # "regression", "improvement", "below threshold", "accepted", "not gated"


@dataclass(frozen=True)
class CheckResult:
    verdicts: tuple[Verdict, ...]
    newest: tuple[str, ...]
    thresholds: tuple[str, ...] = ()

    @property
    def regressions(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.verdict == "regression"]

    @property
    def failed(self) -> bool:
        return bool(self.regressions)


def check(history: History, rules: Sequence[ThresholdRule] = (), *, last: int = 5) -> CheckResult:
    """Judge the changes that came to light with the newest `last` commits: a regression is
    a change in the bad direction (slower, larger) at least as large as the case's threshold
    for its metric (the same rules as `archbench compare`), not accepted.

    A change comes to light with the newest commits when they brought it in, or when the
    history as it stood before them did not show it yet: a noisy case may need more commits
    at its new level than `last` before the change is sure, and it is judged from the push
    that makes it sure until the history `last` commits back shows it too (a change at the
    edge of the evidence may come and go for a few pushes before that). Only while its new
    level lasts into the newest commits, though: a change that a later one already ended
    before them (an excursion, back to the old level) gains no evidence from them, and a
    fit of a longer history may show it or not (under wander, its estimate moves with
    every commit), which would raise the same old alarm again and again.
    """
    from bench.gate.thresholds import metric_specs, threshold_for

    if last < 1:
        raise ValueError("last must be at least 1")
    specs = metric_specs()
    newest = history.commits[-last:]
    recent = set(newest)
    earlier: dict[tuple[str, str, str], SeriesFit | None] = {}
    order = _order(history.series)
    verdicts = []
    for change in history.changes():
        if change.commit not in recent and (
                change.accepted or _ended_before(history, change, recent) or
                _shown_before(history, change, recent, order, earlier)):
            continue
        spec = specs[change.series.metric]
        threshold = threshold_for(spec, change.series.name, change.series.case_id, rules)
        pct = change.point.change_pct
        bad = pct > 0 if spec.lower_is_better else pct < 0
        if change.accepted:
            verdict = "accepted"
        elif threshold is None:
            verdict = "not gated"
        elif abs(pct) >= threshold:
            verdict = "regression" if bad else "improvement"
        else:
            verdict = "below threshold"
        verdicts.append(Verdict(change=change, threshold=threshold, verdict=verdict))
    rank = {"regression": 0, "improvement": 1, "below threshold": 2, "not gated": 3,
            "accepted": 4}
    verdicts.sort(key=lambda v: (rank[v.verdict], -abs(v.change.point.change_pct)))
    return CheckResult(verdicts=tuple(verdicts), newest=tuple(newest),
                       thresholds=tuple(r.text for r in rules))


def _ended_before(history: History, change: Change, recent: set[str]) -> bool:
    """Whether the change's new level ended (at the series' next change or accepted cut)
    before the series' `recent` commits."""
    s = change.series
    keep = sum(c not in recent for c in s.commits)
    after = [b for b in history.fits[s.key].bounds if b > change.point.index]
    return bool(after) and after[0] <= keep


#: How far (commits) a change may move between two fits and still be the same change.
SAME_CHANGE = 2


def _shown_before(history: History, change: Change, recent: set[str],
                  order: Mapping[str, datetime],
                  earlier: dict[tuple[str, str, str], SeriesFit | None]) -> bool:
    """Whether the series' history without its `recent` commits already showed this change
    (same direction, within SAME_CHANGE commits)."""
    s = change.series
    if s.key not in earlier:
        keep = sum(c not in recent for c in s.commits)
        if keep == len(s.commits):
            earlier[s.key] = None  # nothing new in this series: every change is old news
        else:
            earlier[s.key] = _fit(_truncated(s, keep), history.accepted, order,
                                  history.options)
    fit = earlier[s.key]
    if fit is None:
        return True
    up = change.point.ratio > 1
    return any((p.ratio > 1) == up and p.index >= change.point.start - SAME_CHANGE and
               p.start <= change.point.index + SAME_CHANGE for p in fit.change_points)


def _truncated(s: Series, keep: int) -> Series:
    return replace(s, commits=s.commits[:keep], times=s.times[:keep],
                   log_level=s.log_level[:keep], se_log=s.se_log[:keep],
                   low_ms=s.low_ms[:keep], high_ms=s.high_ms[:keep], runs=s.runs[:keep],
                   repeats=s.repeats[:keep])


def latest_levels(history: History) -> list[dict[str, Any]]:
    """Per series: its newest level with the band, points, noise, and its newest change."""
    latest: dict[tuple[str, str, str], Change] = {}
    counts: dict[tuple[str, str, str], int] = {}
    for change in history.changes():
        counts[change.series.key] = counts.get(change.series.key, 0) + 1
        have = latest.get(change.series.key)
        if have is None or change.time > have.time:
            latest[change.series.key] = change
    rows = []
    for s in history.series:
        fit = history.fits[s.key]
        newest = latest.get(s.key)
        rows.append({"series": s, "level_ms": float(s.level_ms[-1]),
                     "low_ms": float(s.low_ms[-1]), "high_ms": float(s.high_ms[-1]),
                     "points": len(s.commits), "noise_pct": 100 * fit.noise,
                     "changes": counts.get(s.key, 0),
                     "last_change": newest})
    return rows
