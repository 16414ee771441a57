"""The pytest plugin through pytester: collection, outcomes, the gate, the fixture, exports."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
import types
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

# pytester's in-process runs drop every module a run imported; torch's dispatch modes import
# torch._dynamo, whose C++ op library cannot be imported twice. Importing it here first keeps
# it out of the modules pytester drops.
import torch._dynamo  # noqa: F401

from bench.cli import main as cli_main
from bench.results import read_records, read_run

pytest_plugins = ["pytester"]

FAST = """
[settings]
warmup_iters = 1
warmup_time_s = 0.0
min_samples = 8
min_time_s = 0.0
max_time_s = 0.15
timeout_s = 60
repeats = 1
"""

#: A factory whose per-call cost is a busy wait read from delays.json at build time (a file,
#: so worker processes see changes), keyed by the case's width.
NETS = '''
import json, time
from pathlib import Path
import torch

class Wait(torch.nn.Module):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x):
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:
            pass
        return self.linear(x)

def make(case):
    delays = json.loads((Path(__file__).parent / "delays.json").read_text())
    return Wait(delays[str(case.width)]), lambda batch: torch.randn(batch, 4)

def broken(case):
    raise ValueError("width must be even, got 7")
'''


@pytest.fixture
def project(pytester):
    """A user project: a suite of two waiting cases, an unsupported one and a failing one."""
    gate = f'[suite]\nname = "gate"\n{FAST}'
    pytester.makefile(".toml", **{"suites/gate": gate + textwrap.dedent("""
        [[sweep]]
        name = "waits"
        model = "nets.py:make"
        width = [1, 2]
        [[sweep]]
        name = "elsewhere"
        model = "nets.py:make"
        width = [1]
        device = ["cuda"]
        """)})
    pytester.makefile(".toml", **{"suites/broken": f'[suite]\nname = "broken"\n{FAST}'
                                  '[[sweep]]\nmodel = "nets.py:broken"\n'})
    (pytester.path / "suites" / "nets.py").write_text(NETS)
    set_delays(pytester.path, {"1": 0.001, "2": 0.001})
    return pytester


def set_delays(root: Path, delays: dict[str, float]) -> None:
    (root / "suites" / "delays.json").write_text(json.dumps(delays))


def test_collects_suite_cases_with_readable_ids_and_nothing_else(project):
    project.makepyprojecttoml('[tool.pytest.ini_options]\naddopts = ""\n')
    project.makefile(".toml", **{"suites/notasuite": '[tool]\nname = "x"\n'})
    project.makepyfile(test_plain="def test_one():\n    pass\n")
    result = project.runpytest("--collect-only", "-q")
    ids = [line for line in result.outlines if "::" in line]
    assert ids == [
        "suites/broken.toml::broken-b1-fp32-cpu",
        "suites/gate.toml::make-w1-b1-fp32-cpu",
        "suites/gate.toml::make-w2-b1-fp32-cpu",
        "suites/gate.toml::make-w1-b1-fp32-cuda",
        "test_plain.py::test_one",
    ]
    # -k selects by case name; disabling the plugin leaves plain Python collection alone.
    selected = project.runpytest("--collect-only", "-q", "-k", "w2")
    assert [x for x in selected.outlines if "::" in x] == ["suites/gate.toml::make-w2-b1-fp32-cpu"]
    off = project.runpytest("--collect-only", "-q", "-p", "no:archbench")
    assert [x for x in off.outlines if "::" in x] == ["test_plain.py::test_one"]


def test_a_broken_suite_named_on_the_command_line_is_a_clear_collection_error(pytester):
    pytester.makefile(".toml", bad='[suite]\nname = "bad"\n[[sweep]]\nmodel = "mlp"\nwidht = [8]\n')
    result = pytester.runpytest("bad.toml")
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert 'bad.toml: sweep[0].widht: unknown key "widht" (did you mean "width"?)' in text
    assert "archbench: " in text and "Traceback" not in text


def test_outcomes_skip_fail_and_pass_through_the_runner(project):
    out = project.path / "run"
    result = project.runpytest("suites", "-rs", "--archbench-out", str(out))
    result.assert_outcomes(passed=2, skipped=1, failed=1)
    text = result.stdout.str()
    assert "SKIPPED [1] suites/gate.toml:1: unsupported: no CUDA" in text
    result.stdout.fnmatch_lines(["*archbench: broken-b1-fp32-cpu failed: ValueError: width must "
                                 "be even, got 7*"])
    records = {r.name: r for r in read_records(out / "results.jsonl")}
    assert {n: r.status for n, r in records.items()} == {
        "broken-b1-fp32-cpu": "failed", "make-w1-b1-fp32-cpu": "ok",
        "make-w2-b1-fp32-cpu": "ok", "make-w1-b1-fp32-cuda": "unsupported"}
    # Each case ran in a worker of its own, as with `archbench run`.
    pids = {r.info.get("worker_pid") for r in records.values() if r.status == "ok"}
    assert len(pids) == 2 and None not in pids
    assert read_run(out)["status"] == "complete"
    assert f"archbench: run folder {out} (4 record(s))" in text


def test_regressed_case_fails_with_the_comparison(project, monkeypatch):
    base = project.path / "base"
    project.runpytest("suites/gate.toml", "--archbench-out", str(base),
                      "--archbench-isolation", "inline").assert_outcomes(passed=2, skipped=1)
    monkeypatch.setenv("ARCHBENCH_BASELINES", str(project.path / "baselines"))
    assert cli_main(["baseline", "save", str(base), "--name", "main"]) == 0

    set_delays(project.path, {"1": 0.003, "2": 0.001})  # width 1 three times slower
    result = project.runpytest("suites/gate.toml", "--archbench-isolation", "inline",
                               "--archbench-baseline", "main", "--archbench-fail", "5%",
                               "--archbench-out", str(project.path / "cand"))
    result.assert_outcomes(passed=1, skipped=1, failed=1)
    result.stdout.fnmatch_lines([
        "*archbench: measuring [[]1/3[]] make-w1-b1-fp32-cpu*",
        "*FAILED suites/gate.toml::make-w1-b1-fp32-cpu*",
    ])
    text = result.stdout.str()
    assert "make-w1-b1-fp32-cpu regressed against baseline main (holm correction" in text
    assert "make-w1-b1-fp32-cpu: median_ms" in text and "threshold 5%" in text
    assert "archbench: suite cases vs baseline main: 1 regression" in text
    assert "FAILED suites/gate.toml::make-w2" not in text

    # Without --archbench-fail the comparison is reported but nothing fails.
    report_only = project.runpytest("suites/gate.toml", "--archbench-isolation", "inline",
                                    "--archbench-baseline", "main")
    report_only.assert_outcomes(passed=2, skipped=1)
    assert "suite cases vs baseline main: 1 regression" in report_only.stdout.str()


def test_gate_options_are_checked_before_anything_runs(project):
    result = project.runpytest("suites", "--archbench-fail", "5%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--archbench-fail needs --archbench-baseline" in result.stderr.str()
    unknown = project.runpytest("suites", "--archbench-baseline", "nope",
                                "--archbench-baselines-dir", str(project.path / "none"))
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR
    assert '"nope" is neither a run folder nor a baseline' in unknown.stderr.str()
    bad_spec = project.runpytest("suites", "--archbench-baseline", "suites",
                                 "--archbench-fail", "5")
    assert bad_spec.ret == pytest.ExitCode.USAGE_ERROR and 'write "5%"' in bad_spec.stderr.str()


def _has_report_module() -> bool:
    import importlib.util

    return importlib.util.find_spec("bench.report") is not None


def test_report_option_writes_the_report_or_says_why_not(project):
    path = project.path / "report.html"
    result = project.runpytest("suites/gate.toml", "--archbench-isolation", "inline",
                               "--archbench-report", str(path))
    if _has_report_module():
        result.assert_outcomes(passed=2, skipped=1)
        assert path.read_text().lstrip().lower().startswith("<!doctype html")
        assert f"archbench: report written to {path}" in result.stdout.str()
    else:
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert "--archbench-report needs the report module (bench.report)" in result.stderr.str()
        assert not path.exists()


def test_report_is_built_from_the_baseline_and_this_run(project, monkeypatch):
    """The adapter's calls into bench.report, with a stand-in module recording them."""
    calls = []
    fake = types.ModuleType("bench.report")
    fake.__spec__ = ModuleSpec("bench.report", None)
    fake.load_report_input = lambda runs: calls.append([Path(r) for r in runs]) or "input"
    fake.html_report = lambda report: f"<!doctype html><p>{report}</p>"

    def write_html(text, path):
        Path(path).write_text(text)
        return Path(path)

    fake.write_html = write_html
    monkeypatch.setitem(sys.modules, "bench.report", fake)
    base = project.path / "base"
    project.runpytest("suites/gate.toml", "--archbench-isolation", "inline", "--archbench-out",
                      str(base))
    result = project.runpytest("suites/gate.toml", "--archbench-isolation", "inline",
                               "--archbench-out", str(project.path / "cand"),
                               "--archbench-baseline", str(base),
                               "--archbench-report", str(project.path / "r.html"))
    result.assert_outcomes(passed=2, skipped=1)
    assert calls[-1] == [base, project.path / "cand"]
    assert (project.path / "r.html").read_text() == "<!doctype html><p>input</p>"


