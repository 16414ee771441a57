"""Every CUDA claim archbench makes, checked on the GPU this runs on, in one command.

    python -m benchmarks.gpu_check [--out DIR] [--budget-s 420]
    python -m benchmarks.gpu_check --dry-run          # no GPU needed: checks the plumbing
    python -m benchmarks.gpu_check --skip ray ...     # leave a step out

One row per claim, each `pass`, `fail`, `n/a` (with why) or `not run` (the time budget ran out),
with the measured figure:

- device: what the GPU really supports, tried directly (`benchmarks.gpu_truth`);
- the `cuda`-marked tests (pytest `-m cuda` over the test files that use the marker);
- `archbench calibrate` on the GPU, then suites/gpu.toml with benchmarks/gpu_check.toml in one
  run: the bf16 large MLP's roofline fraction (goal >= 0.6), NVML samples present and
  plausible, energy by the counter, device memory (NVML) against torch's allocator peaks, the
  profiler's trace, each precision's verdict against the device, 2:4 sparsity against dense,
  `compile = reduce-overhead` against eager;
- the quickstart on CPU and CUDA (the GPU-vs-CPU speed-up), then its CUDA cases again and
  `archbench compare` between the two runs: an A/A, where any regression or improvement is a
  false alarm;
- a Ray sweep (`--executor ray`): each GPU case holds the GPU (num_gpus=1).

Every step runs archbench's own command line in a subprocess, under a deadline (`--budget-s`):
a step that would start past it is reported `not run`, a step that overruns is stopped and the
others still report. Exit code: 0 when no row fails, 1 when one does, 2 on bad usage (no GPU
without --dry-run).

Written under --out (default $OUT when set, else benchmarks/out/gpu-check): gpu_check.md (the
table), gpu_check.json (rows, the device's answers, each command and its time),
gpu_check.log (every command's output) and gpu_check_runs.tar.gz (the run folders,
calibration and test report: the raw results).

--dry-run runs the same steps on a machine without a GPU with short measuring windows: every
CUDA row is `n/a: no GPU` once the records say why, and the plumbing (tests selected, suites
expanded and run, calibration refused, compare and Ray driven, files written, table printed)
is exercised. tests/test_gpu_check.py runs it in CI (without the Ray step, which alone takes
15-23 s on two loaded cores; the Ray executor has tests of its own).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.results.store import load_records
from benchmarks.gpu_claims import (
    Device,
    Row,
    Run,
    aa_row,
    claim_rows,
    device_row,
    error_row,
    first_line,
    junit_rows,
    ray_row,
    speedup_row,
)

ROOT = Path(__file__).resolve().parent.parent
CLAIMS_SUITE = Path("benchmarks") / "gpu_check.toml"
GPU_SUITE = Path("suites") / "gpu.toml"
QUICKSTART = Path("suites") / "quickstart.toml"
DEFAULT_OUT = Path("benchmarks") / "out" / "gpu-check"
DEFAULT_BUDGET_S = 420.0
#: What travels back from the device tool: at most this many bytes a file (16 MiB, less room).
FILE_LIMIT_BYTES = 15 * 2**20
#: Settings that make every measured case short: the dry run checks plumbing, not numbers.
DRY_SETTINGS = ("--set", "warmup_iters=1", "--set", "warmup_time_s=0", "--set", "min_samples=5",
                "--set", "min_time_s=0", "--max-time", "0.05")


@dataclass
class Outcome:
    """One command: its exit code (None when it was stopped at its deadline) and output."""

    label: str
    command: list[str]
    rc: int | None
    seconds: float
    stdout: str
    stderr: str

    @property
    def tail(self) -> str:
        lines = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return lines[-1] if lines else ""

    def summary(self) -> dict[str, Any]:
        return {"label": self.label, "command": self.command, "rc": self.rc,
                "seconds": round(self.seconds, 2)}


@dataclass
class Check:
    """Where the check works, how long it may take, what the device answered, what ran."""

    work: Path
    dry_run: bool
    deadline: float
    log: Any
    device: Device = field(default_factory=Device)
    outcomes: list[Outcome] = field(default_factory=list)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def settings(self) -> tuple[str, ...]:
        return DRY_SETTINGS if self.dry_run else ()

    def env(self) -> dict[str, str]:
        """The repository first on the import path (workers and Ray's too), carried packages
        after it; archbench's calibration cache inside the work folder."""
        env = dict(os.environ)
        path = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env.update(PYTHONPATH=os.pathsep.join(dict.fromkeys(path)), PYTHONUNBUFFERED="1",
                   ARCHBENCH_CACHE_DIR=str(self.work / "cache"))
        return env

    def command(self, label: str, args: Sequence[str], timeout_s: float) -> Outcome:
        """Run one command from the repository root, stopped (SIGTERM, then SIGKILL) at the
        sooner of its own limit and the check's deadline; its output goes to the log."""
        limit = max(1.0, min(timeout_s, self.remaining()))
        began = time.monotonic()
        proc = subprocess.Popen(list(args), cwd=ROOT, env=self.env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        rc: int | None
        try:
            stdout, stderr = proc.communicate(timeout=limit)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            stdout, stderr = _stop(proc)
            rc = None
            stderr += f"\n[stopped after {limit:.0f} s: the step's limit or the check's deadline]"
        outcome = Outcome(label, list(args), rc, time.monotonic() - began, stdout, stderr)
        self.outcomes.append(outcome)
        self.log.write(f"\n===== {label}: {' '.join(args)}\n----- rc {rc}, "
                       f"{outcome.seconds:.1f} s\n{stdout}\n----- stderr\n{stderr}\n")
        self.log.flush()
        return outcome

    def archbench(self, label: str, args: Sequence[str], timeout_s: float) -> Outcome:
        return self.command(label, [sys.executable, "-m", "bench", *args], timeout_s)

    def run(self, label: str, folder: str, args: Sequence[str], timeout_s: float
            ) -> tuple[Outcome, Run | Row]:
        """`archbench run ARGS --out WORK/FOLDER --no-report`, then its records; a run folder
        that cannot be read is a failed row instead."""
        path = self.work / folder
        outcome = self.archbench(label, ["run", *args, "--out", str(path), "--no-report",
                                         *self.settings()], timeout_s)
        try:
            return outcome, Run(path, tuple(load_records(path)))
        except Exception as exc:
            return outcome, Row(label, "fail", f"rc {outcome.rc}",
                                f"{first_line(str(exc))}; {outcome.tail}")


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM to the command's process group (archbench saves finished cases on it), then
    SIGKILL if it has not ended within 15 s."""
    for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            return proc.communicate(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    return "", ""


# ---- steps -------------------------------------------------------------------------------------
def device_step(check: Check) -> list[Row]:
    outcome = check.command("device", [sys.executable, "-m", "benchmarks.gpu_truth"], 120)
    try:
        check.device = Device(json.loads(outcome.stdout))
    except ValueError:
        check.device = Device({"cuda": False, "why": f"the device probe failed: {outcome.tail}"})
        return [Row("device: what the GPU really supports", "fail", f"rc {outcome.rc}",
                    outcome.tail)]
    return [device_row(check.device)]


def cuda_test_files() -> list[str]:
    """The test files that use the `cuda` marker: collecting only these keeps the step fast
    and free of the other tests' dev dependencies (tests/test_gpu_check.py checks that no
    cuda-marked test pytest collects lives outside them)."""
    marker = re.compile(r"mark\.cuda\b")
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if marker.search(p.read_text(encoding="utf-8")))


def tests_step(check: Check) -> list[Row]:
    report = check.work / "cuda_tests.xml"
    outcome = check.command("tests", [sys.executable, "-m", "pytest", "-m", "cuda", "-q",
                                      "-p", "no:cacheprovider", f"--junitxml={report}",
                                      *cuda_test_files()], 240)
    if not report.exists():
        return [Row("cuda-marked tests", "fail", f"rc {outcome.rc}", outcome.tail)]
    return junit_rows(check.device, report)


def calibrate_step(check: Check) -> list[Row]:
    claim = "archbench calibrate on cuda:0 (the roofline's peaks)"
    outcome = check.archbench("calibrate", ["calibrate", "--device", "cuda:0"], 180)
    if not check.device.gpu:
        refused = outcome.rc == 2 and "no CUDA device" in outcome.stderr
        return [Row(claim, "n/a" if refused else "fail",
                    "refused" if refused else f"rc {outcome.rc}", outcome.tail)]
    files = sorted((check.work / "cache").rglob("*.json"))
    if outcome.rc != 0 or not files:
        return [Row(claim, "fail", f"rc {outcome.rc}", outcome.tail)]
    entry = json.loads(files[-1].read_text()).get("devices", {}).get("cuda:0", {})
    peaks = entry.get("matmul_flops_s") or {}
    figure = (", ".join(f"{k} {v / 1e12:.0f}" for k, v in peaks.items()) +
              f" TFLOP/s; copy {(entry.get('copy_bytes_s') or 0) / 1e12:.2f} TB/s")
    ok = len(peaks) == 4 and all(v > 0 for v in peaks.values())
    return [Row(claim, "pass" if ok else "fail", figure, f"took {outcome.seconds:.0f} s")]


def claims_step(check: Check) -> list[Row]:
    """suites/gpu.toml and benchmarks/gpu_check.toml in one run, then one row per claim."""
    _, run = check.run("gpu.toml + gpu_check.toml", "claims",
                       [str(GPU_SUITE), str(CLAIMS_SUITE)], 330)
    return claim_rows(check.device, run) if isinstance(run, Run) else [run]


def quickstart_step(check: Check) -> list[Row]:
    """The quickstart on CPU and CUDA, its CUDA cases again, and the gate between the two."""
    # the dry run measures one CPU/CUDA pair: the CPU cases would take most of its time
    both = ("--filter", "mlp-d2-w256-") if check.dry_run else ("--max-time", "1")
    again = () if check.dry_run else ("--max-time", "1")
    _, first = check.run("quickstart", "quickstart", [str(QUICKSTART), *both], 200)
    _, second = check.run("quickstart, CUDA again", "quickstart-cuda",
                          [str(QUICKSTART), "--filter", "device=cuda", *again], 120)
    rows = [speedup_row(check.device, first) if isinstance(first, Run) else first]
    if not isinstance(first, Run) or not isinstance(second, Run):
        return [*rows, *(r for r in (second,) if isinstance(r, Row))]
    outcome = check.archbench("compare", ["compare", str(first.path), str(second.path),
                                          "--json"], 120)
    try:
        result = json.loads(outcome.stdout)
    except ValueError:
        return [*rows, Row("gate A/A", "fail", f"rc {outcome.rc}", outcome.tail)]
    return [*rows, aa_row(check.device, result, outcome.rc)]


def ray_step(check: Check) -> list[Row]:
    claim = "Ray sweep: each GPU case holds the one GPU (num_gpus=1)"
    probe = check.command("ray import",
                          [sys.executable, "-c", "import ray; print(ray.__version__)"], 60)
    if probe.rc != 0:
        return [Row(claim, "n/a", "no Ray", f"ray cannot be imported here ({probe.tail}); "
                                            "pip install 'archbench[ray]'")]
    quick = () if check.dry_run else ("--set", "min_time_s=0.5", "--max-time", "2")
    _, run = check.run("ray", "ray", [str(GPU_SUITE), "--filter", "w256", "--executor", "ray",
                                      *quick], 180)
    if not isinstance(run, Run):
        return [run]
    return [ray_row(check.device, run, probe.stdout.strip())]


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Check], list[Row]]
    #: Seconds the step needs at least; with less left it is reported `not run`.
    needs_s: float


STEPS = (Step("device", device_step, 20), Step("tests", tests_step, 60),
         Step("calibrate", calibrate_step, 60), Step("claims", claims_step, 120),
         Step("quickstart", quickstart_step, 90), Step("ray", ray_step, 60))


def run_step(check: Check, step: Step, began: float) -> list[Row]:
    """The step's rows; `not run` when too little time is left, a failed row if it broke."""
    left, done_before = check.remaining(), len(check.outcomes)
    if left < step.needs_s:
        rows = [Row(f"{step.name} (step)", "not run", f"{left:.0f} s left",
                    f"the step needs at least {step.needs_s:.0f} s")]
    else:
        try:
            rows = step.run(check)
        except Exception as exc:  # a broken step must not lose the others' rows
            rows = [error_row(f"{step.name} (step)", exc)]
    rows += [Row(f"{o.label} (command)", "fail", f"stopped after {o.seconds:.0f} s",
                 "its limit or the check's deadline came first; rows above miss what it "
                 "had not done") for o in check.outcomes[done_before:] if o.rc is None]
    counts = {v: sum(r.verdict == v for r in rows) for v in ("pass", "fail", "n/a", "not run")}
    print(f"[{time.monotonic() - began:5.0f} s] {step.name}: "
          + ", ".join(f"{n} {v}" for v, n in counts.items() if n), flush=True)
    return rows


# ---- output ------------------------------------------------------------------------------------
def markdown(rows: Sequence[Row], header: str) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "/").replace("\n", " ")

    lines = [header, "", "| verdict | claim | measured | detail |", "|---|---|---|---|"]
    lines += [f"| {r.verdict} | {cell(r.claim)} | {cell(r.figure)} | {cell(r.detail)} |"
              for r in rows]
    counts = {v: sum(r.verdict == v for r in rows) for v in ("pass", "fail", "n/a", "not run")}
    lines += ["", ", ".join(f"{n} {v}" for v, n in counts.items() if n)]
    return "\n".join(lines) + "\n"


