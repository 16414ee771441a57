"""The regression gate: a baseline run against a candidate run, per case and per metric.

Pure (no torch, no I/O beyond handing a path to the run loader in `bench.results.store`).

Cases are matched by `case_id`. Each compared metric gets one verdict:

- `regression` / `improvement`: for timing, the median moved by at least the threshold
  (default 5%) in that direction *and* the one-sided test is significant after correction
  across all the cases compared (Holm by default, see below): Welch's t on the log
  per-repeat medians when both sides have `MIN_REPEATS` repeats or more, else Mann–Whitney U
  on the raw samples (`bench.gate.significance`);
  for deterministic counts, memory peaks and fidelity, the value moved past its tolerance.
- `same`: timing whose whole confidence interval of the change lies inside ±threshold (so a
  small but significant shift is `same`); other metrics within their tolerance.
- `inconclusive`: too few samples, or an effect the data cannot tell from noise (a large move
  without significance, or an interval reaching past the threshold). Never a regression.

Why Holm: a gate answers one question per build, "did anything get slower?", and a false
"yes" blocks someone's pull request. Holm bounds the chance that *any* flagged case is noise
(the family-wise error rate) for any number of cases and any dependence between them, and is
never less powerful than Bonferroni. Benjamini–Hochberg (`correction="bh"`) bounds only the
expected share of false flags and is offered for very large sweeps where power matters more.
Timing changes that pass the effect threshold usually have p-values far below either bound,
so the choice mostly matters for borderline cases — where caution is what a gate should have.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.env import FINGERPRINT_KEYS, fingerprint, hardware_hash
from bench.errors import CompareError
from bench.gate.paired import (
    PAIR_QUANTILE,
    PAIRED_TESTS,
    mde_from_interval,
    paired_test,
    worker_time,
)
from bench.gate.significance import (
    CORRECTIONS,
    MIN_REPEATS,
    ShiftTest,
    adjust_pvalues,
    repeat_shift_test,
    shift_test,
)
from bench.gate.thresholds import (
    TIMING_METRIC,
    MetricSpec,
    ThresholdRule,
    metric_specs,
    parse_thresholds,
    threshold_for,
)
from bench.plain import plain
from bench.results.record import Record
from bench.results.repeats import merge_repeats
from bench.results.store import RunData, load_run

if TYPE_CHECKING:
    import pandas as pd

VERDICTS = ("regression", "improvement", "same", "inconclusive")
FRAME_COLUMNS = ("case_id", "name", "metric", "baseline", "candidate", "delta_pct",
                 "ci_low_pct", "ci_high_pct", "p_value", "p_adjusted", "verdict")


@dataclass(frozen=True)
class CompareOptions:
    """How strict the gate is: `thresholds` (rules from `bench.gate.thresholds.parse_thresholds`),
    `alpha` and `correction` ("holm" or "bh") across cases, `min_samples` a side,
    `confidence` of the intervals, `allow_env_mismatch`, and the paired test and quantile
    for runs measured side by side."""

    thresholds: tuple[ThresholdRule, ...] = ()
    #: Family-wise (holm) or false-discovery (bh) level for the corrected p-values.
    alpha: float = 0.05
    correction: str = "holm"
    #: Fewer samples than this on either side makes a timing verdict `inconclusive`.
    min_samples: int = 5
    #: Of the interval reported for each timing change.
    confidence: float = 0.95
    allow_env_mismatch: bool = False
    #: Test timing pair by pair ("t" or "wilcoxon"): repeat k of the baseline against repeat
    #: k of the candidate, for runs measured side by side (`archbench ab`). None: unpaired,
    #: unless both runs are the two sides of one A/B run (then its own paired test).
    paired_test: str | None = None
    #: Percentile of a worker's samples that stands for it in its pair (10: see
    #: `bench.gate.paired.PAIR_QUANTILE`; 50: the median).
    pair_quantile: float = PAIR_QUANTILE

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise CompareError(f"alpha {self.alpha} must be between 0 and 1, e.g. 0.05")
        if self.correction not in CORRECTIONS:
            raise CompareError(f'correction "{self.correction}" is unknown; use "holm" '
                               '(family-wise) or "bh" (false discovery rate)')
        if self.min_samples < 2:
            raise CompareError(f"min_samples {self.min_samples} must be at least 2")
        if not 0.5 < self.confidence < 1:
            raise CompareError(f"confidence {self.confidence} must be between 0.5 and 1")
        if self.paired_test is not None and self.paired_test not in PAIRED_TESTS:
            raise CompareError(f'paired test "{self.paired_test}" is unknown; use one of '
                               f"{PAIRED_TESTS}")
        if not 0 <= self.pair_quantile <= 100:
            raise CompareError(f"pair quantile {self.pair_quantile} must be a percentile, 0 "
                               "to 100 (10 by default, 50 for the median)")

    @classmethod
    def from_specs(cls, specs: str | Iterable[str], **kwargs: Any) -> CompareOptions:
        return cls(thresholds=parse_thresholds(specs), **kwargs)


@dataclass(frozen=True)
class MetricVerdict:
    """One metric of one case. Timing: `metric` is "median_ms", `baseline`/`candidate` the
    medians and `delta_pct` = (candidate - baseline) / baseline * 100 (positive = slower);
    `ci_*_pct` the Hodges–Lehmann interval of the change; `p_value` one-sided in the direction
    of the change, `p_adjusted` after the correction across cases."""

    case_id: str
    name: str
    metric: str
    baseline: float | None
    candidate: float | None
    delta_pct: float | None
    ci_low_pct: float | None
    ci_high_pct: float | None
    p_value: float | None
    p_adjusted: float | None
    verdict: str
    kind: str = ""
    #: Percent for relative kinds, an absolute amount for fidelity; None when not gated.
    threshold: float | None = None
    n_baseline: int | None = None
    n_candidate: int | None = None
    #: Why the verdict is what it is, in words (shown next to non-`same` rows).
    note: str = ""
    #: What a timing verdict was tested on: "paired" (pairs of workers side by side in one
    #: A/B run), "repeats" (per-repeat medians, robust to drift between runs) or "samples"
    #: (one worker's samples a side).
    test: str = ""
    #: Timing: the smallest change (%) this test would have caught with 80% power at the
    #: strictest corrected level (alpha / cases tested): what "inconclusive" could not see.
    mde_pct: float | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; verdicts are {VERDICTS}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """The gate's answer for two runs: one verdict per case and metric (`regression`,
    `improvement`, `same`, `inconclusive`), the cases found on one side only, and how the
    runs were compared (correction, thresholds, environments, pairing)."""

    verdicts: tuple[MetricVerdict, ...]
    only_in_baseline: tuple[str, ...] = ()
    only_in_candidate: tuple[str, ...] = ()
    #: {key: {"baseline": ..., "candidate": ...}} for fingerprint keys that differ (compared
    #: anyway because it was allowed); None when they agree or could not be checked.
    env_mismatch: Mapping[str, Any] | None = None
    correction: str = "holm"
    alpha: float = 0.05
    #: False when one side had no environment record (records given without a run folder).
    env_checked: bool = False
    baseline_label: str = "baseline"
    candidate_label: str = "candidate"
    thresholds: tuple[str, ...] = field(default_factory=tuple)
    #: Cases present on both sides (each has at least a status row unless all metrics are off).
    cases_compared: int = 0
    #: Percentile of each worker's samples used for its pair; None when nothing was paired.
    pair_quantile: float | None = None
    #: Labels of the runs whose cases ran on more than one kind of node (a Ray cluster).
    mixed_hardware: tuple[str, ...] = ()
    #: (label, spread) of each run whose machine's speed moved between its rounds by more
    #: than `bench.stats.STEADY_DRIFT` (`bench.results.repeats.run_drift`).
    unsteady: tuple[tuple[str, float], ...] = ()

    @property
    def regressions(self) -> tuple[MetricVerdict, ...]:
        return tuple(v for v in self.verdicts if v.verdict == "regression")

    @property
    def has_regression(self) -> bool:
        """Whether any verdict is a regression: what makes `compare` and `ab` exit 1."""
        return bool(self.regressions)

    def counts(self) -> dict[str, int]:
        return {v: sum(m.verdict == v for m in self.verdicts) for v in VERDICTS}

    def timing(self) -> tuple[MetricVerdict, ...]:
        return tuple(v for v in self.verdicts if v.kind == "timing")

    def unresolved(self) -> tuple[MetricVerdict, ...]:
        """Timing verdicts the data could not decide: neither a change nor `same`."""
        return tuple(v for v in self.timing() if v.verdict == "inconclusive")

    def detectable_pct(self) -> dict[str, float] | None:
        """Minimum detectable change (%) over the undecided timing cases (over every timing
        case when all were decided): the smallest slowdown this run could have caught."""
        rows = self.unresolved() or self.timing()
        values = sorted(v.mde_pct for v in rows if v.mde_pct is not None)
        if not values:
            return None
        return {"min": values[0], "median": float(np.median(values)), "max": values[-1]}

    def for_case(self, case_id: str) -> tuple[MetricVerdict, ...]:
        return tuple(v for v in self.verdicts if v.case_id == case_id)

    def to_frame(self) -> pd.DataFrame:
        """One row per verdict: case, metric, both sides, the change in % with its
        interval, raw and adjusted p-values, and the verdict."""
        import pandas as pd

        rows = [v.to_dict() for v in self.verdicts]
        columns = [*FRAME_COLUMNS, *(k for k in MetricVerdict.__dataclass_fields__
                                     if k not in FRAME_COLUMNS)]
        return pd.DataFrame(rows, columns=columns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline_label,
            "candidate": self.candidate_label,
            "correction": self.correction,
            "alpha": self.alpha,
            "thresholds": list(self.thresholds),
            "env_checked": self.env_checked,
            "env_mismatch": dict(self.env_mismatch) if self.env_mismatch else None,
            "counts": self.counts(),
            "regression": self.has_regression,
            "cases_compared": self.cases_compared,
            "paired": any(v.test == "paired" for v in self.timing()),
            "pair_quantile": self.pair_quantile,
            "unresolved": len(self.unresolved()),
            "detectable_pct": self.detectable_pct(),
            "mixed_hardware": list(self.mixed_hardware),
            "unsteady": [{"run": label, "drift": sd} for label, sd in self.unsteady],
            "only_in_baseline": list(self.only_in_baseline),
            "only_in_candidate": list(self.only_in_candidate),
            "verdicts": [plain(v.to_dict()) for v in self.verdicts],
        }


class EnvMismatch(CompareError):
    """The runs measured different machines or builds; timings would not be comparable."""

    def __init__(self, mismatch: Mapping[str, Any]) -> None:
        self.mismatch = dict(mismatch)
        diffs = "; ".join(f"{key}: {v['baseline']!r} (baseline) vs {v['candidate']!r} "
                          "(candidate)" for key, v in self.mismatch.items())
        super().__init__(f"the runs come from different environments — {diffs}. Timings from "
                         "different hardware or software are not comparable; rerun the "
                         "baseline on this machine, or pass --allow-env-mismatch "
                         "(allow_env_mismatch=True) to compare anyway")


# ---- entry points ---------------------------------------------------------------------------
RunLike = str | Path | Sequence[Record]


def compare_runs(baseline: RunLike | RunData, candidate: RunLike | RunData,
                 options: CompareOptions | None = None) -> Comparison:
    """Compare two runs: run folder paths, lists of records, or loaded `RunData`.

    Raises `EnvMismatch` when both environments are known and differ, unless allowed.
    """
    options = options or CompareOptions()
    base, cand = _as_run(baseline, "baseline"), _as_run(candidate, "candidate")
    ab_base, ab_cand = base.meta.get("ab") or {}, cand.meta.get("ab") or {}
    if (options.paired_test is None and ab_base.get("id")
            and ab_base.get("id") == ab_cand.get("id")
            and ab_base.get("side") != ab_cand.get("side")):
        # The two sides of one A/B run: their repeats are pairs, whichever front end asks.
        options = replace(options, paired_test=str(ab_base.get("method") or "t"),
                          pair_quantile=float(ab_base.get("quantile",
                                                          options.pair_quantile)))
    mismatch = env_mismatch(base.env, cand.env)
    if mismatch and not options.allow_env_mismatch:
        raise EnvMismatch(mismatch)
    labels = (base.label or "baseline", cand.label or "candidate")
    comparison = compare_records(base.records, cand.records, options, env_mismatch=mismatch,
                                 env_checked=base.env is not None and cand.env is not None,
                                 labels=labels, envs=(base.env, cand.env))
    mixed = tuple(label for label, run in zip(labels, (base, cand), strict=True)
                  if run.env and run.env.get("mixed_hardware"))
    return replace(comparison, mixed_hardware=mixed,
                   unsteady=unsteady_runs(labels, (base.records, cand.records)))


def unsteady_runs(labels: Sequence[str], runs: Sequence[Sequence[Record]]
                  ) -> tuple[tuple[str, float], ...]:
    """The runs whose machine did not hold its speed between rounds, with by how much."""
    from bench.results.repeats import run_drift
    from bench.stats import STEADY_DRIFT

    out = []
    for label, records in zip(labels, runs, strict=True):
        drift = run_drift(records)
        if drift is not None and drift.sd > STEADY_DRIFT:
            out.append((label, drift.sd))
    return tuple(out)


def env_mismatch(baseline: Mapping[str, Any] | None,
                 candidate: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Fingerprint keys (CPU model, GPUs, torch and CUDA versions, threads) that differ."""
    if baseline is None or candidate is None:
        return None
    a, b = fingerprint(baseline), fingerprint(candidate)
    out = {k: {"baseline": a.get(k), "candidate": b.get(k)} for k in FINGERPRINT_KEYS
           if a.get(k) != b.get(k)}
    return out or None


