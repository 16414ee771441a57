"""Instruction counting: the dump reader, the count statistics, the counting worker's
lifecycle (with a fake worker, fast) and a real counted suite under callgrind (slow)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.engine.counting import CountingWorker, counter_label
from bench.engine.outcome import Outcome
from bench.measure.callgrind import CallgrindOutputError, dump_path, read_total, under_valgrind
from bench.measure.protocol import WorkerJob
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


def test_count_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="one thread"):
        Settings(measure="instructions", threads=2)
    with pytest.raises(ValueError, match="profile"):
        Settings(measure="instructions", profile=True)
    counted = Settings(measure="instructions").for_counting()
    assert counted.threads == 1 and counted.telemetry is False and counted.counted
    assert Settings().for_counting() == Settings()
