"""Instruction counting: the dump reader, the count statistics, the counting worker's
lifecycle (with a fake worker, fast) and a real counted suite under callgrind (slow)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gate_helpers import ENV, record, write_run

from bench.engine.counting import CountingWorker, counter_label, perf_instructions
from bench.engine.outcome import Outcome
from bench.env import fingerprint
from bench.gate.compare import CompareOptions, compare_records, env_mismatch
from bench.measure.callgrind import CallgrindOutputError, dump_path, read_total, under_valgrind
from bench.measure.protocol import WorkerJob
from bench.results import Record
from bench.results.store import load_records, load_run, read_run
from bench.suite.spec import Case, Settings

HAVE_VALGRIND = shutil.which("valgrind") is not None and shutil.which("callgrind_annotate")
needs_valgrind = pytest.mark.skipif(not HAVE_VALGRIND, reason="valgrind is not installed")

DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 7672
cmd:  python imp.py
part: {part}

desc: Trigger: Client Request

positions: line
events: Ir
summary: {total}

ob=(40) libtorch_python.so
fn=(1) f
0 {total}

totals: {total}
"""


def write_dump(path: Path, total: int, part: int = 1) -> Path:
    path.write_text(DUMP.format(total=total, part=part))
    return path


def test_read_total_reads_the_totals_line(tmp_path: Path) -> None:
    path = write_dump(dump_path(tmp_path / "cg.out", 2), 14_417_533, part=2)
    assert path.name == "cg.out.2"
    assert read_total(path, part=2) == 14_417_533


def test_read_total_refuses_another_part_and_broken_files(tmp_path: Path) -> None:
    path = write_dump(tmp_path / "cg.out.1", 10, part=1)
    with pytest.raises(CallgrindOutputError, match="not part 3"):
        read_total(path, part=3)
    (tmp_path / "bad").write_text("events: Ir\nnothing here\n")
    with pytest.raises(CallgrindOutputError, match="no totals"):
        read_total(tmp_path / "bad")
    (tmp_path / "cache").write_text("events: Dr Ir\ntotals: 5 6\n")
    with pytest.raises(CallgrindOutputError, match="instructions"):
        read_total(tmp_path / "cache")
    with pytest.raises(CallgrindOutputError, match="could not be read"):
        read_total(tmp_path / "missing")


def test_under_valgrind_reads_the_maps(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text("7f00 r-xp /usr/libexec/valgrind/vgpreload_core-amd64-linux.so\n")
    assert under_valgrind(maps)
    maps.write_text("7f00 r-xp /usr/lib/libc.so.6\n")
    assert not under_valgrind(maps)
    assert not under_valgrind()  # pytest itself is not under valgrind


@needs_valgrind
def test_read_total_agrees_with_callgrind_annotate(tmp_path: Path) -> None:
    """The totals line is what callgrind_annotate (torch's reader) calls PROGRAM TOTALS."""
    out = tmp_path / "true.out"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "true"],
                   check=True, capture_output=True, timeout=120)
    annotate = subprocess.run(["callgrind_annotate", "--show-percs=no", str(out)], check=True,
                              capture_output=True, text=True, timeout=60).stdout
    line = next(t for t in annotate.splitlines() if "PROGRAM TOTALS" in t)
    assert read_total(out) == int(line.split()[0].replace(",", "")) > 1000


# ---- the counting backend, with a fake valgrind and a fake worker -----------------------------
FAKE_VALGRIND = """#!/bin/sh
if [ "$1" = "--version" ]; then echo valgrind-9.9.9; exit 0; fi
while [ "${1#--}" != "$1" ]; do shift; done
exec "$@"
"""


def counted_case(**params: Any) -> Case:
    settings = Settings(measure="instructions").for_counting()
    return Case(model="mlp", batch_size=params.pop("batch_size", 4), settings=settings, **params)