def compare_records(baseline: Sequence[Record], candidate: Sequence[Record],
                    options: CompareOptions | None = None, *,
                    env_mismatch: Mapping[str, Any] | None = None, env_checked: bool = False,
                    labels: tuple[str, str] = ("baseline", "candidate"),
                    envs: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None] = (None, None)
                    ) -> Comparison:
    """The verdicts for two lists of records (the last record of a case_id wins).

    Cases measured on a cluster are matched per node hardware: a case whose repeats ran on
    other hardware in one run than in the other is not compared (unless env mismatches are
    allowed), since its timing would be the machines' difference."""
    options = options or CompareOptions()
    base = {r.case_id: r for r in merge_repeats(baseline)}
    cand = {r.case_id: r for r in merge_repeats(candidate)}
    workers = (_workers(baseline, options.pair_quantile),
               _workers(candidate, options.pair_quantile))
    base_hw, cand_hw = hardware_by_case(baseline, envs[0]), hardware_by_case(candidate, envs[1])
    common = [cid for cid in base if cid in cand]
    rows: list[MetricVerdict] = []
    timing: dict[int, _TimingTest] = {}  # row index -> its test, decided once all are in
    for case_id in common:
        b, c = base[case_id], cand[case_id]
        if b.status != "ok" or c.status != "ok":
            rows.append(_status_verdict(b, c))
            continue
        hw_b, hw_c = base_hw.get(case_id), cand_hw.get(case_id)
        if hw_b and hw_c and hw_b != hw_c and not options.allow_env_mismatch:
            rows.append(_hardware_verdict(c, hw_b, hw_c))
            continue
        test = _timing_test(b, c, options, workers)
        if test is not None:
            timing[len(rows)] = test
            rows.append(test.placeholder)
        rows += _metric_verdicts(b, c, options)
    for index, verdict in _resolve_timing(timing, options).items():
        rows[index] = verdict
    return Comparison(
        verdicts=tuple(rows),
        only_in_baseline=tuple(base[cid].name for cid in base if cid not in cand),
        only_in_candidate=tuple(cand[cid].name for cid in cand if cid not in base),
        env_mismatch=env_mismatch,
        correction=options.correction,
        alpha=options.alpha,
        env_checked=env_checked,
        baseline_label=labels[0],
        candidate_label=labels[1],
        thresholds=tuple(rule.text for rule in options.thresholds),
        cases_compared=len(common),
        pair_quantile=options.pair_quantile if options.paired_test else None,
    )


