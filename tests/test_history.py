"""History: the store (idempotent, crash-safe), the detector (known answers), imports, CLI."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest
from gate_helpers import ENV, record, write_run

from bench.cli import main
from bench.errors import ResultsError
from bench.gate.thresholds import parse_thresholds
from bench.history import HistoryStore, PointQuery, add_run, check, load_history
from bench.history import store as store_module
from bench.history.detect import DEFAULT_ALPHA, MIN_SIZE, fit_series
from bench.history.ranks import EXACT_SIDE
from bench.history.rows import pytest_benchmark_rows
from bench.history.store import EXTRA_METRICS
from benchmarks.history_quality import FAMILIES

ROOT = Path(__file__).resolve().parents[1]


# ---- the detector: known answers ------------------------------------------------------------
def noisy(n: int, sd: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sd, n)


def family_noise(family: str, n: int, seed: int) -> np.ndarray:
    """A series of the benchmark's noise family (its parameters drawn from their ranges)."""
    return FAMILIES[family](np.random.default_rng(seed), n).values


def test_finds_a_step_at_its_commit():
    y = noisy(120, 0.01, 1)
    y[70:] += math.log(1.06)
    fit = fit_series(y)
    (point,) = fit.change_points
    assert point.index == 70 and point.kind == "step"
    assert point.change_pct == pytest.approx(6.0, abs=1.0)
    assert point.ratio_low is not None and point.ratio_high is not None
    assert point.ratio_low < 1.06 < point.ratio_high
    assert point.p_value is not None and point.p_value < 1e-6


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("seed", range(3))
def test_a_flat_series_has_no_change_point_whatever_its_noise(family, seed):
    assert fit_series(family_noise(family, 200, seed)).change_points == ()


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("pct", [20.0, -20.0])
def test_a_20_percent_step_is_found_at_its_commit_as_a_step(family, pct):
    y = family_noise(family, 200, 11)
    y[120:] += math.log1p(pct / 100)
    points = fit_series(y).change_points
    near = [p for p in points if abs(p.index - 120) <= 1]
    assert len(near) == 1, points
    assert near[0].kind == "step" and (near[0].change_pct > 0) == (pct > 0)
    assert near[0].change_pct == pytest.approx(pct, abs=3.0)


def fast_host(n: int, seed: int) -> np.ndarray:
    """0.5% jitter; 20% of the commits (never two in a row) on a host 25% faster."""
    rng = np.random.default_rng(seed)
    y = rng.normal(0.0, 0.005, n)
    fast = np.flatnonzero(rng.random(n) < 0.2)
    fast = fast[np.r_[True, np.diff(fast) > 1]]
    y[fast] += math.log(0.75)
    return y


@pytest.mark.parametrize("where", [60, 197])
@pytest.mark.parametrize("seed", range(3))
def test_two_fast_commits_in_a_row_are_not_a_change(where, seed):
    """The noise a minority of commits on a faster host makes: quiet jitter, so a scale
    from successive differences saw two fast commits in a row as a 25% step (197: the
    newest two, what `history check` would have failed on)."""
    y = fast_host(200, seed)
    y[where:where + 2] = math.log(0.75) + noisy(2, 0.005, seed + 50)
    assert fit_series(y).change_points == ()


def test_two_outliers_at_the_newest_commits_are_not_a_change_three_at_a_level_are():
    y = noisy(150, 0.01, 4)
    two = y.copy()
    two[-2:] = [math.log(1.4), math.log(1.9)]
    assert fit_series(two).change_points == ()
    three = y.copy()
    three[-3:] += math.log(1.3)
    (point,) = fit_series(three).change_points
    assert point.index == 147 and point.n_after == 3


def test_a_drift_with_one_commit_at_its_new_level_is_not_reported():
    """A ramp that has just ended: one commit at the new level is no confirmed change."""
    y = noisy(110, 0.003, 6)
    y[100:109] += np.linspace(0.01, 0.09, 9)
    y[109] += math.log(1.10)
    for point in fit_series(y).change_points:
        assert point.kind != "drift" or point.n_after >= MIN_SIZE


