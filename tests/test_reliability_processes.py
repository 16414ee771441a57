"""Signals, races and file-system faults, with real `archbench` processes.

Every test starts `python -m bench run ...` as a user or a CI runner would and hurts it:
SIGKILL of the parent, SIGSTOP (so nothing enforces the timeout but the worker itself),
SIGTERM to the process or its whole group, two runs on one folder, a file-size limit, a
read-only folder. Afterwards no process of that run may remain, no case may be recorded
twice, every finished record must still be there, and no message may be a traceback.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import FAST_SETTINGS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

#: A factory that, for `depth = 99` and while `hang.flag` exists next to it, leaves its pid in
#: `hang-PID.pid` and hangs ignoring SIGTERM; crashes with SIGSEGV for `depth = 13`; and
#: otherwise builds a tiny model.
NETS = '''
import ctypes, os, signal, time
from pathlib import Path
import torch

HERE = Path(__file__).parent

def make(case):
    if case.depth == 13:
        ctypes.string_at(0)
    if (HERE / "hang.flag").exists() and case.depth == 99:
        (HERE / f"hang-{os.getpid()}.pid").write_text(str(os.getpid()))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(0.05)
    return torch.nn.Linear(4, 2), lambda batch: torch.randn(batch, 4)
'''

SUITE = ('[suite]\nname = "rel"\n'
         + FAST_SETTINGS.replace("timeout_s = 60", "timeout_s = {timeout}")
         + '[[sweep]]\nmodel = "nets.py:make"\ndepth = {depths}\n')


@pytest.fixture
def project() -> Iterator[Path]:
    """A folder every user can read (the read-only test runs as an unprivileged user)."""
    folder = Path(tempfile.mkdtemp(prefix="archbench-rel-"))
    folder.chmod(0o755)
    (folder / "nets.py").write_text(NETS)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_suite(project: Path, depths: list[int], timeout: float = 60) -> Path:
    path = project / "suite.toml"
    path.write_text(SUITE.format(depths=depths, timeout=timeout))
    return path


def archbench(*args: str, cwd: Path, prefix: tuple[str, ...] = (), **kwargs) -> subprocess.Popen:
    """`archbench ARGS` on a 60-column terminal (so wrapping would show)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "60"}
    return subprocess.Popen([*prefix, sys.executable, "-m", "bench", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def finish(process: subprocess.Popen, timeout: float = 180) -> tuple[int, str]:
    out, err = process.communicate(timeout=timeout)
    text = out + err
    assert "Traceback" not in text, text
    return process.returncode, text


def wait_for(predicate, timeout: float = 120, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def hanging_worker(project: Path) -> int:
    """The pid of the worker stuck in the hanging case, once it is there."""
    found: list[int] = []

    def there() -> bool:
        found[:] = [int(p.stem.split("-")[1]) for p in project.glob("hang-*.pid")
                    if _running_pid(int(p.stem.split("-")[1]))]
        return bool(found)

    wait_for(there, what="the hanging worker")
    return found[0]


def _running_pid(pid: int) -> bool:
    try:
        return _running(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def assert_all_gone(processes: list[psutil.Process], within: float) -> None:
    _, alive = psutil.wait_procs(processes, timeout=within)
    alive = [p for p in alive if _running(p)]
    assert not alive, f"left behind: {[(p.pid, p.cmdline()[-1][:60]) for p in alive]}"


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def assert_each_case_once(run_dir: Path) -> list[dict]:
    found = records(run_dir)
    keys = [(r["case_id"], r["repeat"]) for r in found]
    assert len(keys) == len(set(keys)), f"duplicate records: {keys}"
    return found


def test_sigkill_of_archbench_takes_its_workers_down_and_the_folder_resumes(project):
    suite = write_suite(project, [2, 99])
    (project / "hang.flag").touch()
    run_dir = project / "run"
    process = archbench("run", str(suite), "--out", str(run_dir), "--no-report", cwd=project)
    worker = hanging_worker(project)
    tree = descendants(process.pid)
    assert any(p.pid == worker for p in tree)
    assert len(tree) >= 3  # forkserver, resource tracker, worker
    process.kill()
    process.wait()
    assert_all_gone(tree, within=10)  # not the 60 s case timeout: with the parent

    # The lock the dead run held is not stale: a resume takes the folder over.
    (project / "hang.flag").unlink()
    rc, text = finish(archbench("run", str(suite), "--resume", "--out", str(run_dir),
                                "--no-report", cwd=project))
    assert rc == 0, text
    assert [r["params"]["depth"] for r in assert_each_case_once(run_dir)] == [2, 99]


def test_the_case_timeout_holds_when_the_parent_cannot_enforce_it(project):
    suite = write_suite(project, [99], timeout=2)
    (project / "hang.flag").touch()
    run_dir = project / "run"
    process = archbench("run", str(suite), "--out", str(run_dir), "--no-report", cwd=project)
    worker = psutil.Process(hanging_worker(project))
    process.send_signal(signal.SIGSTOP)  # stopped: alive, but enforcing nothing
    try:
        started = time.monotonic()
        assert_all_gone([worker], within=2 + 5 + 5)  # timeout + watchdog grace + slack
        waited = time.monotonic() - started
    finally:
        process.send_signal(signal.SIGCONT)
    rc, text = finish(process)
    assert rc == 1, text
    (record,) = assert_each_case_once(run_dir)
    assert record["status"] == "timeout"
    assert waited <= 12


@pytest.mark.parametrize("target", ["process", "group"])
def test_sigterm_stops_a_run_like_ctrl_c_and_the_printed_command_resumes_it(project, target):
    suite = write_suite(project, [2, 13, 99])
    (project / "hang.flag").touch()
    run_dir = project / "run with space"
    process = archbench("run", str(suite), "--out", str(run_dir), "--no-report", cwd=project,
                        start_new_session=True)
    hanging_worker(project)
    wait_for(lambda: len(records(run_dir)) == 2, what="the first two records")
    tree = descendants(process.pid)
    if target == "group":  # what `timeout` and most CI runners do
        os.killpg(process.pid, signal.SIGTERM)
    else:
        process.send_signal(signal.SIGTERM)
    rc, text = finish(process)
    assert rc == 128 + signal.SIGTERM, text
    assert "interrupted by SIGTERM after 2 of 3 cases" in text
    assert_all_gone(tree, within=10)
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "interrupted"
    done = assert_each_case_once(run_dir)
    assert [r["status"] for r in done] == ["ok", "crashed"]
    # The crash record keeps the frames that crashed, not faulthandler's module list.
    trace = done[1]["traceback"]
    assert "Segmentation fault" in trace and "Current thread" in trace
    assert 'nets.py", line 10 in make' in trace and "Extension modules" not in trace

    # The message ends with the command, whole on one line, ready to paste.
    command = text.split("Continue with:")[1].strip().splitlines()[0]
    args = shlex.split(command)
    assert args[:2] == ["archbench", "run"] and args[-3:] == ["--resume", "--out", str(run_dir)]
    (project / "hang.flag").unlink()
    rc, text = finish(archbench(*args[1:], cwd=project))
    assert rc == 0, text  # the exit code speaks for the cases this command ran
    assert [r["params"]["depth"] for r in assert_each_case_once(run_dir)] == [2, 13, 99]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"


def test_two_runs_racing_for_one_folder_measure_each_case_once(project):
    suite = write_suite(project, [2, 3])
    run_dir = project / "run"
    racers = [archbench("run", str(suite), "--out", str(run_dir), "--no-report", cwd=project)
              for _ in range(2)]
    results = [finish(p) for p in racers]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    loser = next(text for rc, text in results if rc == 2)
    assert ("is in use by PID" in loser and " on " in loser) or "already holds files" in loser
    assert len(assert_each_case_once(run_dir)) == 2

    # Two resumes of one folder: while one holds it (hanging), the other is refused.
    (project / "hang.flag").touch()
    suite = write_suite(project, [2, 3, 99])
    first = archbench("run", str(suite), "--resume", "--out", str(run_dir), "--no-report",
                      cwd=project)
    hanging_worker(project)
    rc, text = finish(archbench("run", str(suite), "--resume", "--out", str(run_dir),
                                "--no-report", cwd=project))
    assert rc == 2 and f"in use by PID {first.pid} on " in text, text
    first.send_signal(signal.SIGINT)
    rc, text = finish(first)
    assert rc == 130, text
    assert len(assert_each_case_once(run_dir)) == 2


def _limit_file_size(size: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return apply


def test_a_write_failing_mid_run_is_a_clear_error_and_keeps_finished_records(project):
    suite = write_suite(project, [2, 3, 4, 5, 6, 7])
    probe = project / "probe"
    rc, text = finish(archbench("run", str(suite), "--out", str(probe), "--no-report",
                                cwd=project))
    assert rc == 0, text
    line = len((probe / "results.jsonl").read_text().splitlines()[0]) + 1
    meta = (probe / "run.json").stat().st_size
    limit = max(meta + 512, int(2.5 * line))  # room for run.json and two records
    run_dir = project / "run"
    rc, text = finish(archbench("run", str(suite), "--out", str(run_dir), "--no-report",
                                cwd=project, preexec_fn=_limit_file_size(limit)))
    assert rc == 2, text
    assert "results.jsonl: File too large" in text
    kept = assert_each_case_once(run_dir)
    assert 1 <= len(kept) < 6
    assert (run_dir / "results.jsonl").read_bytes().endswith(b"\n")  # no half record
    assert json.loads((run_dir / "run.json").read_text())["status"] in ("failed", "running")


def _mount_read_only(folder: Path) -> bool:
    """A read-only tmpfs over `folder` (root in a container may not mount: False)."""
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                          capture_output=True)
    return done.returncode == 0


def _unprivileged_prefix() -> tuple[str, ...]:
    """setpriv to user nobody, when nobody can run archbench from this checkout."""
    prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without mount or setpriv to make a folder unwritable")
    probe = subprocess.run([*prefix, sys.executable, "-c", "import bench"],
                           capture_output=True, text=True, cwd="/",
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    if probe.returncode != 0:
        pytest.skip("running as root, no mount allowed, and user nobody cannot read this "
                    f"checkout or its Python: {probe.stderr.strip()[-200:]}")
    return prefix


@pytest.mark.parametrize("where", ["file", "under-file", "read-only"])
def test_an_unusable_out_folder_is_a_clear_error(project, where, request):
    suite = write_suite(project, [2])
    blocker = project / "blocker"
    kwargs: dict = {}
    if where == "file":
        blocker.write_text("x")
        out, expected = blocker, "is a file, not a folder"
    elif where == "under-file":
        blocker.write_text("x")
        out, expected = blocker / "run", "Not a directory"
    else:
        blocker.mkdir()
        blocker.chmod(0o555)
        out, expected = blocker / "run", "Permission denied"
        if os.geteuid() == 0:  # root writes anywhere: a read-only mount, else run as nobody
            if _mount_read_only(blocker):
                request.addfinalizer(lambda: subprocess.run(["umount", str(blocker)]))
                expected = "Read-only file system"
            else:
                kwargs["prefix"] = _unprivileged_prefix()
    rc, text = finish(archbench("run", str(suite), "--out", str(out), "--no-report",
                                cwd=project, **kwargs))
    assert rc == 2, text
    assert expected in text and str(out if where != "file" else blocker) in text