def header_line(check: Check, seconds: float) -> str:
    t, gpu = check.device.truth, check.device.gpu
    where = (f"{t.get('name')} (sm {'.'.join(map(str, t.get('capability') or []))})" if gpu
             else check.device.no_gpu)
    mode = "dry run, " if check.dry_run else ""
    return (f"archbench GPU check ({mode}{seconds:.0f} s): {where}; torch {t.get('torch')}, "
            f"Python {t.get('python')}")


def publish(out: Path, check: Check, rows: Sequence[Row], seconds: float) -> str:
    """The table, the JSON report and the raw results as they stand: written after every
    step, so a check stopped from outside still leaves what it had found."""
    table = markdown(rows, header_line(check, seconds))
    (out / "gpu_check.md").write_text(table, encoding="utf-8")
    report = {"dry_run": check.dry_run, "seconds": round(seconds, 1),
              "device": check.device.truth, "rows": [asdict(r) for r in rows],
              "test_files": cuda_test_files(),
              "commands": [o.summary() for o in check.outcomes]}
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str),
                                        encoding="utf-8")
    pack(check.work, out)
    return table


def pack(work: Path, out: Path) -> Path:
    """The work folder as one tarball under the size the device tool brings back; Chrome
    traces go first if it is too large (their operator tables stay in the records)."""
    target = out / "gpu_check_runs.tar.gz"

    def no_traces(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if "/traces/" in info.name else info

    for keep in (None, no_traces):
        with tarfile.open(target, "w:gz") as tar:
            tar.add(work, arcname="gpu_check_runs", filter=keep)
        if target.stat().st_size <= FILE_LIMIT_BYTES:
            break
    return target


def default_out() -> Path:
    return Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / DEFAULT_OUT


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the table and raw results (default: $OUT, else "
                             f"{DEFAULT_OUT})")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                        help=f"the whole check's deadline in seconds (default "
                             f"{DEFAULT_BUDGET_S:.0f})")
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU needed: short windows, CUDA rows n/a, plumbing checked")
    parser.add_argument("--skip", action="append", default=[], metavar="STEP",
                        choices=[s.name for s in STEPS[1:]],
                        help="leave a step out (repeatable): " +
                             ", ".join(s.name for s in STEPS[1:]))
    args = parser.parse_args(argv)
    out = args.out or default_out()
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    rows: list[Row] = []
    try:
        with open(out / "gpu_check.log", "w", encoding="utf-8") as log:
            check = Check(work=work, dry_run=args.dry_run, deadline=began + args.budget_s,
                          log=log)
            for step in (s for s in STEPS if s.name not in args.skip):
                rows += run_step(check, step, began)
                if not check.device.gpu and not args.dry_run:
                    print(f"no GPU here ({check.device.no_gpu}); --dry-run checks the "
                          "plumbing without one", file=sys.stderr)
                    return 2
                table = publish(out, check, rows, time.monotonic() - began)
        print(table, end="")
        print(f"written: {', '.join(sorted(p.name for p in out.iterdir()))} in {out}")
        return 1 if any(r.verdict == "fail" for r in rows) else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