def test_a_gradual_drift_is_one_drift():
    y = noisy(120, 0.004, 5)
    ramp = np.clip((np.arange(120) - 49) / 20, 0, 1) * math.log(1.10)
    fit = fit_series(y + ramp)
    (point,) = fit.change_points
    assert point.kind == "drift"
    assert abs(point.start - 50) <= 2 and abs(point.index - 69) <= 2
    assert point.change_pct == pytest.approx(10.0, abs=1.5)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_reported_change_passes_the_same_confirmation(family):
    """Steps, drifts and steps near the ends: each reported change has MIN_SIZE commits a
    side and its rank test below alpha, whatever its kind."""
    rng = np.random.default_rng(21)
    seen = 0
    for _ in range(4):
        y = family_noise(family, 180, int(rng.integers(1 << 30)))
        y[30:] += math.log(1.15)
        y[60:80] += np.linspace(0, 0.1, 20)
        y[80:] += 0.1
        y[130:] += math.log(0.92)
        y[177:] += math.log(1.3)  # the newest three
        for point in fit_series(y).change_points:
            seen += 1
            assert point.n_before >= MIN_SIZE and point.n_after >= MIN_SIZE, point
            assert point.p_value is not None and point.p_value < DEFAULT_ALPHA, point
    assert seen >= 4


def test_wander_needs_more_evidence():
    """An AR(1) wander (phi 0.8): the same rank evidence counts for less, so the wander is
    no change; the same points in random order show no dependence."""
    rng = np.random.default_rng(8)
    y = np.zeros(200)
    for i in range(1, 200):
        y[i] = 0.8 * y[i - 1] + rng.normal(0.0, 0.012)
    fit = fit_series(y)
    assert fit.dependence > 2 and fit.change_points == ()
    assert fit_series(rng.permutation(y)).dependence < 1.5


def test_an_accepted_change_starts_a_new_level_and_is_not_reported():
    y = noisy(80, 0.005, 7)
    y[40:] += math.log(1.2)
    fit = fit_series(y, forced=[40])
    assert fit.change_points == ()
    (accepted,) = fit.accepted
    assert accepted.index == 40 and accepted.kind == "accepted"
    assert accepted.change_pct == pytest.approx(20.0, abs=2.0)