def _as_run(value: RunLike | RunData, side: str) -> RunData:
    if isinstance(value, RunData):
        return value
    if isinstance(value, (str, Path)):
        return load_run(value)
    records = tuple(value)
    if not all(isinstance(r, Record) for r in records):
        raise CompareError(f"{side}: expected a run folder path or a list of Records")
    return RunData(records=records, env=None, label=side)


# ---- timing ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _TimingTest:
    placeholder: MetricVerdict
    threshold: float
    p_greater: float | None
    p_less: float | None
    #: Of the test's t-interval; None for a rank interval.
    df: float | None = None


Workers = dict[tuple[str, int], float]


def _workers(records: Sequence[Record], quantile: float) -> Workers:
    """(case_id, repeat) -> that worker's time in ns, for pairing (the last record wins)."""
    return {(r.case_id, r.repeat): worker_time(r.samples_ns, quantile) for r in records
            if r.status == "ok" and r.samples_ns}


def _timing_test(b: Record, c: Record, options: CompareOptions,
                 workers: tuple[Workers, Workers] = ({}, {})) -> _TimingTest | None:
    """The timing test of one case: on per-repeat medians when both sides have at least
    MIN_REPEATS repeats (robust to drift between runs), else on the two sides' samples."""
    spec = metric_specs()[TIMING_METRIC]
    threshold = threshold_for(spec, c.name, c.case_id, options.thresholds)
    xs, ys = np.asarray(b.samples_ns) / 1e6, np.asarray(c.samples_ns) / 1e6
    if threshold is None or xs.size == 0 or ys.size == 0:
        return None
    if options.paired_test is not None:
        return _paired_timing_test(b, c, threshold, options, workers)
    rb = np.asarray((b.timing or {}).get("repeat_medians_ns") or []) / 1e6
    rc = np.asarray((c.timing or {}).get("repeat_medians_ns") or []) / 1e6
    if rb.size >= MIN_REPEATS and rc.size >= MIN_REPEATS:
        return _repeat_timing_test(b, c, rb, rc, threshold, options)
    med_b, med_c = float(np.median(xs)), float(np.median(ys))
    delta = (med_c - med_b) / med_b * 100 if med_b > 0 else None
    row = MetricVerdict(case_id=c.case_id, name=c.name, metric=TIMING_METRIC, baseline=med_b,
                        candidate=med_c, delta_pct=delta, ci_low_pct=None, ci_high_pct=None,
                        p_value=None, p_adjusted=None, verdict="inconclusive", kind="timing",
                        threshold=threshold, n_baseline=int(xs.size), n_candidate=int(ys.size),
                        test="samples")
    if min(xs.size, ys.size) < options.min_samples:
        note = (f"too few samples ({xs.size} baseline, {ys.size} candidate; need "
                f"{options.min_samples} a side)")
        return _TimingTest(replace(row, note=note), threshold, None, None)
    return _tested(row, shift_test(xs, ys, options.confidence), threshold)


