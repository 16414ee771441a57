"""Fault-injection campaign: archbench tried as a careless user and an unkind CI system would.

Counts, over every attempt, what must stay zero: tracebacks shown to the user, duplicate
records, processes left behind, finished records lost. Parts:

    suites     generated malformed suites (structured hostile values, byte damage of a
               valid suite, deep nesting): `archbench list` must exit 0 or 2 with a message,
               and an accepted suite must hold only cases the worker can use as they are
    signals    SIGKILL / SIGTERM (process and group) / SIGINT of `archbench run` in each
               phase of a case (start, build, warm-up, timed window, between cases), then
               --resume with the printed command until every case is recorded once
    races      two `archbench run` on one new --out; two --resume of one folder
    files      --out a file / under a file / read-only / on a read-only or full file system,
               a file-size limit mid-run; non-UTF-8 and wrong-typed run files read by
               report, compare and bench.load

Real processes on this machine; tiny models, short windows. Needs root for the full file
system (tmpfs) and read-only mount cases, which are skipped (and said so) otherwise.

Usage: python -m benchmarks.reliability_campaign [--suites 240] [--seed 11] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import tomli_w

ROOT = Path(__file__).resolve().parents[1]

NETS = '''
import os, time
from pathlib import Path
import torch

HERE = Path(__file__).parent

class Slow(torch.nn.Module):
    def __init__(self, depth):
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)
        self.calls = 0
        self.depth = depth

    def forward(self, x):
        self.calls += 1
        (HERE / f"calls-{self.depth}").write_text(str(self.calls))
        time.sleep(0.02)
        return self.linear(x)

def make(case):
    (HERE / f"build-{case.depth}").write_text(str(os.getpid()))
    if (HERE / "slow.flag").exists():
        time.sleep(2.0)
    return Slow(case.depth), lambda batch: torch.randn(batch, 4)
'''

SUITE = """[suite]
name = "campaign"
[settings]
warmup_iters = 20
warmup_time_s = 0.0
min_samples = 5
min_time_s = 0.0
max_time_s = 1.5
timeout_s = 60
[[sweep]]
model = "nets.py:make"
depth = [1, 2, 3]
"""


class Tally:
    """What the campaign counts; every "bad" counter must end at zero."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.failures: list[str] = []

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def bad(self, key: str, detail: str) -> None:
        self.counts[key] += 1
        self.failures.append(f"{key}: {detail[:300]}")


# ---- part 1: malformed suites ---------------------------------------------------------------
HOSTILE = [0, 1, 2, 13, 4096, 4097, 2**20 + 1, 2**31, 2**63 - 1, 2**70 - 2**70 + 10**18, -1,
           0.3, math.inf, -math.inf, math.nan, 1e300, True, "", "cuda:٣", "cuda:1\n", "cpu ",
           "[settings]", "mlp", "relu", "fp32", "none", "🙂", [], [1, "a"], {"a": 1}]
AXES = ["depth", "width", "features", "image_size", "seq_len", "classes", "batch_size",
        "activation", "device", "precision", "prune", "compile", "mode", "model_args",
        "exclude", "settings", "name", "typo"]
SETTINGS = ["warmup_iters", "min_time_s", "max_time_s", "timeout_s", "target_ci", "seed",
            "threads", "max_samples", "repeats", "rss_interval_s", "bogus"]


