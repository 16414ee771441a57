"""A/B runs: pairing by repeat, the paired verdicts through `compare`, the sides, the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from gate_helpers import record, write_run

from bench.cli import main
from bench.engine.ab import (
    SIDES,
    ABError,
    ABOptions,
    ABResult,
    _interleave,
    pair_orders,
    resolve_side,
    side_paths,
)
from bench.gate import render
from bench.gate.compare import CompareOptions, compare_runs
from bench.suite.spec import Case, Settings

ROOT = Path(__file__).resolve().parents[1]


def side_records(medians_ms: list[float], *, name: str = "mlp", run_id: str = "r",
                 skip: tuple[int, ...] = ()) -> list:
    """One record per repeat, each a worker whose samples sit tightly around its median."""
    out = []
    for k, m in enumerate(medians_ms):
        if k in skip:
            continue
        samples = list(m * np.exp(np.random.default_rng(k).normal(0, 0.002, 21)))
        out.append(replace(record(name, samples, run_id=run_id), repeat=k))
    return out


def drifting(ratio: float, n: int = 6, seed: int = 0) -> tuple[list[float], list[float]]:
    """Pairs on a machine whose speed swings ±30% from pair to pair (shared within a pair)."""
    rng = np.random.default_rng(seed)
    machine = np.exp(rng.uniform(-0.3, 0.3, n))
    noise = np.exp(rng.normal(0, 0.005, (2, n)))
    return list(0.2 * machine * noise[0]), list(0.2 * ratio * machine * noise[1])


def ab_folders(tmp_path: Path, base: list, cand: list, *, same_run: bool = True) -> tuple:
    meta = {"ab": {"id": "x-ab", "method": "t"}} if same_run else {}
    a = write_run(tmp_path / "baseline", base,
                  **({"ab": {**meta["ab"], "side": "baseline"}} if same_run else {}))
    b = write_run(tmp_path / "candidate", cand,
                  **({"ab": {**meta["ab"], "side": "candidate"}} if same_run else {}))
    return a, b


def test_pairs_catch_a_change_that_drift_hides_from_the_unpaired_test(tmp_path: Path) -> None:
    b, c = drifting(1.08)
    paired = compare_runs(*ab_folders(tmp_path / "p", side_records(b), side_records(c)))
    unpaired = compare_runs(*ab_folders(tmp_path / "u", side_records(b), side_records(c),
                                        same_run=False))
    (row,) = paired.timing()
    assert row.test == "paired" and row.verdict == "regression"
    assert row.ci_low_pct is not None and row.ci_low_pct > 6 and row.ci_high_pct < 10
    (welch,) = unpaired.timing()
    assert welch.test == "repeats" and welch.verdict == "inconclusive"
    # The same folders, asked for explicitly, give the same answer.
    asked = compare_runs(tmp_path / "u" / "baseline", tmp_path / "u" / "candidate",
                         CompareOptions(paired_test="t"))
    assert asked.timing()[0].verdict == "regression"


def test_aa_pairs_are_same_and_wilcoxon_agrees(tmp_path: Path) -> None:
    b, c = drifting(1.0, n=10, seed=3)
    folders = ab_folders(tmp_path, side_records(b), side_records(c))
    for method in ("t", "wilcoxon"):
        (row,) = compare_runs(*folders, CompareOptions(paired_test=method)).timing()
        assert row.verdict == "same", row
        assert row.mde_pct is not None and row.mde_pct < 2.0


def test_pairs_are_matched_by_repeat_id(tmp_path: Path) -> None:
    """A repeat that failed on one side drops its pair; the rest stay aligned."""
    b, c = drifting(1.08, n=7, seed=1)
    base = side_records(b, skip=(2,))
    cand = side_records(c)
    (row,) = compare_runs(*ab_folders(tmp_path, base, cand)).timing()
    assert row.n_baseline == row.n_candidate == 6
    assert row.verdict == "regression"


def test_inconclusive_is_never_silent(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    b = list(0.2 * np.exp(rng.normal(0, 0.1, 4)))
    c = list(np.asarray(b) * np.exp(rng.normal(0.03, 0.1, 4)))
    comparison = compare_runs(*ab_folders(tmp_path, side_records(b), side_records(c)))
    (row,) = comparison.timing()
    assert row.verdict == "inconclusive" and row.mde_pct is not None
    assert f"could detect ≥ {row.mde_pct:.1f}%" in row.note
    head = render.headline(comparison)
    assert "no regression" not in head and "could not tell for 1 timing case" in head
    md = render.to_markdown(comparison)
    assert "no regression" not in md
    assert "1 of 1 timing case(s) could not be resolved" in md
    assert f"{row.mde_pct:.1f}%" in md
    data = comparison.to_dict()
    assert data["unresolved"] == 1 and data["paired"] is True
    assert data["detectable_pct"]["min"] == pytest.approx(row.mde_pct)


def test_decided_runs_still_report_what_they_could_detect(tmp_path: Path) -> None:
    b, c = drifting(1.0, n=8)
    comparison = compare_runs(*ab_folders(tmp_path, side_records(b), side_records(c)))
    assert render.headline(comparison).startswith("no regression")
    assert render.inconclusive_lines(comparison) == []
    assert comparison.to_dict()["detectable_pct"]["max"] < 2.0


def test_abba_orders_balance_and_repeat() -> None:
    orders = pair_orders(12, "seed")
    assert orders == pair_orders(12, "seed")
    assert orders != pair_orders(12, "other")
    firsts = [o[0] for o in orders]
    assert firsts.count("baseline") == firsts.count("candidate") == 6
    for i in range(0, 12, 2):  # each block is AB BA or BA AB
        assert orders[i] == tuple(reversed(orders[i + 1]))


def test_sides_from_folders_and_interpreters(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old" / "suites").mkdir(parents=True)
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "s.toml").write_text("")
    with contextlib.ExitStack() as stack:
        side = resolve_side("old", "baseline", stack)
        assert side.kind == "dir" and side.root == (tmp_path / "old").resolve()
        cwd, search = side_paths(side, ["suites/s.toml"])
        assert cwd == side.root
        assert search == [str(side.root / "suites"), str(side.root)]
        python = resolve_side(sys.executable, "candidate", stack)
        assert python.kind == "python" and python.root is None
        assert side_paths(python, ["suites/s.toml"])[1] == [str(tmp_path / "suites"),
                                                             str(tmp_path)]
        (tmp_path / "notes.txt").write_text("")
        with pytest.raises(ABError, match="not an executable Python"):
            resolve_side("notes.txt", "baseline", stack)
        with pytest.raises(ABError, match="not a folder, a Python interpreter, or a git"):
            resolve_side("no-such-thing", "baseline", stack)


def test_bad_ab_options() -> None:
    with pytest.raises(ABError, match="min pairs"):
        ABOptions(min_pairs=5, max_pairs=3)
    with pytest.raises(ABError, match="budget"):
        ABOptions(budget_s=0)


class FakeSides:
    """Both sides of an A/B run without workers: a counted case answers with the side's
    instructions per call, a timed one with samples."""

    def __init__(self, per_call: dict[str, float], counted: set[str]) -> None:
        self.per_call = per_call
        self.counted = counted
        self.asked: list[tuple[str, str, int]] = []

    def run(self, label: str, case_id: str, repeat: int):
        self.asked.append((label, case_id, repeat))
        if case_id in self.counted:
            rec = record(case_id, None, case_id=case_id,
                         metrics={"instructions_per_call": self.per_call[label]})
        else:
            rec = record(case_id, [0.2, 0.21, 0.2, 0.22, 0.2], case_id=case_id)
        return replace(rec, repeat=repeat)


class Silent:
    def started(self, run_dirs, cases) -> None: ...
    def pair_done(self, case, pair, order, records, state) -> None: ...


def test_counted_cases_take_one_pair_and_timed_ones_go_on(tmp_path: Path) -> None:
    """Counts do not drift with the machine: one pair decides a counted case, while a timed
    case in the same run keeps adding pairs."""
    counted = Case(model="mlp", batch_size=1, settings=Settings(measure="instructions"))
    timed = Case(model="mlp", batch_size=2)
    sides = FakeSides({"baseline": 1_000_000, "candidate": 1_100_000}, {counted.case_id})
    result = ABResult(run_dirs={s: tmp_path / s for s in SIDES}, sides={})
    _interleave([counted, timed], {s: sides for s in SIDES}, ABOptions(min_pairs=2,
                max_pairs=3), None, result, Silent(), 0.0)
    c, t = counted.case_id, timed.case_id
    assert result.stopped == {c: "counted", t: "max_pairs"}
    assert result.pairs == {c: 1, t: 3}
    assert sorted(label for label, cid, _ in sides.asked if cid == c) == [
        "baseline", "candidate"]
    # the gate judges the pair's counts (10% more instructions: a regression)
    base = write_run(tmp_path / "b", result.records["baseline"], ab={"id": "x", "side": "b"})
    cand = write_run(tmp_path / "c", result.records["candidate"], ab={"id": "x", "side": "c"})
    comparison = compare_runs(base, cand)
    rows = {(v.case_id, v.metric): v for v in comparison.verdicts}
    assert rows[(c, "instructions_per_call")].verdict == "regression"
    assert (c, "median_ms") not in rows and rows[(t, "median_ms")].test == "paired"
    counted_only = compare_runs(*(write_run(tmp_path / f"only-{side}", [
        r for r in result.records[side] if r.case_id == c], ab={"id": "y", "side": side})
        for side in SIDES))
    assert render.settings_line(counted_only).startswith("timing: no timed case compared;")


MODEL = """\
import torch