@pytest.fixture
def fake_worker(tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., CountingWorker]]:
    """A CountingWorker whose "valgrind" just runs the command and whose worker module is
    tests/fake_counting_worker.py."""
    script = tmp_path / "valgrind"
    script.write_text(FAKE_VALGRIND)
    script.chmod(0o755)
    tests_dir = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [tests_dir, *filter(None, [os.environ.get("PYTHONPATH")])]))
    made: list[CountingWorker] = []

    def make(**kwargs: Any) -> CountingWorker:
        worker = CountingWorker(valgrind=str(script), module="fake_counting_worker", **kwargs)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.close()


def run_job(worker: CountingWorker, case: Case, timeout_s: float = 30.0) -> Outcome:
    return worker.run(WorkerJob(case=case), timeout_s, on_message=lambda m: None)


def test_one_worker_counts_case_after_case(fake_worker: Callable[..., CountingWorker]) -> None:
    worker = fake_worker()
    first = run_job(worker, counted_case(width=64))
    second = run_job(worker, counted_case(width=128))
    assert first.status == second.status == "ok"
    assert first.done is not None and second.done is not None
    assert second.done.findings.metrics["instructions_per_call"] == 128_000
    facts = second.done.findings.info["counting"]
    # the same process took both cases; only the first paid the start
    assert facts["cases_before"] == 1 and facts["counting_worker_cases"] == 2
    assert first.done.findings.info["counting"]["counting_worker_fresh"] is True
    assert facts["counting_worker_fresh"] is False
    assert facts["valgrind_version"] == "9.9.9" and facts["counter"] == "callgrind"
    assert first.pid == second.pid and worker.workers_started == 1


@pytest.mark.parametrize(("fake", "message"), [("crash", "SIGSEGV"), ("exit", "code 3")])
def test_a_case_that_kills_the_worker_is_crashed_and_the_next_gets_a_new_one(
        fake_worker: Callable[..., CountingWorker], fake: str, message: str) -> None:
    worker = fake_worker()
    assert run_job(worker, counted_case(width=8)).status == "ok"
    dead = run_job(worker, counted_case(width=8, model_args=(("fake", fake),)))
    assert dead.status == "crashed" and message in (dead.message or "")
    assert "during build" in (dead.message or "")
    after = run_job(worker, counted_case(width=16))
    assert after.status == "ok" and after.done is not None
    assert after.done.findings.info["counting"]["cases_before"] == 0  # a fresh process
    assert worker.workers_started == 2


def test_a_hanging_case_times_out_and_the_worker_is_replaced(
        fake_worker: Callable[..., CountingWorker]) -> None:
    worker = fake_worker()
    hung = run_job(worker, counted_case(width=8, model_args=(("fake", "hang"),)), timeout_s=1.0)
    assert hung.status == "timeout" and "count_calls" in (hung.message or "")
    assert run_job(worker, counted_case(width=8)).status == "ok"
    assert worker.workers_started == 2


def test_cuda_cases_are_unsupported_without_starting_a_worker(
        fake_worker: Callable[..., CountingWorker]) -> None:
    worker = fake_worker()
    outcome = run_job(worker, counted_case(width=8, device="cuda"))
    assert outcome.status == "unsupported" and "GPU" in (outcome.message or "")
    assert worker.workers_started == 0


def test_no_valgrind_is_unsupported_with_the_fix(tmp_path: Path) -> None:
    worker = CountingWorker(valgrind=str(tmp_path / "no-valgrind"))
    outcome = run_job(worker, counted_case(width=8))
    assert outcome.status == "unsupported" and "apt-get install valgrind" in (outcome.message or "")
    assert counter_label("sse4.2", str(tmp_path / "no-valgrind")).startswith(
        "callgrind unavailable")