def test_rank_statistics_match_brute_force():
    """Exact rank-sum tails against enumeration and against the subset-count recursion for
    long sides, the O(1) stretch z against ranking each stretch, three points above 100 at
    p = 1/C(103, 3), and the corrected normal z continuing the exact one past EXACT_SIDE."""
    from scipy.special import ndtr, ndtri

    from bench.history.ranks import RankScan, rank_sum_cdf, split_z, tail_z

    for m in (6, 9, 12):
        cdf, offsets = rank_sum_cdf(m)
        for k in range(1, m // 2 + 1):
            u = np.array([sum(c) for c in itertools.combinations(range(1, m + 1), k)])
            u -= k * (k + 1) // 2
            for v in range(k * (m - k) + 1):
                assert cdf[offsets[k] + v] == pytest.approx(np.mean(u <= v), abs=1e-12)
    m = 120  # subsets of 1..m by size and rank sum, counted one rank at a time
    counts = np.zeros((EXACT_SIDE + 2, (EXACT_SIDE + 1) * m + 1))
    counts[0, 0] = 1.0
    for v in range(1, m + 1):
        counts[1:, v:] += counts[:-1, :counts.shape[1] - v]
    cdf, offsets = rank_sum_cdf(m)
    for k in (9, 25, EXACT_SIDE):
        row = counts[k, k * (k + 1) // 2:k * (k + 1) // 2 + k * (m - k) + 1]
        expected = np.cumsum(row) / row.sum()
        assert cdf[offsets[k]:offsets[k + 1]] == pytest.approx(expected, rel=1e-9)
    # one point past the exact tables: the corrected normal z within 0.05 where it matters
    k = EXACT_SIDE + 1
    row = counts[k, k * (k + 1) // 2:k * (k + 1) // 2 + k * (m - k) + 1]
    exact = -ndtri(np.minimum(np.cumsum(row) / row.sum(), 0.5))
    approx = -tail_z(m, k, k * (k + 1) / 2 + np.arange(row.size))
    where = (exact > 3.0) & (exact < 5.5)
    assert where.any() and np.max(np.abs(approx[where] - exact[where])) < 0.05
    y = noisy(60, 1.0, 9)
    scan = RankScan(y)
    rng = np.random.default_rng(3)
    for _ in range(50):
        a, b = sorted(rng.choice(61, 2, replace=False))
        if b - a < 2:
            continue
        k = int(rng.integers(a + 1, b))
        assert scan.z([a], [k], [b])[0] == pytest.approx(split_z(y[None, a:b])[0, k - a - 1])
    top = np.r_[noisy(100, 1.0, 1), [10.0, 11.0, 12.0]]
    z = split_z(top[None, :])[0, 99]
    assert ndtr(z) == pytest.approx(1 / math.comb(103, 3), rel=1e-6)
    # 20 commits, then 10 all above them: exact well past the old 8-point limit
    z = split_z(np.r_[noisy(20, 1.0, 2), 10 + noisy(10, 1.0, 3)][None, :])[0, 19]
    assert z == pytest.approx(ndtri(1 / math.comb(30, 10)), rel=1e-9)


@pytest.mark.parametrize(("family", "seed"), [
    ("gauss-high", 72), ("gauss-high", 152), ("gauss-high", 203), ("gauss-high", 264),
    ("ar1-wander", 139), ("ar1-wander", 147), ("ar1-wander", 198), ("ar1-wander", 249)])
def test_a_step_is_never_called_a_drift(family, seed):
    """Series where noise before or after a 10% step once looked like a ramp into it."""
    y = family_noise(family, 200, seed)
    y[100:] += math.log1p(0.10)
    points = fit_series(y).change_points
    assert not [p for p in points if p.kind == "drift" and p.start - 1 <= 100 <= p.index + 1]


def test_bad_points_are_refused():
    with pytest.raises(ValueError, match="finite"):
        fit_series([0.0, float("nan"), 0.0, 0.0], [0.01] * 4)


# ---- run folders at commits ------------------------------------------------------------------
def sha(index: int) -> str:
    return hashlib.sha1(str(index).encode()).hexdigest()


def run_at(tmp: Path, index: int, levels: dict[str, float], *, repeats: int = 3,
           seed: int = 0, env: dict | None = None) -> Path:
    """A run folder of `levels` (case name -> median ms), `repeats` workers per case."""
    rng = np.random.default_rng(seed * 1000 + index)
    records = []
    for name, level in levels.items():
        for r in range(repeats):
            offset = rng.normal(0.0, 0.004)
            samples = list(level * np.exp(offset + rng.normal(0.0, 0.01, 30)))
            records.append(replace(record(name, samples, run_id=f"run{index:03d}"), repeat=r))
    env = {**(env or ENV), "git_commit": sha(index), "git_branch": "main",
           "git_dirty": False}
    return write_run(tmp / f"run{index:03d}", records, env=env,
                     started_at=f"2026-03-01T{index // 60:02d}:{index % 60:02d}:00+00:00")


def commit_time(index: int) -> str:
    return f"2026-02-{1 + index // 24:02d}T{index % 24:02d}:00:00+00:00"


def fill(store: HistoryStore, tmp: Path, commits: int, step_at: int | None = None,
         step: float = 1.15, **kwargs) -> None:
    for i in range(commits):
        slow = step if step_at is not None and i >= step_at else 1.0
        run = run_at(tmp, i, {"a": 1.0 * slow, "b": 2.0 * slow, "c": 3.0}, **kwargs)
        add_run(store, run, commit_time=commit_time(i))


# ---- the store -------------------------------------------------------------------------------
def test_adding_a_run_twice_adds_nothing(tmp_path):
    store = HistoryStore(tmp_path / "h", create=True)
    run = run_at(tmp_path, 0, {"a": 1.0, "b": 2.0})
    first = add_run(store, run, commit_time=commit_time(0))
    again = add_run(store, run, commit_time=commit_time(0))
    assert (first.added, first.skipped) == (2, 0)
    assert (again.added, again.skipped) == (0, 2)
    assert store.summary()["rows"] == 2


def test_rows_keep_samples_repeats_and_commit(tmp_path):
    store = HistoryStore(tmp_path / "h", create=True)
    add_run(store, run_at(tmp_path, 3, {"a": 1.5}), commit_time=commit_time(3))
    row = store.connect().execute(
        "SELECT commit, branch, dirty, n_repeats, len(samples_ms), level_ms, se_log "
        "FROM records").fetchone()
    assert row[0] == sha(3) and row[1] == "main" and row[2] is False
    assert row[3] == 3 and row[4] == 90
    assert row[5] == pytest.approx(1.5, rel=0.02) and 0 < row[6] < 0.02


def test_compaction_keeps_every_row_once(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "COMPACT_AT", 3)
    store = HistoryStore(tmp_path / "h", create=True)
    fill(store, tmp_path, 10)
    files = store.live_files()
    assert sorted(f.name[:2] for f in files) == ["L0", "L2"]  # 9 = 3 x 3 merged twice
    assert len(files) < 10
    assert store.summary()["rows"] == 30
    assert len(store.points()) == 30


CRASH = """
import os, sys
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
from bench.history import HistoryStore, add_run, store as store_module
store_module.COMPACT_AT = 2
real_replace, real_unlink = os.replace, os.unlink
from pathlib import Path
mode = {mode!r}
def replace(a, b):
    if mode == "before-rename" and str(b).endswith(".parquet"):
        os._exit(9)
    real_replace(a, b)
    if mode == "after-merge" and Path(b).name.startswith("L1-"):
        os._exit(9)
os.replace = replace
store = HistoryStore({store!r})
add_run(store, {run!r}, commit_time="2026-02-02T00:00:00+00:00")
"""


@pytest.mark.parametrize("mode", ["before-rename", "after-merge"])
def test_a_crash_mid_append_leaves_nothing_half_written(tmp_path, mode):
    """The writer is killed (os._exit) with its file written but not renamed, or with a
    merged file in place but its inputs not yet deleted: readers see every row once, and
    the next append cleans up and works."""
    store = HistoryStore(tmp_path / "h", create=True)
    add_run(store, run_at(tmp_path, 0, {"a": 1.0, "b": 2.0}), commit_time=commit_time(0))
    run = run_at(tmp_path, 1, {"a": 1.0, "b": 2.0})
    script = CRASH.format(root=str(ROOT), tests=str(ROOT / "tests"), mode=mode,
                          store=str(store.path), run=str(run))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    leftovers = list((store.path / "data").iterdir())
    if mode == "before-rename":
        assert any(f.name.endswith(".tmp") for f in leftovers)
        assert store.summary()["rows"] == 2
    else:
        assert len([f for f in leftovers if f.suffix == ".parquet"]) == 3  # merge + 2 inputs
        assert store.summary()["rows"] == 4
    assert len(store.points()) == store.summary()["rows"]
    result = add_run(store, run, commit_time="2026-02-02T00:00:00+00:00")
    assert result.added == (2 if mode == "before-rename" else 0)
    assert store.summary()["rows"] == 4
    assert not [f for f in (store.path / "data").iterdir() if f.name.endswith(".tmp")]


def test_not_a_store_and_newer_format_are_clear_errors(tmp_path):
    with pytest.raises(ResultsError, match="no history store here"):
        HistoryStore(tmp_path / "missing")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ResultsError, match="not a history store"):
        HistoryStore(tmp_path / "full", create=True)
    HistoryStore(tmp_path / "h", create=True)
    (tmp_path / "h" / store_module.MARKER).write_text('{"format": 99}')
    with pytest.raises(ResultsError, match="newer"):
        HistoryStore(tmp_path / "h")


def test_a_run_without_a_commit_needs_one(tmp_path):
    run = write_run(tmp_path / "r", [record("a", [1.0] * 10)])
    store = HistoryStore(tmp_path / "h", create=True)
    with pytest.raises(ResultsError, match="--commit SHA"):
        add_run(store, run)
    result = add_run(store, run, commit="f" * 40, commit_time="2026-01-01T00:00:00Z")
    assert result.added == 1


# ---- analysis over a store -------------------------------------------------------------------
def test_one_commit_slowing_several_cases_is_one_finding(tmp_path):
    store = HistoryStore(tmp_path / "h", create=True)
    fill(store, tmp_path, 40, step_at=30)
    history = load_history(store)
    (finding,) = history.findings
    assert finding.commit == sha(30) and finding.previous == sha(29)
    assert finding.direction == "slower"
    assert sorted(c.series.name for c in finding.changes) == ["a", "b"]
    low, high = finding.pct_range()
    assert 12 < low <= high < 18


def test_series_of_different_environments_are_never_joined(tmp_path):
    store = HistoryStore(tmp_path / "h", create=True)
    other = {**ENV, "cpu_model": "Other CPU"}
    for i in range(12):
        env = ENV if i % 2 else other  # alternate machines, 2x apart
        level = 1.0 if i % 2 else 2.0
        add_run(store, run_at(tmp_path, i, {"a": level}, env=env), commit_time=commit_time(i))
    history = load_history(store)
    assert len(history.series) == 2
    assert history.findings == ()


def test_check_fails_on_a_new_regression_until_accepted(tmp_path):
    store = HistoryStore(tmp_path / "h", create=True)
    fill(store, tmp_path, 50, step_at=45)
    result = check(load_history(store), parse_thresholds(["5%"]), last=5)
    assert result.failed
    assert sorted(v.change.series.name for v in result.regressions) == ["a", "b"]
    assert not check(load_history(store), parse_thresholds(["20%"]), last=5).failed
    assert not check(load_history(store), parse_thresholds(["a:median_ms=off", "b:median_ms=off"]),
                     last=5).failed
    store.accept(sha(45)[:12], ["a"])
    result = check(load_history(store), parse_thresholds(["5%"]), last=5)
    assert [v.change.series.name for v in result.regressions] == ["b"]
    assert [v.verdict for v in result.verdicts if v.change.series.name == "a"] == ["accepted"]
    store.accept(sha(45))
    assert not check(load_history(store), (), last=5).failed


def test_check_judges_a_change_from_the_push_that_makes_it_sure():
    """A case noisy enough that a 10% step needs more commits at its new level than
    --last: the change is older than the newest five commits when it is first sure; it is
    judged from that push on (at the edge of the evidence it may come and go for a few
    pushes), and no longer once the history knew it five pushes ago."""
    from bench.history.analyse import analyse
    from benchmarks.history_quality import make_series

    y = noisy(160, 0.05, 12)
    y[120:] += math.log(1.10)
    shas = tuple(sha(i) for i in range(160))
    times = tuple(np.datetime64("2026-01-01T00:00") + np.timedelta64(i, "h")
                  for i in range(160))
    times = tuple(t.astype("datetime64[us]").item().replace(tzinfo=UTC) for t in times)
    flagged = []
    for t in range(121, 161):
        s = make_series(0, y[:t], np.full(t, 0.01), shas[:t], times[:t], "noisy")
        result = check(analyse([s]), parse_thresholds(["5%"]), last=5)
        if result.failed:
            (verdict,) = result.regressions
            flagged.append((t, shas.index(verdict.change.commit)))
    assert flagged, "never flagged"
    assert flagged[0][0] - 120 > 5  # sure only once older than --last
    assert all(abs(index - 120) <= 1 for _, index in flagged)
    assert flagged[-1][0] < 150, flagged


def test_check_does_not_judge_again_an_excursion_that_ended_before_the_newest_commits():
    """Under AR(1) wander (a case of the quality benchmark's online suite), a +5% stretch
    of 12 commits is a change while it lasts; long after it ended, fits of the longer
    history show it on some pushes and not on others, and it is not judged again."""
    from bench.history.analyse import analyse
    from benchmarks.history_quality import _commits, make_series

    family = "ar1-wander"
    rng = np.random.default_rng([1000, list(FAMILIES).index(family), 7])
    noise = [FAMILIES[family](rng, 200) for _ in range(19)][18]
    shas, times = _commits(200, 1000)

    def at(t: int):
        s = make_series(18, noise.values[:t], noise.within_se[:t], shas[:t], times[:t],
                        "wander")
        history = analyse([s])
        return history, check(history, parse_thresholds(["5%"]), last=5)

    history, result = at(133)  # the stretch is the newest level: judged
    assert [shas.index(v.change.commit) for v in result.regressions] == [121]
    history, result = at(172)  # long over, shown again by this fit: not judged again
    assert 121 in [shas.index(c.commit) for c in history.changes()]
    assert not result.failed


def metric_run(tmp: Path, index: int, rss: float, instructions: float) -> Path:
    """A run whose case records a peak RSS and instruction counts (and a flat timing)."""
    rng = np.random.default_rng(index)
    rec = record("a", list(1.0 * np.exp(rng.normal(0.0, 0.01, 20))), run_id=f"m{index:03d}",
                 metrics={"peak_rss_bytes": int(rss * np.exp(rng.normal(0.0, 0.01))),
                          "instructions_per_call": instructions * (1 + 1e-4 * rng.random())})
    env = {**ENV, "git_commit": sha(index), "git_branch": "main", "git_dirty": False}
    return write_run(tmp / f"m{index:03d}", [rec], env=env,
                     started_at=f"2026-03-01T{index // 60:02d}:{index % 60:02d}:00+00:00")


def test_memory_and_instruction_counts_have_their_own_series_and_thresholds(tmp_path, capsys):
    store = HistoryStore(tmp_path / "h", create=True)
    for i in range(40):
        rss = 2e8 * (1.3 if i >= 34 else 1.0)
        instructions = 1e9 * (1.004 if i >= 30 else 1.0)  # below the counts' 0.5%
        add_run(store, metric_run(tmp_path, i, rss, instructions), commit_time=commit_time(i))
    history = load_history(store, PointQuery(metrics=EXTRA_METRICS))
    assert sorted(s.metric for s in history.series) == sorted(
        ["median_ms", "peak_rss_bytes", "instructions_per_call"])
    found = {(f.metric, f.commit, f.direction) for f in history.findings}
    assert found == {("peak_rss_bytes", sha(34), "larger"),
                     ("instructions_per_call", sha(30), "larger")}
    result = check(history, parse_thresholds(["5%"]), last=10)
    assert [(v.change.series.metric, v.verdict) for v in result.verdicts] == [
        ("peak_rss_bytes", "regression"), ("instructions_per_call", "below threshold")]
    assert not check(history, parse_thresholds(["memory=40%"]), last=10).failed
    assert main(["history", "check", "--store", str(store.path), "--last", "10"]) == 1
    assert "a [peak_rss_bytes]" in capsys.readouterr().out
    assert main(["history", "check", "--store", str(store.path), "--last", "10",
                 "--metric", "median_ms"]) == 0


def test_dirty_runs_are_left_out_unless_asked(tmp_path):
    store = HistoryStore(tmp_path / "h", create=True)
    run = run_at(tmp_path, 0, {"a": 1.0})
    meta = json.loads((run / "run.json").read_text())
    meta["env"]["git_dirty"] = True
    (run / "run.json").write_text(json.dumps(meta))
    add_run(store, run, commit_time=commit_time(0))
    assert store.points().empty
    assert len(store.points(PointQuery(include_dirty=True))) == 1


# ---- pytest-benchmark JSON, written by pytest-benchmark itself -------------------------------
BENCH_TEST = """
def test_sleepy(benchmark):
    benchmark.extra_info["note"] = "x"
    benchmark(lambda: sum(range(2000)))
"""


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "GIT_COMMITTER_DATE": "2026-01-05T10:00:00+00:00"}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def pytest_benchmark(tmp: Path, *options: str) -> None:
    """Run a real benchmark under pytest-benchmark, which writes its own JSON."""
    pytest.importorskip("pytest_benchmark")
    (tmp / "test_b.py").write_text(textwrap.dedent(BENCH_TEST))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:archbench", "-p", "no:cacheprovider",
         "test_b.py", "--benchmark-max-time=0.05", "--benchmark-min-rounds=8", *options],
        capture_output=True, text=True, cwd=tmp, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout + done.stderr