WIDTH = {width}


def factory(case):
    return torch.nn.Linear(WIDTH, WIDTH), lambda batch: torch.randn(batch, WIDTH)
"""


def _sides(tmp_path: Path) -> None:
    for name, width in (("old", 8), ("new", 16)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.py").write_text(MODEL.format(width=width))


@pytest.mark.slow
def test_ab_cli_end_to_end(tmp_path: Path, write_suite, monkeypatch, capsys) -> None:
    """Two folders: each side's workers build that side's model (the parameter counts
    prove it), every case gets its pairs with matching repeat ids, and the output is a run
    folder per side plus the comparison; exit 1 for the (exact) parameter regression."""
    _sides(tmp_path)
    suite = write_suite('[[sweep]]\nname = "lin"\nmodel = "model.py:factory"\n'
                        "batch_size = [1, 2]\n")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "ab"
    code = main(["ab", str(suite), "--baseline", "old", "--candidate", "new", "--out",
                 str(out), "--min-pairs", "2", "--max-pairs", "3", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["paired"] is True and data["cases_compared"] == 2
    params = [v for v in data["verdicts"] if v["metric"] == "params_total"]
    assert {(v["baseline"], v["candidate"]) for v in params} == {(72, 272)}
    assert json.loads((out / "comparison.json").read_text())["verdicts"] == data["verdicts"]
    for side in ("baseline", "candidate"):
        lines = (out / side / "results.jsonl").read_text().splitlines()
        repeats = sorted((r["case_id"], r["repeat"]) for r in map(json.loads, lines))
        assert len(repeats) >= 4 and all(k < 3 for _, k in repeats)
        meta = json.loads((out / side / "run.json").read_text())
        assert meta["ab"]["side"] == side and meta["status"] == "complete"
    ab = json.loads((out / "ab.json").read_text())
    assert set(ab["stopped"].values()) <= {"same", "changed", "max_pairs"}
    # `compare` on the two folders gives the same verdicts (one comparison path).
    assert main(["compare", str(out / "baseline"), str(out / "candidate"), "--json"]) == 1
    again = json.loads(capsys.readouterr().out)
    assert [v["verdict"] for v in again["verdicts"]] == [v["verdict"] for v in data["verdicts"]]


@pytest.mark.slow
def test_ab_between_git_revisions(tmp_path: Path, write_suite, monkeypatch) -> None:
    """REF sides: temporary worktrees of two commits, removed afterwards."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run([*git[:5], "init", "-q", str(repo)], check=True)
    for width in (8, 16):
        (repo / "model.py").write_text(MODEL.format(width=width))
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", f"w{width}"], check=True)
    suite = write_suite('[[sweep]]\nname = "lin"\nmodel = "model.py:factory"\n'
                        "batch_size = [1]\n", folder=repo)
    monkeypatch.chdir(repo)
    out = tmp_path / "ab"
    assert main(["ab", suite.name, "--baseline", "HEAD~1", "--candidate", "HEAD", "--out",
                 str(out), "--min-pairs", "2", "--max-pairs", "2",
                 "--threshold", "timing=off"]) == 1
    cmp = json.loads((out / "comparison.json").read_text())
    (params,) = [v for v in cmp["verdicts"] if v["metric"] == "params_total"]
    assert (params["baseline"], params["candidate"]) == (72, 272)
    assert cmp["baseline"].startswith("HEAD~1 (")
    worktrees = subprocess.run([*git, "worktree", "list"], capture_output=True, text=True)
    assert len(worktrees.stdout.strip().splitlines()) == 1  # the temporary ones are gone


