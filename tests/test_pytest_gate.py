"""The pytest front end and the CLI give one answer: repeats merged once, whatever the path."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

# pytester's in-process runs drop every module a run imported; torch._dynamo cannot be
# imported twice (see test_pytest_plugin.py).
import torch._dynamo  # noqa: F401
from conftest import FAST_SETTINGS
from gate_helpers import record

from bench.gate.compare import compare_records
from bench.results.pytest_benchmark import export
from bench.results.repeats import merge_repeats

pytest_plugins = ["pytester"]


def repeats(name: str, medians: list[float], run_id: str) -> list:
    """One record per repeat (a worker each), samples tight around each repeat's median."""
    out = []
    for k, m in enumerate(medians):
        samples = list(m * np.exp(np.random.default_rng(k).normal(0, 0.01, 40)))
        out.append(replace(record(name, samples, run_id=run_id), repeat=k))
    return out


#: The issue's example: repeat medians that differ a lot from run to run (a machine running
#: 0.7x in one repeat), no real change between the two runs.
BASE = [0.138, 0.131, 0.141, 0.116, 0.126]
CAND = [0.134, 0.128, 0.139, 0.119, 0.097]


def test_merging_twice_keeps_the_repeats() -> None:
    raw = repeats("mlp", BASE, "b")
    (once,) = merge_repeats(raw)
    (twice,) = merge_repeats([once])
    assert once.timing is not None and twice.timing is not None
    assert twice.timing["repeat_medians_ns"] == once.timing["repeat_medians_ns"]
    assert len(twice.timing["repeat_medians_ns"]) == 5
    assert twice.timing["repeat_ids"] == [0, 1, 2, 3, 4]
    assert twice.samples_ns == once.samples_ns


def test_already_merged_records_get_the_same_verdict_as_raw_ones() -> None:
    """The pytest session used to hand merged records to the gate, which merged them again:
    the five repeat medians collapsed into one and the gate fell back to Mann–Whitney on
    pooled samples, flagging run-to-run drift as a change. Both inputs now give one answer."""
    base, cand = repeats("mlp", BASE, "b"), repeats("mlp", CAND, "c")
    from_raw = compare_records(base, cand).timing()[0]
    from_merged = compare_records(merge_repeats(base), merge_repeats(cand)).timing()[0]
    assert from_raw.test == from_merged.test == "repeats"
    assert from_merged.verdict == from_raw.verdict != "regression"
    assert from_merged.ci_low_pct == from_raw.ci_low_pct
    assert from_merged.p_adjusted == from_raw.p_adjusted


def test_estimate_lies_inside_its_interval() -> None:
    base, cand = repeats("mlp", BASE, "b"), repeats("mlp", CAND, "c")
    row = compare_records(merge_repeats(base), merge_repeats(cand)).timing()[0]
    assert row.ci_low_pct is not None and row.ci_high_pct is not None
    assert row.ci_low_pct <= row.delta_pct <= row.ci_high_pct  # type: ignore[operator]


def test_pytest_benchmark_export_has_one_entry_per_case() -> None:
    raw = repeats("mlp", BASE, "b") + repeats("cnn", CAND, "b")
    data = export(raw, {"env": {}, "run_id": "b"})
    names = [b["name"] for b in data["benchmarks"]]
    assert names == ["mlp", "cnn"]
    assert data["benchmarks"][0]["stats"]["rounds"] == 5 * 40


def test_record_exposes_median_and_ci_in_ms() -> None:
    (merged,) = merge_repeats(repeats("mlp", BASE, "b"))
    low, high = merged.ci_ms  # type: ignore[misc]
    assert low <= merged.median_ms <= high  # type: ignore[operator]
    medians = np.asarray(merged.timing["repeat_medians_ns"]) / 1e6
    assert merged.median_ms == pytest.approx(np.exp(np.log(medians).mean())), \
        "the level: the geometric mean of the workers' medians"
    summary = merged.summary()
    assert summary is not None and summary.n == 200
    assert record("failed", None, status="failed").median_ms is None


PYTEST_SUITE = """
[suite]
name = "agree"
[settings]
warmup_iters = 1
warmup_time_s = 0.0
min_samples = 8
min_time_s = 0.0
max_time_s = 0.05
timeout_s = 60
repeats = 3
[[sweep]]
model = "mlp"
depth = [1]
width = [8, 16]
batch_size = [1]
"""


@pytest.mark.slow
def test_pytest_gate_and_compare_agree_on_the_same_folders(pytester, capsys) -> None:
    """Suite cases with repeats gated by pytest, then the same two folders by the CLI:
    every case gets the same verdict (the pytest session used to merge repeats twice)."""
    import json

    from bench.cli import main

    pytester.makefile(".toml", agree=PYTEST_SUITE)
    base, cand = pytester.path / "base", pytester.path / "cand"
    pytester.runpytest("agree.toml", "--archbench-out", str(base)).assert_outcomes(passed=2)
    gated = pytester.runpytest("agree.toml", "--archbench-out", str(cand),
                               "--archbench-baseline", str(base))
    gated.assert_outcomes(passed=2)
    from_pytest = json.loads((cand / "comparison.json").read_text())
    capsys.readouterr()
    main(["compare", str(base), str(cand), "--json"])
    from_cli = json.loads(capsys.readouterr().out)
    keys = ("case_id", "metric", "verdict", "test", "p_adjusted", "ci_low_pct")
    assert [{k: v[k] for k in keys} for v in from_pytest["verdicts"]] == \
        [{k: v[k] for k in keys} for v in from_cli["verdicts"]]
    assert {v["test"] for v in from_cli["verdicts"] if v["kind"] == "timing"} == {"repeats"}


AB_MODEL = """\
import torch


def factory(case):
    return torch.nn.Linear({width}, {width}), lambda batch: torch.randn(batch, {width})
"""

AB_SUITE = ('\n[suite]\nname = "ab"\n' + FAST_SETTINGS.lstrip("\n")
            + '[[sweep]]\nmodel = "ab_models.py:factory"\nbatch_size = [1]\n')


@pytest.mark.slow
def test_archbench_ab_measures_the_baseline_revision_in_the_session(pytester) -> None:
    """`pytest --archbench-ab HEAD~1`: the previous commit's model is measured beside this
    one, pair by pair; its (exact) parameter regression fails the item."""
    import json
    import subprocess

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(pytester.path)]
    subprocess.run(["git", "init", "-q", str(pytester.path)], check=True)
    pytester.makefile(".toml", ab=AB_SUITE)
    for width in (8, 16):
        (pytester.path / "ab_models.py").write_text(AB_MODEL.format(width=width))
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", f"w{width}"], check=True)
    out = pytester.path / "abrun"
    result = pytester.runpytest("ab.toml", "--archbench-ab", "HEAD~1", "--archbench-fail",
                                "timing=off", "--archbench-out", str(out), "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "archbench: A/B run of 1 case(s) against HEAD~1" in text
    assert "params_total 72 → 272" in text
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["cases_compared"] == 1
    for side in ("baseline", "candidate"):
        assert (out / side / "results.jsonl").is_file()
