"""The runner's logic without processes: plans, repeats, resume, failure records, Ctrl-C.

A scripted `FakeBackend` stands in for the worker: it answers each job with the messages a
worker would send (or fails the way a worker can), so these tests are fast and exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bench.engine.outcome import OnMessage, OnStart, Outcome, outcome_from
from bench.engine.runner import RunInterrupted, RunOptions, RunSession, run
from bench.measure.protocol import Done, Failed, Findings, Message, Phase, WorkerJob
from bench.results import load, load_records, read_run
from bench.suite import loader


class FakeBackend:
    """Answers jobs from a script: case name -> "ok" | a failure status | an exception."""

    name = "fake"

    def __init__(self, script: dict[str, Any] | None = None) -> None:
        self.script = script or {}
        self.jobs: list[WorkerJob] = []
        self.closed = False

    def run(self, job: WorkerJob, timeout_s: float, on_message: OnMessage,
            on_start: OnStart | None = None) -> Outcome:
        self.jobs.append(job)
        if on_start is not None:
            on_start(12345)
        answer = self.script.get(job.case.name, "ok")
        if isinstance(answer, BaseException):
            raise answer
        messages: list[Message] = [Phase("build", 1.0), Phase("timed", 2.0)]
        if answer == "ok":
            samples = [1_000_000.0 + 1000 * (job.repeat + i) for i in range(10)]
            messages.append(Done(timing={"samples_ns": samples, "block_size": 1},
                                 findings=Findings(metrics={"params_total": 42})))
        elif answer == "timeout":
            outcome = outcome_from(messages)
            outcome.status, outcome.message = "timeout", "no result within the timeout"
            return outcome
        else:
            messages.append(Failed(answer, f"{answer} on purpose", "Traceback: ..."))
        for message in messages:
            on_message(message)
        outcome = outcome_from(messages)
        outcome.pid, outcome.exitcode = 12345, 0
        return outcome

    def call(self, fn: Callable[[], Any], timeout_s: float = 120.0) -> Any:
        return {"torch_version": "fake", "default_threads": 1}

    def close(self) -> None:
        self.closed = True


def suite_of(write_suite, body: str):
    suite = loader.load(write_suite(body))
    return suite, list(suite.cases)


def test_plan_visits_cases_round_robin_and_shuffles_later_rounds(write_suite, tmp_path):
    suite, cases = suite_of(write_suite, """
        [[sweep]]
        model = "mlp"
        width = [8, 16, 32, 64]
        settings = { repeats = 3 }
    """)
    backend = FakeBackend()
    result = run([suite], cases, RunOptions(out=tmp_path / "run"), backend=backend)
    order = [(job.case.name, job.repeat) for job in backend.jobs]
    assert [r for _, r in order] == [0] * 4 + [1] * 4 + [2] * 4
    assert [n for n, _ in order[:4]] == [c.name for c in cases]  # first round: suite order
    assert all(sorted(n for n, r in order if r == k) == sorted(c.name for c in cases)
               for k in (1, 2))
    assert len(result.records) == 12 and backend.closed
    frame = load(tmp_path / "run")
    assert list(frame["repeats"]) == [3, 3, 3, 3]  # pooled into one row per case


def test_a_resumed_run_plans_the_same_order_and_skips_what_is_recorded(write_suite, tmp_path):
    suite, cases = suite_of(write_suite, """
        [[sweep]]
        model = "mlp"
        width = [8, 16, 32]
        settings = { repeats = 2 }
    """)
    out = tmp_path / "run"
    calls = {"n": 0}

    class Interrupting(FakeBackend):
        def run(self, job, timeout_s, on_message, on_start=None):
            calls["n"] += 1
            if calls["n"] == 5:  # second round, second job
                self.jobs.append(job)
                raise KeyboardInterrupt
            return super().run(job, timeout_s, on_message, on_start)

    first = Interrupting()
    with pytest.raises(RunInterrupted, match="--resume --out"):
        run([suite], cases, RunOptions(out=out), backend=first)
    assert read_run(out)["status"] == "interrupted"
    done = {(r.case_id, r.repeat) for r in load_records(out)}
    assert len(done) == 4
    second = FakeBackend()
    result = run([suite], cases, RunOptions(out=out, resume=True), backend=second)
    planned = [(j.case.case_id, j.repeat) for j in second.jobs]
    assert result.skipped == 4 and len(planned) == 2
    assert not done & set(planned)
    first_order = [(j.case.case_id, j.repeat) for j in first.jobs]
    assert planned[0] == first_order[4]  # the job that was interrupted runs first
    records = load_records(out)
    assert sorted((r.case_id, r.repeat) for r in records) == sorted(
        (c.case_id, k) for c in cases for k in range(2))
    assert read_run(out)["status"] == "complete"


def test_every_failure_becomes_a_record_and_the_sweep_goes_on(write_suite, tmp_path):
    suite, cases = suite_of(write_suite, """
        [[sweep]]
        model = "mlp"
        width = [8, 16, 32, 64, 128]
    """)
    names = [c.name for c in cases]
    script = {names[0]: "failed", names[1]: "oom", names[2]: "timeout", names[3]: "unsupported"}
    result = run([suite], cases, RunOptions(out=tmp_path / "run"), backend=FakeBackend(script))
    statuses = {r.name: r.status for r in result.records}
    assert statuses == {names[0]: "failed", names[1]: "oom", names[2]: "timeout",
                        names[3]: "unsupported", names[4]: "ok"}
    failed = next(r for r in result.records if r.status == "failed")
    assert failed.reason == "failed on purpose" and failed.traceback == "Traceback: ..."
    ok = next(r for r in result.records if r.status == "ok")
    assert ok.metrics["params_total"] == 42 and ok.info["phases"] == [["build", 1.0],
                                                                       ["timed", 2.0]]
    assert len(load_records(tmp_path / "run")) == 5


def test_a_backend_error_marks_the_run_failed_and_keeps_finished_records(write_suite,
                                                                           tmp_path):
    suite, cases = suite_of(write_suite, """
        [[sweep]]
        model = "mlp"
        width = [8, 16, 32]
    """)
    backend = FakeBackend({cases[2].name: RuntimeError("the backend broke")})
    with pytest.raises(RuntimeError, match="backend broke"):
        run([suite], cases, RunOptions(out=tmp_path / "run"), backend=backend)
    assert read_run(tmp_path / "run")["status"] == "failed"
    assert [r.name for r in load_records(tmp_path / "run")] == [c.name for c in cases[:2]]
    assert backend.closed


def test_session_records_carry_the_run_and_worker(write_suite, tmp_path):
    suite, cases = suite_of(write_suite, '[[sweep]]\nmodel = "mlp"\nwidth = [8]\n')
    session = RunSession([suite], cases, RunOptions(out=tmp_path / "run"), FakeBackend())
    record = session.run_case(cases[0])
    session.close()
    assert record.run_id == session.run_id == "run"
    assert record.info["worker_pid"] == 12345 and record.info["worker_exitcode"] == 0
    meta = read_run(tmp_path / "run")
    assert meta["isolation"] == "fake" and meta["env"]["torch_version"] == "fake"
    assert meta["status"] == "complete"