def test_import_pytest_benchmark_json_with_samples_and_commit(tmp_path):
    """--benchmark-json in a git repository: samples kept, commit and its time recorded."""
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "README").write_text("x")
    git(tmp_path, "add", "README")
    git(tmp_path, "commit", "-q", "-m", "first")
    sha = git(tmp_path, "rev-parse", "HEAD")
    pytest_benchmark(tmp_path, "--benchmark-json=bench.json")
    data = json.loads((tmp_path / "bench.json").read_text())
    stats = data["benchmarks"][0]["stats"]
    assert data["commit_info"]["id"] == sha
    rows = pytest_benchmark_rows(tmp_path / "bench.json")
    assert [r["commit"] for r in rows] == [sha]
    assert rows[0]["commit_time"].isoformat() == "2026-01-05T10:00:00+00:00"
    assert rows[0]["branch"] == "main"
    assert rows[0]["median_ms"] == pytest.approx(stats["median"] * 1e3, rel=1e-6)
    assert len(rows[0]["samples_ms"]) == stats["rounds"]
    assert json.loads(rows[0]["metrics"]) == {"note": "x", "se_from": "samples"}
    store = HistoryStore(tmp_path / "h", create=True)
    assert store.add(rows).added == 1 and store.add(rows).added == 0


def test_import_saved_benchmarks_folder_without_samples(tmp_path, capsys):
    """--benchmark-save outside git: no samples (the IQR gives the error) and no commit,
    so the import asks for one."""
    pytest_benchmark(tmp_path, "--benchmark-save=base",
                     f"--benchmark-storage=file://{tmp_path / '.benchmarks'}")
    (saved,) = (tmp_path / ".benchmarks").rglob("*.json")
    assert "data" not in json.loads(saved.read_text())["benchmarks"][0]["stats"]
    store = tmp_path / "h"
    assert main(["history", "import", str(tmp_path / ".benchmarks"), "--store", str(store)]) == 2
    assert "--commit" in capsys.readouterr().err
    assert main(["history", "import", str(tmp_path / ".benchmarks"), "--store", str(store),
                 "--commit", "ab" * 20, "--commit-time", "2026-01-01T00:00:00Z"]) == 0
    (row,) = HistoryStore(store).connect().execute(
        "SELECT name, level_ms, se_log, samples_ms, metrics FROM records").fetchall()
    assert row[0] == "test_sleepy" and row[1] > 0 and row[2] > 0 and row[3] is None
    assert json.loads(row[4])["se_from"] == "iqr"