FIXTURE_TESTS = '''
import json, time
from pathlib import Path
import pytest
import torch

FAST = dict(warmup_iters=1, warmup_time_s=0.0, min_samples=8, min_time_s=0.0, max_time_s=0.15)

class Wait(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)
        self.seconds = json.loads(Path(__file__).with_name("fx.json").read_text())["delay"]

    def forward(self, x):
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:
            pass
        return self.linear(x)

def test_measures(archbench):
    record = archbench(Wait(), torch.randn(16, 4), **FAST)
    assert record.status == "ok" and record.params["batch_size"] == 16
    assert record.metrics["params_total"] == 15 and len(record.samples_ns) >= 8
    assert record.name == "test_measures"

def test_two_named_calls(archbench):
    a = archbench(torch.nn.Linear(4, 4), torch.randn(2, 4), name="small", **FAST)
    b = archbench(torch.nn.Linear(4, 64), (torch.randn(2, 4),), name="wide", batch_size=1, **FAST)
    assert a.case_id != b.case_id and b.name == "test_two_named_calls::wide"

def test_no_gpu(archbench):
    archbench(torch.nn.Linear(4, 4), torch.randn(2, 4), device="cuda", **FAST)

def test_bad_option(archbench):
    with pytest.raises(Exception, match="unknown option"):
        archbench(torch.nn.Linear(4, 4), torch.randn(2, 4), max_tim_s=1)

def test_pytest_benchmark_still_works(benchmark):
    assert benchmark(sum, range(100)) == 4950
'''


