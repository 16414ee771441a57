"""What the runner does with any executor (local or Ray): records stored once as they arrive,
in whatever order, with the files their cases wrote; checks before any run folder exists."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bench.engine.executor import OnFinished, OnStarted, RunContext
from bench.engine.outcome import Outcome
from bench.engine.record import make_record
from bench.engine.runner import RunOptions, RunSession, run
from bench.errors import BenchError, BenchWarning
from bench.measure.protocol import Done, Findings
from bench.results.store import read_records, read_run
from bench.suite import loader
from bench.suite.spec import Case


class ScriptedExecutor:
    """Finishes a plan in reverse order (as a cluster may), optionally sending a record
    twice and files with each record."""

    name = "scripted"
    isolation = "forkserver"

    def __init__(self, *, twice: bool = False, files: dict[str, bytes] | None = None,
                 refuse: str | None = None) -> None:
        self.twice, self.files, self.refuse = twice, files or {}, refuse
        self.closed = False

    def environment(self) -> dict[str, Any]:
        return {"hostname": "scripted", "torch_version": "fake", "default_threads": 1}

    def describe(self) -> dict[str, Any]:
        return {"executor": {"name": self.name}, "nodes": {"n1": {"hostname": "scripted"}}}

    def check(self, cases: Sequence[Case]) -> None:
        if self.refuse:
            raise BenchError(self.refuse)

    def execute(self, plan: Sequence[tuple[Case, int]], context: RunContext,
                started: OnStarted, finished: OnFinished) -> None:
        for case, repeat in plan:
            started(case, repeat)
        for case, repeat in reversed(plan):
            record = make_record(case, Outcome(status="ok", done=Done(
                {"samples_ns": [1e6, 1.1e6]}, Findings())), context.run_id, started_at="t",
                duration_s=0.1, repeat=repeat)
            finished(record, self.files)
            if self.twice:
                finished(record, {})

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def two_cases(write_suite):
    suite = loader.load(write_suite('[[sweep]]\nmodel = "mlp"\nwidth = [8, 16]\n'))
    return suite, list(suite.cases)


class Progress:
    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []

    def run_started(self, run_dir: Path, total: int, skipped: int) -> None:
        pass

    def case_started(self, index: int, total: int, case: Case) -> None:
        pass

    def case_finished(self, index: int, total: int, record: Any) -> None:
        self.lines.append((index, record.name))

    def case_decided(self, record: Any) -> None:
        pass


def test_records_in_any_order_each_stored_once_with_their_files(two_cases, tmp_path):
    suite, cases = two_cases
    executor = ScriptedExecutor(twice=True, files={"logs/x.log": b"hello"})
    progress = Progress()
    with pytest.warns(BenchWarning, match="came back twice"):
        result = run([suite], cases, RunOptions(out=tmp_path / "run"), progress,
                     executor=executor)
    stored = list(read_records(tmp_path / "run" / "results.jsonl"))
    assert [r.name for r in stored] == [c.name for c in reversed(cases)]
    assert len(result.records) == 2
    assert [i for i, _ in progress.lines] == [1, 2]  # numbered as they arrive
    assert (tmp_path / "run" / "logs" / "x.log").read_bytes() == b"hello"
    meta = read_run(tmp_path / "run")
    assert meta["executor"] == {"name": "scripted"} and meta["nodes"]["n1"]
    assert not executor.closed, "an executor handed in is its owner's to close"


def test_a_file_outside_the_run_folder_is_refused(two_cases, tmp_path):
    suite, cases = two_cases
    executor = ScriptedExecutor(files={"../escape.txt": b"x"})
    with pytest.raises(BenchError, match="outside the run folder"):
        run([suite], cases, RunOptions(out=tmp_path / "run"), executor=executor)
    assert not (tmp_path / "escape.txt").exists()


def test_a_refused_plan_makes_no_run_folder(two_cases, tmp_path):
    suite, cases = two_cases
    with pytest.raises(BenchError, match="no slot"):
        RunSession([suite], cases, RunOptions(out=tmp_path / "run"),
                   executor=ScriptedExecutor(refuse="no slot"))
    assert not (tmp_path / "run").exists()


def test_run_case_of_a_recorded_repeat_is_an_error(two_cases, tmp_path):
    suite, cases = two_cases
    session = RunSession([suite], cases, RunOptions(out=tmp_path / "run"),
                         executor=ScriptedExecutor())
    assert session.run_case(cases[0]).status == "ok"
    with pytest.warns(BenchWarning), pytest.raises(BenchError, match="already recorded"):
        session.run_case(cases[0])
    session.close()