def test_a_worker_not_under_valgrind_is_unsupported_once(
        fake_worker: Callable[..., CountingWorker], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_UNDER_VALGRIND", "0")
    worker = fake_worker()
    for _ in range(2):
        outcome = run_job(worker, counted_case(width=8))
        assert outcome.status == "unsupported" and "not running under valgrind" in (
            outcome.message or "")
    assert worker.workers_started == 1  # the reason is remembered, not rediscovered per case


def test_a_worker_that_cannot_start_is_crashed_with_its_output(
        tmp_path: Path, fake_worker: Callable[..., CountingWorker]) -> None:
    worker = fake_worker()
    worker._module = "no_such_module_here"  # python -m fails at once
    outcome = run_job(worker, counted_case(width=8))
    assert outcome.status == "crashed" and "while starting" in (outcome.message or "")
    assert "No module named" in (outcome.traceback or "")


def test_a_worker_started_early_is_waited_for_by_its_first_case(
        tmp_path: Path, fake_worker: Callable[..., CountingWorker]) -> None:
    """`start` spawns without waiting; the first case waits for it (and is the one that
    paid the start), and a worker that died while starting is reported by that case."""
    worker = fake_worker()
    worker.start()
    worker.start()  # already starting: nothing more
    assert worker.workers_started == 1
    first = run_job(worker, counted_case(width=64))
    assert first.status == "ok" and first.done is not None
    assert first.done.findings.info["counting"]["counting_worker_fresh"] is True
    assert run_job(worker, counted_case(width=8)).status == "ok"
    assert worker.workers_started == 1
    broken = fake_worker()
    broken._module = "no_such_module_here"
    broken.start()
    outcome = run_job(broken, counted_case(width=8))
    assert outcome.status == "crashed" and "while starting" in (outcome.message or "")
    assert broken.workers_started == 1
    missing = CountingWorker(valgrind=str(tmp_path / "no-valgrind"))
    missing.start()  # no valgrind: nothing to start, and the case says why
    assert run_job(missing, counted_case(width=8)).status == "unsupported"


def test_count_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="one thread"):
        Settings(measure="instructions", threads=2)
    with pytest.raises(ValueError, match="profile"):
        Settings(measure="instructions", profile=True)
    counted = Settings(measure="instructions").for_counting()
    assert counted.threads == 1 and counted.telemetry is False and counted.counted
    assert Settings().for_counting() == Settings()


# ---- the gate on counts -------------------------------------------------------------------------
def counted(name: str, per_call: float, spread: float = 0.01, run_id: str = "run") -> Record:
    return record(name, None, run_id=run_id, metrics={
        "instructions_per_call": per_call, "instructions_per_item": per_call / 4,
        "instructions_spread_pct": spread, "params_total": 1000})


def count_rows(comparison: Any) -> dict[str, Any]:
    return {v.name: v for v in comparison.verdicts if v.metric == "instructions_per_call"}


def test_counts_gate_on_the_change_against_the_tolerance() -> None:
    base = [counted("a", 1_000_000), counted("b", 2_000_000), counted("c", 500_000),
            counted("d", 800_000, spread=3.0)]
    cand = [counted("a", 1_019_000), counted("b", 2_002_000), counted("c", 490_000),
            counted("d", 816_000, spread=3.0)]
    rows = count_rows(compare_records(base, cand))
    assert rows["a"].verdict == "regression" and rows["a"].kind == "counts"
    assert rows["a"].threshold == 0.5 and "beyond the ±0.5% tolerance" in rows["a"].note
    assert rows["b"].verdict == "same" and "samples spread 0.01% / 0.01%" in rows["b"].note
    assert rows["c"].verdict == "improvement"
    # a change within the samples' own spread is not evidence of anything
    assert rows["d"].verdict == "inconclusive" and "within the samples' own spread" in \
        rows["d"].note
    assert not any(v.metric == "median_ms" for v in compare_records(base, cand).verdicts)
    # the threshold language sets the tolerance, per metric or per kind
    wider = count_rows(compare_records(base, cand, CompareOptions.from_specs(
        "instructions_per_call=2%")))
    assert wider["a"].verdict == "same"
    assert not count_rows(compare_records(base, cand, CompareOptions.from_specs("counts=off")))


