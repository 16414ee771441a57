"""Change-point quality of `archbench history` under several kinds of CI noise, with asv's
detector run side by side on the same data.

Noise families (every series draws its own parameters from the family's ranges; one level
per commit, as a one-worker run stores it; log scale, so "2%" is a standard deviation of
0.02 in log units):

- gauss-low / gauss-mid / gauss-high: Gaussian jitter, sd 0.3–0.7%, 1–3%, 3–5%;
- fast-host: jitter 0.3–3%, and 10–30% of the commits measured on a host 15–35% faster;
- fast-host+outliers: the same, plus 1–5% of the commits +30 to +100% (an outlier run);
- outliers: jitter 0.3–3% plus the outliers alone;
- student-t: Student's t with 3 degrees of freedom, scale 0.3–2%;
- ar1-wander: an AR(1) wander (phi 0.3–0.8, stationary sd 0.5–2%) under white jitter
  0.3–1%: the machine's state persisting from one commit's run to the next.

Offline (`history show` on a whole history): HISTORIES histories per family of COMMITS
commits x 50 series: 10 flat, 8 each with a step of 3, 5, 10 and 20% (half slower, half
faster) at a random commit, 8 with a 10% drift over 20 commits. Reported per family: the
share of steps found within +-1 commit (right direction), drifts found (and as what), false
change points per 1,000 commits of flat series, extra change points in step series, steps
called drifts (a drift in the step's direction whose span covers the step's commit).
asv: `asv.step_detect.detect_steps(values, weights)` exactly as `asv publish` calls it
(values in ms, weights 2 / width of the 99% interval of each point -- here a one-worker
run's own interval, 0.3x the family's jitter), its change points the boundaries of the
steps it returns; `detect_regressions(steps, 0.05)` (asv's default
threshold) gives what asv would report as regressions.

Online (`history check` as CI runs it): a 50-case suite, flat histories, `history check`
(bench.history.check, --last 5, the 5% default threshold) after each of PUSHES pushes from
an empty store; a push is a false alarm when any case fails. Then the delay: 50 cases flat
for 100 commits, then 10% slower; how many pushes (commits at the new level) until the
check flags the case.

Seeds: the detector's settings were chosen on --tune-seeds (default 0-2) and are reported on
--heldout-seeds (default 1000-1002), which were not looked at while choosing them.

Usage:
    python -m benchmarks.history_quality [--families F ...] [--histories 20]
        [--heldout-seeds 1000 1001 1002] [--tune-seeds 0 1 2] [--pushes 200]
        [--no-asv] [--no-online] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from bench.gate.thresholds import parse_thresholds
from bench.history.analyse import DetectOptions, Series, analyse, check

STEPS = (3.0, 5.0, 10.0, 20.0)
DRIFT_PCT, DRIFT_LEN = 10.0, 20
KINDS = ["flat"] * 10 + [f"step{s:g}" for s in STEPS for _ in range(8)] + ["drift"] * 8
#: A one-worker run's own interval is narrower than what commits scatter by.
WITHIN_SHARE = 0.3


@dataclass(frozen=True)
class Noise:
    """Log-scale noise of one series and the points' own standard errors."""

    values: np.ndarray
    within_se: np.ndarray


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _gauss(lo: float, hi: float) -> Callable[[np.random.Generator, int], Noise]:
    def make(rng: np.random.Generator, n: int) -> Noise:
        sd = _u(rng, lo, hi) / 100
        return Noise(rng.normal(0.0, sd, n), np.full(n, WITHIN_SHARE * sd))
    return make


def _host(rng: np.random.Generator, n: int) -> np.ndarray:
    share, faster = _u(rng, 0.10, 0.30), _u(rng, 0.15, 0.35)
    return np.where(rng.random(n) < share, math.log(1 - faster), 0.0)


def _outliers(rng: np.random.Generator, n: int) -> np.ndarray:
    share = _u(rng, 0.01, 0.05)
    return np.where(rng.random(n) < share, np.log1p(rng.uniform(0.30, 1.00, n)), 0.0)


def fast_host(rng: np.random.Generator, n: int) -> Noise:
    base = _gauss(0.3, 3.0)(rng, n)
    return Noise(base.values + _host(rng, n), base.within_se)


def fast_host_outliers(rng: np.random.Generator, n: int) -> Noise:
    base = fast_host(rng, n)
    return Noise(base.values + _outliers(rng, n), base.within_se)