def test_fixture_measures_registers_and_gates(pytester, monkeypatch):
    pytester.makepyfile(test_fx=FIXTURE_TESTS)
    (pytester.path / "fx.json").write_text('{"delay": 0.001}')
    base = pytester.path / "base"
    result = pytester.runpytest("-rs", "--archbench-out", str(base), "--benchmark-disable")
    result.assert_outcomes(passed=4, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_fx.py:*: archbench: unsupported: no CUDA*"])
    records = {r.name: r for r in read_records(base / "results.jsonl")}
    assert set(records) == {"test_measures", "test_two_named_calls::small",
                            "test_two_named_calls::wide", "test_no_gpu"}
    assert records["test_measures"].metrics["flops_per_item"] > 0
    assert records["test_no_gpu"].status == "unsupported"

    # The same test ids give the same case ids: a slower module is caught at the end.
    (pytester.path / "fx.json").write_text('{"delay": 0.003}')
    # (Only the slowed test: microsecond-scale modules can move past 5% between two runs on
    # a busy machine, which would be a true verdict about the machine, not this test's.)
    gated = pytester.runpytest("--archbench-baseline", str(base), "--archbench-fail", "5%",
                               "--archbench-out", str(pytester.path / "cand"),
                               "-k", "test_measures")
    gated.assert_outcomes(passed=1)
    assert gated.ret == pytest.ExitCode.TESTS_FAILED
    text = gated.stdout.str()
    assert "archbench: fixture measurements vs" in text and "1 regression" in text
    assert "test_measures: median_ms" in text


def test_pytest_benchmark_json_export_round_trip(pytester, tmp_path):
    """Both plugins' JSON files, and `pytest-benchmark compare` reading archbench's export."""
    pytester.makepyfile(test_fx=FIXTURE_TESTS)
    (pytester.path / "fx.json").write_text('{"delay": 0.0005}')
    ours, theirs = tmp_path / "archbench.json", tmp_path / "pytest-benchmark.json"
    result = pytester.runpytest("--archbench-benchmark-json", str(ours),
                                "--benchmark-json", str(theirs), "-k", "not no_gpu",
                                "--benchmark-max-time", "0.05")
    result.assert_outcomes(passed=4)
    assert json.loads(theirs.read_text())["benchmarks"][0]["name"] == \
        "test_pytest_benchmark_still_works"
    data = json.loads(ours.read_text())
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(data)
    for key in ("torch_version", "cuda_version", "gpus", "driver_version", "cpu"):
        assert key in data["machine_info"]
    exported = {b["name"]: b for b in data["benchmarks"]}
    assert set(exported) == {"test_measures", "test_two_named_calls::small",
                             "test_two_named_calls::wide"}
    measured = exported["test_measures"]
    assert measured["extra_info"]["params_total"] == 15
    assert measured["stats"]["rounds"] == len(measured["stats"]["data"]) >= 8

    csv_base = tmp_path / "table"
    done = subprocess.run([str(Path(sys.executable).with_name("pytest-benchmark")), "compare",
                           str(ours), "--csv", str(csv_base)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Failed to load" not in done.stdout + done.stderr
    assert "test_measures" in done.stdout
    (table,) = tmp_path.glob("table*.csv")
    rows = {row["name"]: row for row in csv.DictReader(table.open())}
    assert set(rows) == {f"pytest::{n}" for n in exported}
    for name, bench_ in exported.items():
        data_s = sorted(bench_["stats"]["data"])
        assert float(rows[f"pytest::{name}"]["median"]) == pytest.approx(
            bench_["stats"]["median"])
        assert float(rows[f"pytest::{name}"]["min"]) == pytest.approx(data_s[0])


TRANSFORM_FIXTURE_TEST = '''
import torch

def test_bf16_masked(archbench):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    before = [p.detach().clone() for p in module.parameters()]
    record = archbench(module, torch.randn(8, 16), precision="bf16",
                       prune={"method": "unstructured", "ratio": 0.5},
                       warmup_iters=1, warmup_time_s=0.0, min_time_s=0.0, max_time_s=0.05)
    assert record.status == "ok", record.reason
    assert record.metrics["compute_dtype"] == "bfloat16"
    assert abs(record.metrics["prune_sparsity"] - 0.5) < 0.01
    assert 0 < record.metrics["fidelity_rel_l2"] < 0.5
    # the caller's module is untouched
    assert all(p.dtype == torch.float32 for p in module.parameters())
    assert all(torch.equal(p, q) for p, q in zip(module.parameters(), before))

def test_bad_transform(archbench):
    import pytest
    with pytest.raises(Exception, match="int8-dynamic"):
        archbench(torch.nn.Linear(4, 4), torch.randn(2, 4), device="cuda",
                  precision="int8-dynamic")
'''


def test_fixture_applies_transforms_to_a_copy(pytester):
    pytester.makepyfile(test_tf=TRANSFORM_FIXTURE_TEST)
    result = pytester.runpytest("--archbench-out", str(pytester.path / "run"))
    result.assert_outcomes(passed=2)