def _repeat_timing_test(b: Record, c: Record, rb: np.ndarray, rc: np.ndarray, threshold: float,
                        options: CompareOptions) -> _TimingTest:
    """Per-repeat medians: the values are their geometric means, the change their ratio."""
    test = repeat_shift_test(rb, rc, options.confidence)
    geo_b, geo_c = float(np.exp(np.log(rb).mean())), float(np.exp(np.log(rc).mean()))
    row = MetricVerdict(case_id=c.case_id, name=c.name, metric=TIMING_METRIC, baseline=geo_b,
                        candidate=geo_c, delta_pct=(geo_c / geo_b - 1) * 100, ci_low_pct=None,
                        ci_high_pct=None, p_value=None, p_adjusted=None,
                        verdict="inconclusive", kind="timing", threshold=threshold,
                        n_baseline=int(rb.size), n_candidate=int(rc.size), test="repeats")
    return _tested(row, test, threshold)


def _paired_timing_test(b: Record, c: Record, threshold: float, options: CompareOptions,
                        workers: tuple[Workers, Workers]) -> _TimingTest:
    """Repeat k of the baseline against repeat k of the candidate: the pairs of an A/B run.
    Each worker stands in its pair by a low percentile of its samples (`pair_quantile`);
    the values shown are the geometric means of those over the pairs."""
    wb, wc = workers
    ids = sorted({k for cid, k in wb if cid == b.case_id} & {k for cid, k in wc
                                                             if cid == c.case_id})
    pairs = [(wb[(b.case_id, k)], wc[(c.case_id, k)]) for k in ids]
    xb = np.asarray([p[0] for p in pairs]) / 1e6
    xc = np.asarray([p[1] for p in pairs]) / 1e6
    row = MetricVerdict(case_id=c.case_id, name=c.name, metric=TIMING_METRIC, baseline=None,
                        candidate=None, delta_pct=None, ci_low_pct=None, ci_high_pct=None,
                        p_value=None, p_adjusted=None, verdict="inconclusive", kind="timing",
                        threshold=threshold, n_baseline=len(pairs), n_candidate=len(pairs),
                        test="paired")
    if len(pairs) < 2:
        note = f"{len(pairs)} complete pair(s); the paired test needs at least 2"
        return _TimingTest(replace(row, note=note), threshold, None, None)
    test = paired_test(xb, xc, confidence=options.confidence,
                       method=options.paired_test or "t")
    row = replace(row, baseline=float(np.exp(np.log(xb).mean())),
                  candidate=float(np.exp(np.log(xc).mean())), delta_pct=(test.ratio - 1) * 100)
    return _tested(row, test.as_shift(), threshold)