def test_a_side_without_archbench_says_so(tmp_path: Path, write_suite, monkeypatch,
                                          capsys) -> None:
    """An interpreter side that cannot import archbench fails with a clear error, exit 2;
    when both sides fail, both are told, the baseline first."""
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\necho \"No module named 'bench'\" >&2\nexit 1\n")
    fake.chmod(0o755)
    _sides(tmp_path)
    suite = write_suite('[[sweep]]\nname = "lin"\nmodel = "model.py:factory"\n'
                        "batch_size = [1]\n")
    monkeypatch.chdir(tmp_path)
    env_before = dict(os.environ)
    code = main(["ab", str(suite), "--baseline", str(fake), "--candidate", str(fake),
                 "--out", str(tmp_path / "ab")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("has no archbench") == 2
    assert err.index("the baseline side") < err.index("the candidate side")
    assert dict(os.environ) == env_before


def test_report_carries_the_caveats_of_the_cli(tmp_path: Path) -> None:
    """The HTML and markdown comparison say what the CLI says: undecided cases with the
    change the run could have seen, and single-worker drift."""
    from bench.report import html_report, load_report_input
    from bench.report.markdown import render_markdown

    rng = np.random.default_rng(7)
    b = list(0.2 * np.exp(rng.normal(0, 0.1, 4)))
    c = list(np.asarray(b) * np.exp(rng.normal(0.03, 0.1, 4)))
    a_dir, b_dir = ab_folders(tmp_path, side_records(b), side_records(c))
    report = load_report_input([a_dir, b_dir])
    (comparison,) = report.comparisons
    (caveat,) = comparison.caveats
    assert caveat.startswith("1 of 1 timing case(s) could not be resolved")
    assert "smallest slowdown this run could have detected" in caveat
    assert caveat.split(" is ")[1][:4] in html_report(report)
    assert "could not be resolved" in render_markdown(report)
    single = write_run(tmp_path / "one-a", [record("mlp", list(np.full(20, 1.0)))])
    other = write_run(tmp_path / "one-b", [record("mlp", list(np.full(20, 1.01)))])
    (drift,) = load_report_input([single, other]).comparisons
    assert any("one worker's samples" in line for line in drift.caveats)