def outliers(rng: np.random.Generator, n: int) -> Noise:
    base = _gauss(0.3, 3.0)(rng, n)
    return Noise(base.values + _outliers(rng, n), base.within_se)


def student_t(rng: np.random.Generator, n: int) -> Noise:
    scale = _u(rng, 0.3, 2.0) / 100
    return Noise(scale * rng.standard_t(3, n), np.full(n, WITHIN_SHARE * scale))


def ar1_wander(rng: np.random.Generator, n: int) -> Noise:
    phi, sd, white = _u(rng, 0.3, 0.8), _u(rng, 0.5, 2.0) / 100, _u(rng, 0.3, 1.0) / 100
    innovation = sd * math.sqrt(1 - phi ** 2)
    wander = np.empty(n)
    wander[0] = rng.normal(0.0, sd)
    for i in range(1, n):
        wander[i] = phi * wander[i - 1] + rng.normal(0.0, innovation)
    return Noise(wander + rng.normal(0.0, white, n), np.full(n, WITHIN_SHARE * white))


FAMILIES: dict[str, Callable[[np.random.Generator, int], Noise]] = {
    "gauss-low": _gauss(0.3, 0.7), "gauss-mid": _gauss(1.0, 3.0),
    "gauss-high": _gauss(3.0, 5.0), "fast-host": fast_host,
    "fast-host+outliers": fast_host_outliers, "outliers": outliers,
    "student-t": student_t, "ar1-wander": ar1_wander,
}


# ---- synthetic histories ------------------------------------------------------------------
def _commits(n: int, tag: int) -> tuple[tuple[str, ...], tuple[datetime, ...]]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return (tuple(f"{tag:08x}{i:032x}" for i in range(n)),
            tuple(start + timedelta(hours=i) for i in range(n)))


def make_series(case: int, y: np.ndarray, se: np.ndarray, commits: tuple[str, ...],
                times: tuple[datetime, ...], name: str) -> Series:
    return Series(fingerprint="synthetic", environment="{}", case_id=f"case{case:03d}",
                  name=name, commits=commits, times=times, log_level=y, se_log=se,
                  low_ms=np.exp(y - 1.96 * se), high_ms=np.exp(y + 1.96 * se),
                  runs=(1,) * y.size, repeats=(1,) * y.size)


def history(rng: np.random.Generator, family: str, commits: int,
            tag: int) -> tuple[list[Series], list[dict[str, Any]]]:
    shas, times = _commits(commits, tag)
    series, truth = [], []
    for c, kind in enumerate(KINDS):
        true = np.zeros(commits)
        info: dict[str, Any] = {"kind": kind}
        sign = 1.0 if c % 2 == 0 else -1.0
        if kind.startswith("step"):
            pct = float(kind[4:])
            at = int(rng.integers(20, commits - 20))
            true[at:] = sign * math.log1p(pct / 100)
            info.update(at=at, pct=sign * pct)
        elif kind == "drift":
            at = int(rng.integers(20, commits - DRIFT_LEN - 20))
            total = sign * math.log1p(DRIFT_PCT / 100)
            true[at:at + DRIFT_LEN] = total * (np.arange(DRIFT_LEN) + 1) / DRIFT_LEN
            true[at + DRIFT_LEN:] = total
            info.update(at=at, end=at + DRIFT_LEN - 1, pct=sign * DRIFT_PCT)
        noise = FAMILIES[family](rng, commits)
        series.append(make_series(c, true + noise.values, noise.within_se, shas, times,
                                  f"{kind}-{c:02d}"))
        truth.append(info)
    return series, truth


# ---- detectors ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Found:
    """A change point as the scorer sees it: first index at the new level, first moved
    index, direction, kind."""

    index: int
    start: int
    up: bool
    kind: str


def archbench_points(series: list[Series], options: DetectOptions) -> dict[str, list[Found]]:
    result = analyse(series, options=options)
    out: dict[str, list[Found]] = defaultdict(list)
    for change in result.changes():
        p = change.point
        out[change.series.case_id].append(Found(p.index, p.start, p.ratio > 1, p.kind))
    return out