def _tested(row: MetricVerdict, test: ShiftTest, threshold: float) -> _TimingTest:
    low = (test.ratio_low - 1) * 100 if test.ratio_low is not None else None
    high = (test.ratio_high - 1) * 100 if test.ratio_high is not None else None
    p = test.p_greater if (row.delta_pct or 0.0) >= 0 else test.p_less
    row = replace(row, ci_low_pct=low, ci_high_pct=high, p_value=p)
    return _TimingTest(row, threshold, test.p_greater, test.p_less, test.df)


def _resolve_timing(tests: Mapping[int, _TimingTest],
                    options: CompareOptions) -> dict[int, MetricVerdict]:
    """Correct the timing p-values across cases, then decide each tested timing verdict.

    Two families, one per direction: regressions are judged on the corrected "slower"
    p-values, improvements on the corrected "faster" ones. Rows without a test (too few
    samples) keep their `inconclusive` and are not counted in the family.
    """
    tested = {i: t for i, t in tests.items() if t.p_greater is not None and t.p_less is not None}
    slower = adjust_pvalues([t.p_greater or 0.0 for t in tested.values()], options.correction)
    faster = adjust_pvalues([t.p_less or 0.0 for t in tested.values()], options.correction)
    # Holm's (and BH's) strictest step: one changed case among k needs p < alpha / k.
    level = options.alpha / max(len(tested), 1)
    return {index: _decide(test, p_slower, p_faster, options.alpha,
                           _mde(test, options.confidence, level))
            for (index, test), p_slower, p_faster in zip(tested.items(), slower, faster,
                                                          strict=True)}