def test_import_refuses_what_is_not_pytest_benchmark(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(ResultsError, match="benchmarks"):
        pytest_benchmark_rows(bad)
    assert main(["history", "import", str(bad), "--store", str(tmp_path / "h")]) == 2


# ---- the command line ------------------------------------------------------------------------
def test_cli_add_show_check_accept(tmp_path, capsys, monkeypatch):
    store = tmp_path / "h"
    runs = []
    for i in range(40):
        slow = 1.12 if i >= 35 else 1.0
        runs.append(str(run_at(tmp_path, i, {"a": 1.0 * slow, "b": 2.0})))
    for i, run in enumerate(runs):
        assert main(["history", "add", run, "--store", str(store),
                     "--commit-time", commit_time(i)]) == 0
    capsys.readouterr()
    assert main(["history", "show", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "2 series over 40 commits" in out and "1 case slower (+12" in out
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert main(["history", "check", "--store", str(store), "--markdown"]) == 1
    text = capsys.readouterr().out
    assert "**1 regression**" in text and "| regression | a |" in text
    assert summary.read_text().startswith("### archbench history check")
    assert main(["history", "check", "--store", str(store), "-t", "15%"]) == 0
    capsys.readouterr()
    assert main(["history", "accept", sha(35)[:10], "--store", str(store)]) == 0
    assert main(["history", "check", "--store", str(store)]) == 0
    capsys.readouterr()
    assert main(["history", "show", "--store", str(store), "b", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["series"] == 1
    assert [f["kind"] for f in shown["findings"]] == ["accepted"]  # a new level starts there


def test_cli_errors_exit_2(tmp_path, capsys):
    assert main(["history", "show", "--store", str(tmp_path / "none")]) == 2
    assert main(["history", "add", str(tmp_path / "nothing"), "--store",
                 str(tmp_path / "h")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert main(["history", "check", "--store", str(tmp_path / "h"), "-t", "5"]) == 2
    assert main(["history", "accept", "deadbeef", "--store", str(tmp_path / "h")]) == 2
    assert "not in" in capsys.readouterr().err


# ---- the report's trend section --------------------------------------------------------------
def test_report_draws_the_trend_section(tmp_path, capsys):
    store = HistoryStore(tmp_path / "h", create=True)
    fill(store, tmp_path, 24, step_at=16)
    out = tmp_path / "trend.html"
    assert main(["report", "--history", str(store.path), "-o", str(out)]) == 0
    html = out.read_text()
    assert "Trends over commits" in html and "2 case(s) slower" in html
    assert f"{sha(15)[:10]}..{sha(16)[:10]}" in html  # the finding's commit range
    assert html.count('data-chart="chart-trend-') == 4  # the finding, a and b, the overview
    with_run = tmp_path / "both.html"
    assert main(["report", str(tmp_path / "run023"), "--history", str(store.path),
                 "-o", str(with_run)]) == 0
    both = with_run.read_text()
    assert "Trends over commits" in both and 'id="results"' in both
    assert main(["report", "--history", str(store.path), "--format", "markdown", "-o",
                 "-"]) == 0
    assert "### archbench history" in capsys.readouterr().out
    assert main(["report", "--history", str(tmp_path / "none")]) == 2
    assert main(["report", "--history", str(store.path), "--format", "csv", "-o", "-"]) == 2


# ---- from `archbench run` and from pytest ----------------------------------------------------
@pytest.mark.slow
def test_run_appends_to_the_history(tmp_path, write_suite):
    git(tmp_path, "init", "-q", "-b", "main")
    suite = write_suite("""
        [[sweep]]
        model = "mlp"
        depth = [1]
        width = [16]
        features = [8]
        """, folder=tmp_path)
    git(tmp_path, "add", suite.name)
    git(tmp_path, "commit", "-q", "-m", "suite")
    store = tmp_path / "h"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["run", str(suite), "--out", str(tmp_path / "r1"), "--no-report",
                     "--history", str(store)]) == 0
    finally:
        os.chdir(cwd)
    (row,) = HistoryStore(store).connect().execute(
        "SELECT name, commit, commit_time, branch, n_repeats FROM records").fetchall()
    assert row[0].startswith("mlp-d1-w16") and row[1] == git(tmp_path, "rev-parse", "HEAD")
    assert row[2].isoformat().startswith("2026-01-05T10:00:00") and row[3] == "main"


@pytest.mark.slow
def test_pytest_plugin_appends_to_the_history(tmp_path, write_suite):
    git(tmp_path, "init", "-q", "-b", "main")
    suite = write_suite("""
        [[sweep]]
        model = "mlp"
        depth = [1]
        width = [16, 32]
        features = [8]
        """, folder=tmp_path)
    git(tmp_path, "add", suite.name)
    git(tmp_path, "commit", "-q", "-m", "suite")
    store = tmp_path / "h"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", suite.name,
         "--archbench-out", "run", "--archbench-history", str(store)],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 case(s) added to the history store" in done.stdout
    assert HistoryStore(store).summary()["rows"] == 2


# ---- the CI example keeps the history -------------------------------------------------------
def test_ci_workflow_carries_the_history_and_checks_it(tmp_path):
    from test_ci_example import load_workflow, run_step, step

    workflow = load_workflow()
    store = workflow["env"]["ARCHBENCH_HISTORY"]
    restore = step(workflow, "Restore the history")
    save = step(workflow, "Store the history in the cache")
    assert restore["with"]["path"] == save["with"]["path"] == store
    assert save["with"]["key"].startswith(restore["with"]["restore-keys"])
    assert step(workflow, "Keep the history")["with"]["path"] == store
    names = [s.get("name") for s in workflow["jobs"]["bench"]["steps"]]
    assert names.index("Restore the history") < names.index("Run the suite") < names.index(
        "Add the run to the history") < names.index("Store the history in the cache") < \
        names.index("Check the history")
    summary = tmp_path / "summary.md"
    run_dir = tmp_path / workflow["env"]["RUN_DIR"]
    history = HistoryStore(tmp_path / store, create=True)
    codes = []
    for i in range(50):  # pushes to main; from the 46th on, case "a" is 20% slower
        shutil.rmtree(run_dir, ignore_errors=True)
        source = run_at(tmp_path / "made", i, {"a": 1.2 if i >= 45 else 1.0, "b": 2.0})
        shutil.copytree(source, run_dir)
        meta = json.loads((run_dir / "run.json").read_text())
        meta["env"]["git_commit_time"] = commit_time(i)  # what git would say in the runner
        (run_dir / "run.json").write_text(json.dumps(meta))
        if i < 45:  # the earlier pushes, quickly
            add_run(history, run_dir)
            continue
        assert run_step(workflow, "Add the run to the history", "push", tmp_path, summary) == 0
        codes.append(run_step(workflow, "Check the history", "push", tmp_path, summary))
    # the change needs three commits at its new level to be seen (pushes 45 and 46 pass),
    # and is flagged once their rank evidence clears the search's threshold
    assert codes[:2] == [0, 0] and 1 in codes, codes
    assert history.summary()["runs"] == 50