def asv_points(series: list[Series]) -> tuple[dict[str, list[Found]], dict[str, list[Found]]]:
    """asv's change points (step boundaries) and its regressions, per series."""
    from asv.step_detect import detect_regressions, detect_steps

    steps_out: dict[str, list[Found]] = defaultdict(list)
    regressions: dict[str, list[Found]] = defaultdict(list)
    for s in series:
        values = np.exp(s.log_level)
        half = 2.5758 * s.se_log
        weights = 2 / np.abs(values * np.exp(half) - values * np.exp(-half))
        steps = detect_steps(values.tolist(), weights.tolist())
        for prev, cur in itertools.pairwise(steps):
            steps_out[s.case_id].append(Found(cur[0], cur[0], cur[2] > prev[2], "step"))
        _, _, jumps = detect_regressions(steps, 0.05)
        for jump in jumps or []:
            regressions[s.case_id].append(Found(jump[1], jump[1], True, "step"))
    return steps_out, regressions


# ---- scoring --------------------------------------------------------------------------------
def score(found: dict[str, list[Found]], series: list[Series], truth: list[dict[str, Any]],
          tally: dict[str, Any], slower_only: bool = False) -> None:
    commits = series[0].log_level.size
    for s, info in zip(series, truth, strict=True):
        points = found.get(s.case_id, [])
        kind = info["kind"]
        if kind == "flat":
            tally["flat_false"] += len(points)
            tally["flat_commits"] += commits
            continue
        if slower_only and info["pct"] < 0:
            continue
        if kind.startswith("step"):
            key = kind[4:] + "%"
            near = [p for p in points if abs(p.index - info["at"]) <= 1 and
                    p.up == (info["pct"] > 0)]
            tally["steps"][key][0] += bool(near)
            tally["steps"][key][1] += 1
            # a drift over the step's commit is the step called a drift, wherever its end
            tally["steps_called_drift"] += any(
                p.kind == "drift" and p.start - 1 <= info["at"] <= p.index + 1 and
                p.up == (info["pct"] > 0) for p in points)
            tally["extra"] += len(points) - bool(near)
            tally["step_commits"] += commits
        else:
            lo, hi = info["at"] - 1, info["end"] + 1
            hits = [p for p in points if p.index >= lo and p.start <= hi + 1 and
                    p.up == (info["pct"] > 0)]
            tally["drift"][0] += bool(hits)
            tally["drift"][1] += 1
            if hits:
                tally["drift_as"]["+".join(sorted({p.kind for p in hits}))] += 1


def new_tally() -> dict[str, Any]:
    return {"flat_false": 0, "flat_commits": 0, "extra": 0, "step_commits": 0,
            "steps_called_drift": 0, "steps": defaultdict(lambda: [0, 0]),
            "drift": [0, 0], "drift_as": defaultdict(int)}


def summary(t: dict[str, Any]) -> dict[str, Any]:
    out = {f"step {k}": round(v[0] / v[1], 3) for k, v in sorted(
        t["steps"].items(), key=lambda kv: float(kv[0][:-1])) if v[1]}
    if t["drift"][1]:
        out["drift 10%"] = round(t["drift"][0] / t["drift"][1], 3)
        out["drift found as"] = dict(t["drift_as"])
    out["false per 1000 flat commits"] = round(1000 * t["flat_false"] /
                                               max(t["flat_commits"], 1), 3)
    out["false changes"] = t["flat_false"]
    out["flat commits"] = t["flat_commits"]
    out["extra per 1000 commits, step series"] = round(1000 * t["extra"] /
                                                       max(t["step_commits"], 1), 3)
    out["steps called drift"] = t["steps_called_drift"]
    return out


def offline(family: str, seeds: list[int], histories: int, commits: int,
            options: DetectOptions, with_asv: bool) -> dict[str, Any]:
    ours, asv_cp, asv_reg = new_tally(), new_tally(), new_tally()
    fit_s = 0.0
    for seed in seeds:
        rng = np.random.default_rng([seed, list(FAMILIES).index(family)])
        for h in range(histories):
            series, truth = history(rng, family, commits, seed * 1000 + h)
            started = time.perf_counter()
            score(archbench_points(series, options), series, truth, ours)
            fit_s += time.perf_counter() - started
            if with_asv:
                steps, regressions = asv_points(series)
                score(steps, series, truth, asv_cp)
                score(regressions, series, truth, asv_reg, slower_only=True)
    out: dict[str, Any] = {"archbench": summary(ours),
                           "archbench_s_per_series": round(fit_s / (histories * len(seeds) *
                                                                    len(KINDS)), 5)}
    if with_asv:
        out["asv"] = summary(asv_cp)
        out["asv regressions (slower steps only)"] = summary(asv_reg)
    return out