def generated_suites(count: int, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    valid = (ROOT / "suites" / "quickstart.toml").read_bytes()
    for i in range(count):
        kind = i % 4
        if kind in (0, 1):  # structured: a plausible suite with hostile values in places
            block: dict[str, Any] = {"model": rng.choice(["mlp", "cnn", "transformer",
                                                          "seed-cnn", "nope", "x.py:make"])}
            for axis in rng.sample(AXES, rng.randint(1, 4)):
                value = rng.choice(HOSTILE)
                if axis == "settings":
                    value = {rng.choice(SETTINGS): rng.choice(HOSTILE)}
                block[axis] = value if rng.random() < 0.5 else [value]
            doc = {"suite": {"name": rng.choice(["s", "s\n", "", "ok-name"])},
                   "sweep": [block]}
            if rng.random() < 0.3:
                doc["settings"] = {rng.choice(SETTINGS): rng.choice(HOSTILE)}
            yield "structured", tomli_w.dumps(doc).encode()
        elif kind == 2:  # byte damage of the quickstart suite
            data = bytearray(valid)
            for _ in range(rng.randint(1, 5)):
                at = rng.randrange(len(data))
                choice = rng.random()
                if choice < 0.4:
                    data[at] = rng.choice(b'[]{}="\n\\#,.:0123456789-e_ \xff\x00')
                elif choice < 0.7:
                    del data[at]
                else:
                    data.insert(at, rng.choice(b'[]{}="\n\\#,.:0123456789-e_ \xff'))
            yield "bytes", bytes(data)
        else:  # nesting, from plausible to absurd
            depth = rng.choice([3, 16, 17, 200, 600, 5000, 50_000])
            if rng.random() < 0.5:
                value = "[" * depth + "1" + "]" * depth
            else:
                value = "{a = " * depth + "1" + "}" * depth
            key = rng.choice(["depth", "model_args", "exclude", "settings"])
            text = f'[suite]\nname = "s"\n[[sweep]]\nmodel = "mlp"\n{key} = {value}\n'
            yield "nesting", text.encode()


def suites_part(tally: Tally, count: int, seed: int, work: Path) -> None:
    import torch
    from pydantic import TypeAdapter

    from bench.cli import main
    from bench.errors import SpecError
    from bench.suite import footprint
    from bench.suite.loader import load
    from bench.suite.spec import Case, Settings

    rng = random.Random(seed)
    adapter = TypeAdapter(Settings)
    path = work / "generated.toml"
    for kind, data in generated_suites(count, rng):
        path.write_bytes(data)
        tally.add(f"suites.{kind}")
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(["list", str(path)])
        except Exception as exc:  # what the campaign counts
            tally.bad("tracebacks", f"list {kind}: {type(exc).__name__}: {exc}")
            continue
        if code not in (0, 2):
            tally.bad("unexpected_exit", f"list {kind}: {code}")
        if code == 2:
            tally.add("suites.rejected")
            if not err.getvalue().startswith("error: "):
                tally.bad("unclear_errors", err.getvalue())
            continue
        tally.add("suites.accepted")
        try:
            suite = load(path)
        except SpecError as exc:
            tally.bad("inconsistent", f"list accepted, load refused: {exc}")
            continue
        for case in suite.cases:  # what the worker does first with each value
            try:
                torch.device(case.device)
                again = Case.from_dict(json.loads(json.dumps(case.to_dict(), allow_nan=False)))
                assert again.case_id == case.case_id
                assert adapter.validate_python(case.settings.to_dict()) == case.settings
                assert all(math.isfinite(v) for v in case.settings.to_dict().values()
                           if isinstance(v, float))
                size = footprint.estimate(case)
                assert size is None or size.bytes <= footprint.MAX_BYTES
            except Exception as exc:
                tally.bad("accepted_but_unusable", f"{case.name}: {type(exc).__name__}: {exc}")


# ---- processes ------------------------------------------------------------------------------
def archbench(args: list[str], cwd: Path, *, prefix: tuple[str, ...] = (),
              **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "60"}
    return subprocess.Popen([*prefix, sys.executable, "-m", "bench", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)


def finish(tally: Tally, process: subprocess.Popen[str], what: str,
           timeout: float = 300) -> tuple[int, str]:
    out, err = process.communicate(timeout=timeout)
    text = out + err
    if "Traceback" in text:
        tally.bad("tracebacks", f"{what}: {text[-600:]}")
    return process.returncode, text


def wait_for(predicate: Callable[[], bool], timeout: float = 120) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def records(run_dir: Path) -> list[str]:
    path = run_dir / "results.jsonl"
    return [line for line in path.read_text().splitlines() if line.strip()] \
        if path.exists() else []


def check_records(tally: Tally, run_dir: Path, before: list[str], what: str,
                  expected: int | None = None) -> None:
    lines = records(run_dir)
    keys = []
    for line in lines:
        try:
            data = json.loads(line)
            keys.append((data["case_id"], data["repeat"]))
        except (ValueError, KeyError, TypeError):
            tally.bad("torn_record_left", f"{what}: {line[:80]}")
    if len(keys) != len(set(keys)):
        tally.bad("duplicate_records", f"{what}: {keys}")
    missing = [x for x in before if x not in lines]
    if missing:
        tally.bad("finished_records_lost", f"{what}: {len(missing)} line(s)")
    tally.add("finished_records_checked", len(before))
    if expected is not None and len(set(keys)) != expected:
        tally.bad("incomplete_after_resume", f"{what}: {len(set(keys))} of {expected}")


def check_gone(tally: Tally, processes: list[psutil.Process], what: str,
               within: float = 10) -> None:
    _, alive = psutil.wait_procs(processes, timeout=within)
    left = [p for p in alive if _running(p)]
    tally.add("processes_watched", len(processes))
    for p in left:
        tally.bad("orphans", f"{what}: pid {p.pid}")
        with contextlib.suppress(psutil.Error):
            p.kill()


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def project(work: Path, name: str) -> Path:
    folder = work / name
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    (folder / "nets.py").write_text(NETS)
    (folder / "suite.toml").write_text(SUITE)
    return folder


def in_phase(folder: Path, run_dir: Path, phase: str) -> Callable[[], bool]:
    """Where the run is when the signal lands, told from the factory's and the module's
    markers. Past `start`, the phase is the second case's, so a finished record (the first
    case's) is on disk to be kept."""
    warmup = 20

    def calls() -> int:
        try:
            return int((folder / "calls-2").read_text() or 0)
        except (OSError, ValueError):
            return 0

    return {
        "start": lambda: (run_dir / ".archbench.lock").exists(),  # the run is starting up
        "build": lambda: (folder / "build-2").exists(),
        "warmup": lambda: 3 <= calls() < warmup - 5,
        "timed": lambda: calls() > warmup + 10,
        "between": lambda: len(records(run_dir)) >= 1 and calls() == 0,
    }[phase]


def signals_part(tally: Tally, work: Path) -> None:
    phases = ["start", "build", "warmup", "timed", "between"]
    ways = ["SIGKILL", "SIGTERM", "SIGTERM-group", "SIGINT-group"]
    for phase in phases:
        for way in ways:
            what = f"{way}@{phase}"
            folder = project(work, f"sig-{phase}-{way}")
            if phase == "build":
                (folder / "slow.flag").touch()
            run_dir = folder / "run"
            process = archbench(["run", "suite.toml", "--out", str(run_dir), "--no-report"],
                                folder)
            if not wait_for(in_phase(folder, run_dir, phase)):
                tally.bad("phase_not_reached", what)
            tree = psutil.Process(process.pid).children(recursive=True)
            before = records(run_dir)
            sig = signal.SIGKILL if way == "SIGKILL" else (
                signal.SIGTERM if way.startswith("SIGTERM") else signal.SIGINT)
            if way.endswith("group"):
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
            tally.add(f"signals.{way}")
            rc, text = finish(tally, process, what)
            tree += [p for p in _still(tree)]
            check_gone(tally, tree, what)
            check_records(tally, run_dir, before, what)
            if way != "SIGKILL":
                if rc != 128 + sig:
                    tally.bad("wrong_exit_code", f"{what}: {rc}")
                if "Continue with:" not in text and run_dir.exists() and phase != "start":
                    tally.bad("no_resume_hint", f"{what}: {text[-300:]}")
            # Resume (with the printed command when there is one) until every case is there.
            (folder / "slow.flag").unlink(missing_ok=True)
            kept = records(run_dir)
            if (run_dir / "run.json").exists():
                command = (shlex.split(text.split("Continue with:")[1].strip().splitlines()[0])
                           if "Continue with:" in text else
                           ["archbench", "run", "suite.toml", "--resume", "--out", str(run_dir)])
                rc, _ = finish(tally, archbench([*command[1:], "--no-report"]
                                                if "--no-report" not in command else command[1:],
                                                folder), f"resume after {what}")
                if rc != 0:
                    tally.bad("resume_failed", f"{what}: {rc}")
                check_records(tally, run_dir, kept, f"resume after {what}", expected=3)
            tally.add("signal_runs")


def _still(tree: list[psutil.Process]) -> list[psutil.Process]:
    """Children the tree's processes had at the end (a worker started after the snapshot)."""
    out: list[psutil.Process] = []
    for p in tree:
        with contextlib.suppress(psutil.Error):
            out += p.children(recursive=True)
    return out


def races_part(tally: Tally, work: Path, rounds: int = 3) -> None:
    for i in range(rounds):
        folder = project(work, f"race-{i}")
        run_dir = folder / "run"
        racers = [archbench(["run", "suite.toml", "--out", str(run_dir), "--no-report"], folder)
                  for _ in range(2)]
        results = [finish(tally, p, f"race {i}") for p in racers]
        codes = sorted(rc for rc, _ in results)
        tally.add("races")
        if codes != [0, 2]:
            tally.bad("race_outcome", f"race {i}: {codes}")
        loser = next((t for rc, t in results if rc == 2), "")
        if "in use by PID" not in loser and "already holds files" not in loser:
            tally.bad("unclear_errors", f"race loser said: {loser[-300:]}")
        check_records(tally, run_dir, [], f"race {i}", expected=3)
    # Two resumes of one interrupted folder.
    folder = project(work, "race-resume")
    run_dir = folder / "run"
    first = archbench(["run", "suite.toml", "--out", str(run_dir), "--no-report"], folder)
    wait_for(lambda: len(records(run_dir)) >= 1)
    first.send_signal(signal.SIGINT)
    finish(tally, first, "race-resume setup")
    kept = records(run_dir)
    racers = [archbench(["run", "suite.toml", "--resume", "--out", str(run_dir), "--no-report"],
                        folder) for _ in range(2)]
    codes = sorted(finish(tally, p, "resume race")[0] for p in racers)
    tally.add("races")
    if codes != [0, 2]:
        tally.bad("race_outcome", f"resume race: {codes}")
    check_records(tally, run_dir, kept, "resume race", expected=3)


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[bool]:
    """A small mounted file system, when this process may mount one (root)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                             capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def files_part(tally: Tally, work: Path) -> None:
    folder = project(work, "files")
    (folder / "blocker").write_text("x")
    ro = folder / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups") \
        if os.geteuid() == 0 and shutil.which("setpriv") else ()
    cases: list[tuple[str, list[str], dict[str, Any], str]] = [
        ("out is a file", ["--out", "blocker"], {}, "is a file, not a folder"),
        ("out under a file", ["--out", "blocker/run"], {}, "Not a directory"),
        ("out under a read-only folder", ["--out", "ro/run"], {"prefix": nobody},
         "Permission denied"),
        ("out is a read-only folder", ["--out", "ro"], {"prefix": nobody}, "ro"),
    ]
    for what, args, kwargs, expected in cases:
        rc, text = finish(tally, archbench(["run", "suite.toml", *args, "--no-report"], folder,
                                           **kwargs), what)
        tally.add("file_faults")
        if rc != 2 or expected not in text:
            tally.bad("file_fault_unclear", f"{what}: rc {rc}: {text[-300:]}")

    # A write failing mid-run: a file-size limit, then a full disk.
    probe = folder / "probe"
    finish(tally, archbench(["run", "suite.toml", "--out", str(probe), "--no-report"], folder),
           "probe")
    line = len(records(probe)[0]) + 1 if records(probe) else 2000
    limit = max((probe / "run.json").stat().st_size + 512, int(1.5 * line))

    def fsize() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    run_dir = folder / "fsize"
    rc, text = finish(tally, archbench(["run", "suite.toml", "--out", str(run_dir),
                                        "--no-report"], folder, preexec_fn=fsize), "fsize")
    tally.add("file_faults")
    if rc != 2 or "File too large" not in text:
        tally.bad("file_fault_unclear", f"fsize: rc {rc}: {text[-300:]}")
    check_records(tally, run_dir, [], "fsize")
    if not (run_dir / "results.jsonl").read_bytes().endswith(b"\n"):
        tally.bad("torn_record_left", "fsize")

    for what, options, expected in (("disk full", f"size={limit}", "No space left"),
                                    ("read-only file system", "size=1m,ro", "Read-only")):
        mount = work / f"mnt-{what.replace(' ', '-')}"
        with tmpfs(mount, options) as mounted:
            if not mounted:
                tally.add(f"skipped.{what}")
                continue
            rc, text = finish(tally, archbench(["run", "suite.toml", "--out",
                                                str(mount / "run"), "--no-report"], folder),
                              what)
            tally.add("file_faults")
            if rc != 2 or expected not in text:
                tally.bad("file_fault_unclear", f"{what}: rc {rc}: {text[-300:]}")
            if (mount / "run" / "results.jsonl").exists():
                check_records(tally, mount / "run", [], what)

    # Damaged run files, read by each reader.
    good = folder / "probe"
    damages: dict[str, Callable[[Path], None]] = {
        "results not UTF-8": lambda d: _append(d / "results.jsonl", b"\xff\xfe\n"),
        "run.json not UTF-8": lambda d: (d / "run.json").write_bytes(b"\xff{}"),
        "run.json null": lambda d: (d / "run.json").write_text("null"),
        "run.json a list": lambda d: (d / "run.json").write_text("[1]"),
        "run.json without env": lambda d: (d / "run.json").write_text('{"run_id": "x"}'),
        "record of the wrong type": lambda d: _append(d / "results.jsonl",
                                                      b'{"run_id": 1}\n'),
        "deeply nested record": lambda d: _append(d / "results.jsonl", b"[" * 100_000 + b"\n"),
    }
    for what, damage in damages.items():
        damaged = work / f"damaged-{what.replace(' ', '-')}"
        shutil.copytree(good, damaged)
        damage(damaged)
        for command in (["report", str(damaged), "--out", str(work / "r.html")],
                        ["compare", str(good), str(damaged)]):
            rc, text = finish(tally, archbench(command, folder), f"{command[0]} {what}")
            tally.add("decoding_faults")
            # A report needs no environment record; everything else must be refused.
            allowed = {0, 2} if (what, command[0]) == ("run.json without env", "report") else {2}
            if rc not in allowed or (rc == 2 and "error:" not in text):
                tally.bad("decoding_fault_unclear", f"{command[0]} {what}: {rc} {text[-200:]}")
        code = ("import bench, sys\ntry:\n    bench.load(sys.argv[1])\n"
                "except bench.errors.BenchError as e:\n    print('error:', e)\n")
        result = subprocess.run([sys.executable, "-c", code, str(damaged)], capture_output=True,
                                text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        tally.add("decoding_faults")
        if "Traceback" in result.stderr:
            tally.bad("tracebacks", f"bench.load {what}: {result.stderr[-300:]}")


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", type=int, default=240)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--parts", nargs="+", default=["suites", "signals", "races", "files"])
    parser.add_argument("--json", type=Path, help="write the counts here")
    args = parser.parse_args()
    tally = Tally()
    work = Path(tempfile.mkdtemp(prefix="archbench-campaign-"))
    work.chmod(0o755)
    started = time.monotonic()
    try:
        if "suites" in args.parts:
            suites_part(tally, args.suites, args.seed, work)
        if "signals" in args.parts:
            signals_part(tally, work)
        if "races" in args.parts:
            races_part(tally, work)
        if "files" in args.parts:
            files_part(tally, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {"seconds": round(time.monotonic() - started), "counts": dict(sorted(
        tally.counts.items())), "failures": tally.failures}
    for key in ("tracebacks", "duplicate_records", "orphans", "finished_records_lost"):
        summary["counts"].setdefault(key, 0)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    sys.exit(1 if tally.failures else 0)


if __name__ == "__main__":
    main()