def _mde(test: _TimingTest, confidence: float, level: float) -> float | None:
    lo, hi = test.placeholder.ci_low_pct, test.placeholder.ci_high_pct
    if lo is None or hi is None:
        return None
    return mde_from_interval(1 + lo / 100, 1 + hi / 100, confidence, level, df=test.df)


def _decide(test: _TimingTest, p_slower: float, p_faster: float, alpha: float,
            mde: float | None = None) -> MetricVerdict:
    row, t = test.placeholder, test.threshold
    delta = row.delta_pct if row.delta_pct is not None else 0.0
    p_adj = p_slower if delta >= 0 else p_faster
    lo, hi = row.ci_low_pct, row.ci_high_pct
    if delta >= t and p_slower < alpha:
        verdict, note = "regression", f"≥ {t:g}% and significant"
    elif delta <= -t and p_faster < alpha:
        verdict, note = "improvement", f"≤ -{t:g}% and significant"
    elif lo is not None and hi is not None and -t < lo and hi < t:
        verdict, note = "same", ""
    elif abs(delta) >= t:
        verdict, note = "inconclusive", (f"moved {delta:+.1f}% but not significant (p_adj "
                                         f"{p_adj:.2g} ≥ {alpha:g})")
    elif lo is None or hi is None:
        verdict, note = "inconclusive", "no confidence interval at this sample size"
    else:
        verdict, note = "inconclusive", (f"interval [{lo:+.1f}%, {hi:+.1f}%] reaches past "
                                         f"±{t:g}%")
    if verdict == "inconclusive" and mde is not None:
        note += f"; could detect ≥ {mde:.1f}%"
    return replace(row, p_adjusted=p_adj, verdict=verdict, note=note, mde_pct=mde)


# ---- deterministic counts, memory, fidelity -------------------------------------------------
def _metric_verdicts(b: Record, c: Record, options: CompareOptions) -> list[MetricVerdict]:
    out = []
    for name, spec in metric_specs().items():
        if spec.kind == "timing":
            continue
        xb, xc = _number(b.metrics.get(name)), _number(c.metrics.get(name))
        if xb is None or xc is None:
            continue  # a metric measured on one side only (a collector missing) is not gated
        if "rss" in name and any(r.info.get("isolation") == "inline" for r in (b, c)):
            continue  # measured inline, RSS is the runner's whole process, not the case's
        threshold = threshold_for(spec, c.name, c.case_id, options.thresholds)
        if threshold is None:
            continue
        row = _scalar_verdict(spec, c, xb, xc, threshold)
        out.append(_counts_verdict(row, b, c) if spec.kind == "counts" else row)
    return out