# ---- the online check -----------------------------------------------------------------------
def online(family: str, seeds: list[int], pushes: int, cases: int,
           options: DetectOptions, last: int = 5) -> dict[str, Any]:
    """False alarms per push of `history check` on a flat suite, and the delay to flag a
    10% slowdown."""
    rules = parse_thresholds(["5%"])
    alarms = checked = 0
    per_case_alarms = 0
    delays: list[int] = []
    never = 0
    horizon = 30
    for seed in seeds:
        rng = np.random.default_rng([seed, list(FAMILIES).index(family), 7])
        shas, times = _commits(pushes, seed)
        noise = [FAMILIES[family](rng, pushes) for _ in range(cases)]
        for t in range(1, pushes + 1):
            series = [make_series(c, nz.values[:t], nz.within_se[:t], shas[:t], times[:t],
                                  f"case-{c:02d}") for c, nz in enumerate(noise)]
            result = check(analyse(series, options=options), rules, last=last)
            checked += 1
            alarms += result.failed
            per_case_alarms += len({v.change.series.case_id for v in result.regressions})
        flat = 100
        total = flat + horizon
        shas2, times2 = _commits(total, seed + 5000)
        for c in range(cases):
            nz = FAMILIES[family](rng, total)
            y = nz.values.copy()
            y[flat:] += math.log1p(0.10)
            delay = None
            for t in range(flat + 1, total + 1):
                s = make_series(c, y[:t], nz.within_se[:t], shas2[:t], times2[:t], "case")
                result = check(analyse([s], options=options), rules, last=last)
                hit = [v for v in result.regressions
                       if abs(shas2.index(v.change.commit) - flat) <= 1 or
                       shas2.index(v.change.first) <= flat + 1 <= shas2.index(v.change.commit)]
                if hit:
                    delay = t - flat
                    break
            if delay is None:
                never += 1
            else:
                delays.append(delay)
    flagged = np.asarray(delays) if delays else np.asarray([np.nan])
    n_delay = len(delays) + never
    return {"pushes": checked, "pushes with a false alarm": alarms,
            "false-alarm share of pushes": round(alarms / max(checked, 1), 4),
            "false case alarms per 1000 case-pushes": round(
                1000 * per_case_alarms / max(checked * cases, 1), 3),
            "10% slowdown: pushes to flag, median": float(np.nanmedian(flagged)),
            "10% slowdown: pushes to flag, 90th percentile": float(np.nanpercentile(
                flagged, 90)) if delays else None,
            "10% slowdown: flagged within 5 pushes": round(
                sum(d <= 5 for d in delays) / max(n_delay, 1), 3),
            f"10% slowdown: not flagged within {horizon} pushes": never}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--histories", type=int, default=20)
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--tune-seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--heldout-seeds", type=int, nargs="*", default=[1000, 1001, 1002])
    parser.add_argument("--which", choices=("tune", "heldout", "both"), default="heldout")
    parser.add_argument("--pushes", type=int, default=200)
    parser.add_argument("--online-seeds", type=int, default=1,
                        help="how many of the seeds the online check runs on (default 1)")
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--z", type=float, default=DetectOptions().z_threshold)
    parser.add_argument("--alpha", type=float, default=DetectOptions().alpha)
    parser.add_argument("--no-asv", action="store_true")
    parser.add_argument("--no-online", action="store_true")
    parser.add_argument("--no-offline", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    options = DetectOptions(z_threshold=args.z, alpha=args.alpha)
    sets = {"tune": args.tune_seeds, "heldout": args.heldout_seeds}
    which = ["tune", "heldout"] if args.which == "both" else [args.which]
    results: dict[str, Any] = {"options": vars(options), "seeds": {w: sets[w] for w in which}}
    for w in which:
        for family in args.families:
            entry: dict[str, Any] = {}
            if not args.no_offline:
                # asv's histories per seed are the same for tune and held-out comparisons
                entry["offline"] = offline(family, sets[w], args.histories, args.commits,
                                           options, not args.no_asv)
            if not args.no_online:
                entry["online"] = online(family, sets[w][:args.online_seeds], args.pushes,
                                         args.cases, options)
            results.setdefault(w, {})[family] = entry
            print(json.dumps({w: {family: entry}}, indent=1), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
