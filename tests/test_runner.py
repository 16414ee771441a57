"""Running suites end to end: isolation, every failure kind, resume, Ctrl-C, inline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import bench
from bench.engine.runner import RunOptions, run
from bench.errors import BenchError
from bench.results import load_records, read_run
from bench.suite import loader as suite_file

pytestmark = pytest.mark.slow


def run_suite(path, out, **options):
    suite = suite_file.load(path)
    return run([suite], list(suite.cases), RunOptions(out=out, **options))


def test_tiny_cpu_suite_end_to_end(write_suite, tmp_path):
    path = write_suite("""
        [[sweep]]
        model = ["mlp"]
        depth = [1, 2]
        width = [16]
        batch_size = [4]
        [[sweep]]
        model = ["cnn"]
        depth = [2]
        width = [4]
        image_size = [8]
        [[sweep]]
        model = ["transformer"]
        depth = [1]
        width = [32]
        seq_len = [8]
        [[sweep]]
        model = ["seed-cnn", "text-classifier"]
        [[sweep]]
        model = "mlp"
        width = [16]
        device = ["cuda"]
    """)
    result = run_suite(path, tmp_path / "run")
    statuses = {r.name: r.status for r in result.records}
    assert len(statuses) == 7
    assert statuses.pop("mlp-d2-w16-relu-b1-fp32-cuda") == "unsupported"
    assert set(statuses.values()) == {"ok"}, statuses

    meta = read_run(tmp_path / "run")
    assert meta["status"] == "complete" and meta["cases_total"] == 7
    environment = meta["env"]
    for key in ("python", "torch_version", "cpu_model", "cpu_count_logical", "threads",
                "hostname", "git_commit", "memory_total_bytes"):
        assert key in environment, key
    assert environment["torch_version"].startswith("2.")
    assert meta["suites"][0]["content_sha256"] == suite_file.load(path).content_sha256

    frame = bench.load(tmp_path / "run")
    ok = frame[frame.status == "ok"]
    assert (ok.n_samples >= 5).all() and (ok.median_ms > 0).all()
    assert (ok.threads >= 1).all() and ok.first_call_ms.notna().all()
    unsupported = frame[frame.status == "unsupported"].iloc[0]
    assert "CUDA" in unsupported.reason
    # each case ran in a worker of its own
    pids = [r.info["worker_pid"] for r in result.records]
    assert len(set(pids)) == len(pids) and os.getpid() not in pids
    # every worker fixed its allocator before building (see bench.measure.allocator)
    if os.confstr("CS_GNU_LIBC_VERSION"):
        assert all(r.info["allocator"]["pinned"] for r in result.records if r.status == "ok")


def test_every_failure_kind_becomes_a_record_and_the_sweep_goes_on(write_suite, tmp_path,
                                                                    fixtures_dir):
    factories = fixtures_dir / "factories.py"
    blocks = "".join(f'[[sweep]]\nmodel = "{factories}:{name}"\n'
                     for name in ("tiny", "raises", "memory_error", "huge_allocation", "aborts",
                                  "segfaults", "wrong_return"))
    blocks += f'[[sweep]]\nmodel = "{factories}:hangs"\nsettings = {{ timeout_s = 3.0 }}\n'
    blocks += '[[sweep]]\nmodel = "mlp"\nwidth = [8]\n'
    result = run_suite(write_suite(blocks), tmp_path / "run")
    by_name = {r.name.split("-")[0]: r for r in result.records}
    assert {k: r.status for k, r in by_name.items()} == {
        "tiny": "ok", "raises": "failed", "memory_error": "oom", "huge_allocation": "oom",
        "aborts": "crashed", "segfaults": "crashed", "wrong_return": "failed",
        "hangs": "timeout", "mlp": "ok"}

    raised = by_name["raises"]
    assert raised.reason == "ValueError: width must be even, got 7"
    assert "factories.py" in raised.traceback and "def raises" not in raised.reason
    assert "SIGABRT" in by_name["aborts"].reason
    assert "SIGSEGV" in by_name["segfaults"].reason
    assert "Fatal Python error" in (by_name["segfaults"].traceback or ""), \
        "faulthandler's dump from the worker's log is kept"
    assert "timeout" in by_name["hangs"].reason and "timeout_s" in by_name["hangs"].reason
    # the first forward (the fp32 reference output) is made while preparing the model
    assert "(last phase: build)" in by_name["hangs"].reason
    assert "must return" in by_name["wrong_return"].reason
    # every record reached the disk
    assert len(load_records(tmp_path / "run")) == 9
    # and no worker was left behind
    pids = [r.info.get("worker_pid") for r in result.records if r.info.get("worker_pid")]
    assert not [p for p in pids if psutil.pid_exists(p) and
                psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def test_resume_skips_finished_cases(write_suite, tmp_path):
    path = write_suite('[[sweep]]\nmodel = "mlp"\nwidth = [8, 16, 32]\n')
    suite = suite_file.load(path)
    out = tmp_path / "run"
    first = run([suite], list(suite.cases[:1]), RunOptions(out=out))
    assert len(first.records) == 1
    with pytest.raises(BenchError, match="--resume"):
        run([suite], list(suite.cases), RunOptions(out=out))
    second = run([suite], list(suite.cases), RunOptions(out=out, resume=True))
    assert second.skipped == 1 and len(second.records) == 2
    ids = [r.case_id for r in load_records(out)]
    assert sorted(ids) == sorted(c.case_id for c in suite.cases)
    meta = read_run(out)
    assert meta["status"] == "complete" and len(meta["resumed_at"]) == 1
    assert meta["run_id"] == first.records[0].run_id


def test_inline_isolation_runs_in_this_process(write_suite, tmp_path):
    result = run_suite(write_suite('[[sweep]]\nmodel = "mlp"\nwidth = [8]\n'),
                       tmp_path / "run", isolation="inline")
    (record,) = result.records
    assert record.status == "ok" and "worker_pid" not in record.info
    assert record.info["allocator"]["pinned"] is False, "the caller's allocator is left alone"


def test_ctrl_c_keeps_finished_cases_and_resume_finishes(write_suite, tmp_path, fixtures_dir):
    path = write_suite(f"""
        [[sweep]]
        model = "mlp"
        width = [8]
        [[sweep]]
        model = "{fixtures_dir}/factories.py:slow"
        settings = {{ min_samples = 20, max_time_s = 30.0 }}
    """)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", str(path), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if results.exists() and results.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    time.sleep(0.5)  # the slow case is now running in its worker
    descendants = psutil.Process(proc.pid).children(recursive=True)
    assert len(descendants) >= 2, "a forkserver and the case's worker"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, output
    assert "--resume" in output and "Traceback" not in output
    assert read_run(out)["status"] == "interrupted"
    assert [r.name for r in load_records(out)] == ["mlp-d2-w8-relu-b1-fp32-cpu"]
    # nothing the run started outlives it: not the worker, not the forkserver
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert not alive, [(p.pid, _cmdline(p)) for p in alive]

    done = subprocess.run([sys.executable, "-m", "bench", "run", str(path), "--out", str(out),
                           "--resume", "--set", "min_samples=5"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 of 2 case(s) already recorded" in done.stdout
    assert len(load_records(out)) == 2 and read_run(out)["status"] == "complete"


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def test_run_json_is_valid_while_running(write_suite, tmp_path):
    """run.json is written atomically at start, so a crash of the parent leaves it readable."""
    path = write_suite('[[sweep]]\nmodel = "mlp"\nwidth = [8]\n')
    run_suite(path, tmp_path / "run")
    json.loads(Path(tmp_path / "run" / "run.json").read_text())
    assert not list((tmp_path / "run").glob("*.tmp"))


@pytest.mark.cuda
def test_cuda_case_through_the_forkserver(write_suite, tmp_path):
    """The forkserver (which preloads torch and dynamo) must not have touched CUDA, or its
    workers could not use it."""
    path = write_suite('[[sweep]]\nmodel = "mlp"\nwidth = [64]\ndevice = ["cuda"]\n'
                       'precision = ["fp32", "bf16"]\n')
    result = run_suite(path, tmp_path / "run")
    assert [r.status for r in result.records] == ["ok", "ok"], [r.reason for r in result.records]
    assert all(r.timing["clock"] == "cuda_event" for r in result.records)