def _counts_verdict(row: MetricVerdict, b: Record, c: Record) -> MetricVerdict:
    """Instruction counts: the verdict is the change against the tolerance, as for any
    near-deterministic metric; the samples' spread (max - min over the median) is reported,
    and a change no larger than the spread cannot be told from it (`inconclusive`)."""
    spreads = [_number(r.metrics.get("instructions_spread_pct")) for r in (b, c)]
    counts = [len(((r.info.get("counting") or {}).get("samples")) or []) or None for r in (b, c)]
    known = [x for x in spreads if x is not None]
    note = row.note
    if known:
        text = "samples spread " + " / ".join("?" if x is None else f"{x:.3g}%" for x in spreads)
        note = f"{note}; {text}" if note else text
        if (row.verdict in ("regression", "improvement") and row.delta_pct is not None
                and abs(row.delta_pct) <= max(known)):
            return replace(row, verdict="inconclusive", n_baseline=counts[0],
                           n_candidate=counts[1],
                           note=f"{note}: the change is within the samples' own spread "
                                "(counts that do not repeat: threads, a nondeterministic model?)")
    return replace(row, note=note, n_baseline=counts[0], n_candidate=counts[1])


def _scalar_verdict(spec: MetricSpec, c: Record, xb: float, xc: float,
                    threshold: float) -> MetricVerdict:
    delta = (xc - xb) / abs(xb) * 100 if xb != 0 else None
    worse_by = (xc - xb) if spec.lower_is_better else (xb - xc)
    if spec.absolute:
        moved, unit = abs(xc - xb) > threshold, f"±{threshold:g} absolute"
    elif delta is None:
        moved, unit = xc != xb, "any change from 0"
    else:
        moved, unit = abs(delta) > threshold, f"±{threshold:g}%"
    if not moved:
        verdict, note = "same", ""
    else:
        verdict = "regression" if worse_by > 0 else "improvement"
        note = f"beyond the {unit} tolerance"
    return MetricVerdict(case_id=c.case_id, name=c.name, metric=spec.name, baseline=xb,
                         candidate=xc, delta_pct=delta, ci_low_pct=None, ci_high_pct=None,
                         p_value=None, p_adjusted=None, verdict=verdict, kind=spec.kind,
                         threshold=threshold, note=note)


def hardware_by_case(records: Sequence[Record], run_env: Mapping[str, Any] | None
                     ) -> dict[str, frozenset[str]]:
    """The node hardware each case's repeats ran on (records from a cluster say which;
    others ran where the run did); cases with no known hardware are left out."""
    default = hardware_hash(run_env) if run_env else None
    out: dict[str, set[str]] = {}
    for record in records:
        node = record.info.get("node") or {}
        key = node.get("hardware") or (None if node else default)
        if key:
            out.setdefault(record.case_id, set()).add(str(key))
    return {case_id: frozenset(keys) for case_id, keys in out.items()}


def _hardware_verdict(c: Record, base_hw: frozenset[str], cand_hw: frozenset[str]
                      ) -> MetricVerdict:
    note = (f"measured on other hardware in the two runs (node fingerprints "
            f"{', '.join(sorted(base_hw))} vs {', '.join(sorted(cand_hw))}): not compared; "
            "pass --allow-env-mismatch to compare anyway")
    return MetricVerdict(case_id=c.case_id, name=c.name, metric="hardware", baseline=None,
                         candidate=None, delta_pct=None, ci_low_pct=None, ci_high_pct=None,
                         p_value=None, p_adjusted=None, verdict="inconclusive", kind="status",
                         note=note)


def _status_verdict(b: Record, c: Record) -> MetricVerdict:
    """A case that did not run ok on both sides: no metric can be compared; say why."""
    reason = (c.reason or b.reason or "").splitlines()[0] if (c.reason or b.reason) else ""
    if b.status == "ok" and c.status in ("failed", "oom", "crashed", "timeout"):
        verdict = "regression"
    elif c.status == "ok" and b.status in ("failed", "oom", "crashed", "timeout"):
        verdict = "improvement"
    elif b.status == c.status:
        verdict = "same"
    else:
        verdict = "inconclusive"
    note = f"{b.status} → {c.status}" + (f": {reason}" if reason else "")
    return MetricVerdict(case_id=c.case_id, name=c.name, metric="status", baseline=None,
                         candidate=None, delta_pct=None, ci_low_pct=None, ci_high_pct=None,
                         p_value=None, p_adjusted=None, verdict=verdict, kind="status",
                         note=note)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