def test_counted_runs_with_another_counter_do_not_compare(tmp_path: Path) -> None:
    env = {**ENV, "threads": 1, "counter": "callgrind 3.19.0 isa=sse4.2"}
    a = write_run(tmp_path / "a", [counted("a", 1e6)], env=env)
    b = write_run(tmp_path / "b", [counted("a", 1e6)],
                  env={**env, "counter": "callgrind 3.22.0 isa=sse4.2"})
    assert env_mismatch(load_run(a).env, load_run(b).env) == {
        "counter": {"baseline": "callgrind 3.19.0 isa=sse4.2",
                    "candidate": "callgrind 3.22.0 isa=sse4.2"}}
    done = subprocess.run([sys.executable, "-m", "bench", "compare", str(a), str(b)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "counter" in done.stdout + done.stderr
    # a timed run keeps its old fingerprint (no counter key), so old baselines still match
    assert "counter" not in fingerprint(ENV)


def test_markdown_shows_counts_beside_timing(tmp_path: Path) -> None:
    env = {**ENV, "threads": 1, "counter": "callgrind 3.19.0 isa=sse4.2"}
    a = write_run(tmp_path / "a", [counted("net", 1e6)], env=env)
    b = write_run(tmp_path / "b", [counted("net", 1.03e6)], env=env)
    done = subprocess.run([sys.executable, "-m", "bench", "compare", str(a), str(b),
                           "--markdown"], capture_output=True, text=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "| **regression** | net | instructions_per_call | 1,000,000 | 1,030,000 | +3.0%" in \
        done.stdout
    report = subprocess.run([sys.executable, "-m", "bench", "report", str(a), str(b),
                             "--format", "markdown"], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert "Instruction-count verdicts: 1 regression" in report.stdout
    assert "| net | 1.03 M | 258 k | 0.0100% | 1.00 k |" in report.stdout


def test_a_process_not_under_valgrind_never_counts() -> None:
    """Inline runs and the in-process fixture cannot count: unsupported, never timed instead."""
    from bench.measure.protocol import Failed
    from bench.measure.worker import run_case

    sent: list[Any] = []
    run_case(WorkerJob(case=counted_case(width=8)), sent.append)
    assert isinstance(sent[-1], Failed) and sent[-1].status == "unsupported"
    assert "counting worker" in sent[-1].message


# ---- end to end, under real valgrind ------------------------------------------------------------
@needs_valgrind
@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_a_counted_suite_end_to_end(write_suite: Callable[..., Path], tmp_path: Path) -> None:
    """`archbench run --measure instructions`: one counting worker counts both repeats of a
    CPU case (counts present, repeatable, one thread, what counted them recorded), the CUDA
    case is unsupported, and the gate finds the run the same as itself."""
    suite = write_suite("""
        [[sweep]]
        model = ["mlp"]
        depth = [2]
        width = [256]
        batch_size = [32]
        device = ["cpu", "cuda"]
        settings = { repeats = 2, count_calls = 3, timeout_s = 900 }
        """)
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "bench", "run", str(suite), "--out", str(out),
                           "--measure", "instructions", "--no-report"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    records = load_records(out)
    cpu = [r for r in records if r.params["device"] == "cpu"]
    cuda = [r for r in records if r.params["device"] == "cuda"]
    assert [r.status for r in cpu] == ["ok", "ok"]
    assert cuda and all(r.status == "unsupported" and "GPU" in (r.reason or "") for r in cuda)
    first, second = (r.metrics["instructions_per_call"] for r in cpu)
    assert first > 1_000_000  # ~4 M with the SSE4.2 kernels
    # counted twice (fresh builds): far within the gate's default tolerance of 0.5%
    assert abs(second - first) / first < 0.001
    for r in cpu:
        counting = r.info["counting"]
        assert r.timing is None and r.metrics["threads"] == 1
        assert r.settings["threads"] == 1 and r.settings["measure"] == "instructions"
        assert counting["counter"] == "callgrind" and counting["valgrind_version"]
        assert len(counting["samples"]) == 3 and counting["calls"] == 3
        assert r.metrics["instructions_spread_pct"] < 0.1
        assert (out / counting["callgrind_out"]).is_file()  # for callgrind_annotate
    # both repeats in one worker: torch's import under valgrind was paid once
    assert [r.info["counting"]["counting_worker_fresh"] for r in cpu] == [True, False]
    assert read_run(out)["env"]["counter"].startswith("callgrind ")
    same = subprocess.run([sys.executable, "-m", "bench", "compare", str(out), str(out),
                           "--json"], capture_output=True, text=True)
    assert same.returncode == 0, same.stdout + same.stderr
    verdicts = [v for v in json.loads(same.stdout)["verdicts"]
                if v["metric"] == "instructions_per_call"]
    assert [v["verdict"] for v in verdicts] == ["same"]


def test_repeats_of_a_counted_case_pool_their_samples() -> None:
    from dataclasses import replace as dc_replace

    from bench.results.repeats import merge_repeats

    one = dc_replace(counted("a", 1000.0), info={"counting": {"per_call": [999.0, 1000.0, 1001.0]}})
    two = dc_replace(counted("a", 1004.0), repeat=1,
                     info={"counting": {"per_call": [1003.0, 1004.0, 1005.0]}})
    (merged,) = merge_repeats([one, two])
    assert merged.metrics["instructions_per_call"] == 1002.0
    assert merged.metrics["instructions_per_item"] == 250.5
    assert merged.metrics["instructions_spread_pct"] == pytest.approx(6 / 1002 * 100)
    assert len(merged.info["counting"]["per_call"]) == 6


@pytest.mark.parametrize(("stderr", "expected"), [
    ("<not supported>,,instructions,0,100.00,,", "says <not supported>"),
    ("123456,,instructions,1000,100.00,,", "available"),
    ("perf_event_open failed: Permission denied", "failed (perf_event_open failed"),
])
def test_perf_instructions_says_why_hardware_counters_cannot_count(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stderr: str, expected: str) -> None:
    fake = tmp_path / "perf"
    fake.write_text(f"#!/bin/sh\necho '{stderr}' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert expected in perf_instructions()


def test_count_result_subtracts_the_overhead_and_takes_the_median() -> None:
    from bench.measure.counting import CountResult

    result = CountResult(samples=(10_400, 10_200, 10_300), overhead=200, calls=10,
                         warmup_iters=10)
    assert result.per_call == [1020.0, 1000.0, 1010.0]
    assert result.metrics(batch_size=4) == {"instructions_per_call": 1010.0,
                                            "instructions_per_item": 252.5,
                                            "instructions_spread_pct": 20 / 1010 * 100}
    assert result.to_dict()["samples"] == [10_400, 10_200, 10_300]


@needs_valgrind
@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_ab_counts_both_sides_in_one_run(write_suite: Callable[..., Path],
                                         tmp_path: Path) -> None:
    """`archbench ab --measure instructions`: each side's counting worker counts that side's
    model once (one pair: counts do not drift), and the gate flags the heavier side."""
    for name, width in (("old", 64), ("new", 96)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.py").write_text(
            "import torch\n\n\ndef factory(case):\n"
            f"    return torch.nn.Linear({width}, {width}), lambda b: torch.randn(b, {width})\n")
    suite = write_suite("""
        [[sweep]]
        model = "model.py:factory"
        batch_size = [8]
        settings = { count_calls = 2, count_samples = 2, timeout_s = 900 }
        """)
    out = tmp_path / "ab"
    done = subprocess.run([sys.executable, "-m", "bench", "ab", str(suite), "--baseline", "old",
                           "--candidate", "new", "--measure", "instructions", "--out", str(out),
                           "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    counts = [v for v in json.loads(done.stdout)["verdicts"]
              if v["metric"] == "instructions_per_call"]
    assert [v["verdict"] for v in counts] == ["regression"]
    assert counts[0]["candidate"] > 1.5 * counts[0]["baseline"]  # 96² vs 64² weights
    ab = json.loads((out / "ab.json").read_text())
    assert list(ab["stopped"].values()) == ["counted"] and list(ab["pairs"].values()) == [1]
    for side in ("baseline", "candidate"):
        (rec,) = load_records(out / side)
        assert rec.status == "ok" and rec.info["counting"]["counter"] == "callgrind"
