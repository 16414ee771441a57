"""A/B runs: baseline and candidate code measured in one run, pair by pair.

Each side is a version of the code under test — a git revision of the user's repository
(checked out into a temporary worktree), a folder, or another Python interpreter — served by
its own side process (`bench.engine.ab_side`) with its own forkserver, so a side's workers
import only that side's code. Cases are visited in rounds; in each round every case still
undecided measures one pair: a worker on one side, then a worker on the other, the order from
seeded ABBA blocks (neither side always goes first). Repeat k of a case on the baseline side
and repeat k on the candidate side are a pair, seconds apart, sharing the machine's state.

After each pair a stop rule, given by the caller (the gate's `bench.gate.paired.AdaptiveStop`:
the engine measures, the gate judges), may end a case whose interval is already inside
±threshold or wholly beyond it; the run ends when every case is decided, has `max_pairs`, or
the time budget would be overrun by another round.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from bench.engine.runner import DEFAULT_RUNS_DIR
from bench.errors import BenchError
from bench.results.record import Record
from bench.suite.spec import Case

SIDES = ("baseline", "candidate")
SideKind = Literal["ref", "dir", "python"]
#: Pairs a case gets at most (each pair is two workers), and at least before it may stop.
MAX_PAIRS = 12
MIN_PAIRS = 4
#: How long a side process may take to start (forkserver with torch, environment probe).
START_TIMEOUT_S = 300.0


class ABError(BenchError):
    """An A/B run cannot start as asked (a side that is not a revision, folder or Python)."""


@dataclass(frozen=True)
class Side:
    """One version of the code under test. `root` is where its code lives (a worktree or a
    folder; None: the current tree); `python` the interpreter its workers run."""

    label: str
    spec: str
    kind: SideKind
    python: str
    root: Path | None = None
    #: The git revision a `ref` side resolved to (for the run folder and the report).
    commit: str | None = None

    def describe(self) -> str:
        if self.kind == "ref":
            return f"{self.spec} ({(self.commit or '')[:12]})"
        return self.spec


class StopRule(Protocol):
    """Whether a case has pairs enough, from its pairs so far (both sides ok): "same" or
    "changed" to stop it, None for another pair. Never asked before `min_pairs`."""

    def __call__(self, case: Case, baseline: Sequence[Record],
                 candidate: Sequence[Record]) -> str | None: ...


@dataclass(frozen=True)
class ABOptions:
    out: Path | None = None
    seed: str = "archbench"
    min_pairs: int = MIN_PAIRS
    max_pairs: int = MAX_PAIRS
    #: Seconds the whole run may take (None: until every case is decided or has max_pairs).
    budget_s: float | None = None
    isolation: str = "forkserver"
    command: tuple[str, ...] = ()
    #: Written to each side's run.json under "ab" (e.g. how the gate should pair them).
    meta: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not 2 <= self.min_pairs <= self.max_pairs:
            raise ABError(f"need 2 <= min pairs ({self.min_pairs}) <= max pairs "
                          f"({self.max_pairs}); e.g. --min-pairs 4 --max-pairs 12")
        if self.budget_s is not None and self.budget_s <= 0:
            raise ABError(f"--budget {self.budget_s:g} must be a positive number of seconds")


@dataclass
class ABResult:
    run_dirs: dict[str, Path]
    sides: dict[str, Side]
    #: case_id -> why it stopped: "same" / "changed" (adaptive stop), "max_pairs", "budget",
    #: "failed" (a worker on either side did not finish ok), "counted" (instruction counts:
    #: one pair).
    stopped: dict[str, str] = field(default_factory=dict)
    pairs: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    records: dict[str, list[Record]] = field(default_factory=lambda: {s: [] for s in SIDES})


class ABObserver(Protocol):
    """Progress callbacks; the CLI prints a line per pair."""

    def started(self, run_dirs: dict[str, Path], cases: int) -> None: ...

    def pair_done(self, case: Case, pair: int, order: tuple[str, str],
                  records: dict[str, Record], state: str | None) -> None: ...


class _Silent:
    def started(self, run_dirs: dict[str, Path], cases: int) -> None:
        pass

    def pair_done(self, case: Case, pair: int, order: tuple[str, str],
                  records: dict[str, Record], state: str | None) -> None:
        pass


# ---- sides ----------------------------------------------------------------------------------
def resolve_side(spec: str, label: str, stack: contextlib.ExitStack) -> Side:
    """A side from what the user typed: an interpreter (a file that runs Python), a folder,
    or a git revision of the repository around the current directory (checked out into a
    temporary worktree that `stack` removes)."""
    path = Path(spec).expanduser()
    if path.is_file():
        if not os.access(path, os.X_OK):
            raise ABError(f"--{label} {spec}: a file, but not an executable Python "
                          "interpreter; give a git revision, a folder, or a python binary")
        return Side(label, spec, "python", str(path.resolve()))
    if path.is_dir():
        return Side(label, spec, "dir", sys.executable, root=path.resolve())
    if shutil.which(spec) and "python" in Path(spec).name:
        return Side(label, spec, "python", str(shutil.which(spec)))
    top = _git(["rev-parse", "--show-toplevel"], Path.cwd(), label, spec).strip()
    commit = _git(["rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}"], Path(top), label,
                  spec).strip()
    folder = Path(tempfile.mkdtemp(prefix=f"archbench-ab-{label}-"))
    _git(["worktree", "add", "--detach", "--force", str(folder), commit], Path(top), label, spec)
    stack.callback(_remove_worktree, Path(top), folder)
    return Side(label, spec, "ref", sys.executable, root=folder, commit=commit)


def _git(args: list[str], cwd: Path, label: str, spec: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise ABError(f"--{label} {spec}: not a folder or a Python interpreter, and git is not "
                      "installed to read it as a revision") from None
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or [""])[-1]
        raise ABError(f"--{label} {spec}: not a folder, a Python interpreter, or a git revision "
                      f"of the repository here ({detail or 'unknown revision'}); give e.g. "
                      "origin/main, a commit, ./old-checkout or /opt/py/bin/python")
    return done.stdout


def _remove_worktree(top: Path, folder: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=top,
                   capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


def anchor(side: Side) -> Path:
    """The folder a side's root stands for in the current tree: the repository's top for a
    revision, the current directory for a folder."""
    if side.kind == "ref":
        done = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True,
                              text=True)
        return Path(done.stdout.strip())
    return Path.cwd()


def side_paths(side: Side, suite_paths: Sequence[str]) -> tuple[Path, list[str]]:
    """The side's working directory and model search path: the suite's folder and the
    current directory, mapped into the side's root (unchanged for an interpreter side)."""
    here = Path.cwd()
    folders = [Path(p).resolve().parent for p in suite_paths] + [here]
    if side.root is None:
        return here, [str(f) for f in dict.fromkeys(folders)]
    base = anchor(side)
    mapped = []
    for folder in folders:
        try:
            mapped.append(side.root / folder.relative_to(base))
        except ValueError:  # outside the tree the side stands for: not the code under test
            mapped.append(folder)
    try:
        cwd = side.root / here.relative_to(base)
    except ValueError:
        cwd = side.root
    return cwd, [str(f) for f in dict.fromkeys([*mapped, side.root])]


# ---- the side process -----------------------------------------------------------------------
class SideServer:
    """The parent's handle on one side process (see `bench.engine.ab_side`), which serves
    one side or — when both run on this interpreter — both: their workers then fork from one
    forkserver. Two forkservers differ in memory layout (and in which pages got huge pages)
    for the whole run, which on a small case showed as a constant 3-4% between two sides
    running identical code; a shared forkserver makes both sides' workers alike."""

    def __init__(self, sides: list[Side], configs: dict[str, dict[str, Any]],
                 log_path: Path) -> None:
        self.sides = {side.label: side for side in sides}
        self.configs: dict[str, dict[str, Any]] = {}
        cwd = Path.cwd()
        for side in sides:
            side_cwd, search = side_paths(side, configs[side.label]["suites"])
            self.configs[side.label] = {**configs[side.label], "search_path": search}
            if len(sides) == 1:
                cwd = side_cwd
        first = sides[0]
        env = dict(os.environ)
        if first.kind != "python":
            # The harness is this archbench (the code under test is only what the suite's
            # models import from the side's folders).
            harness = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = os.pathsep.join(p for p in (harness, env.get("PYTHONPATH"))
                                                if p)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
        try:
            self.proc = subprocess.Popen([first.python, "-P", "-m", "bench.engine.ab_side"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._log, cwd=cwd, env=env, text=True,
                                         bufsize=1)
        except OSError as exc:
            self._log.close()
            raise ABError(f"--{first.label} {first.spec}: cannot start {first.python}: "
                          f"{exc.strerror}") from None

    @property
    def what(self) -> str:
        return " and ".join(f"the {s.label} side ({s.describe()})" for s in self.sides.values())

    def start(self) -> None:
        """Send the configuration; a side that has already ended is reported by
        `wait_ready`, so that every side's failure is told, in a fixed order."""
        with contextlib.suppress(ABError):
            self._send({"sides": self.configs})

    def wait_ready(self) -> dict[str, Any]:
        return self._receive("start")

    def run(self, label: str, case_id: str, repeat: int) -> Record:
        self._send({"op": "run", "side": label, "case_id": case_id, "repeat": repeat})
        return Record.from_dict(self._receive(f"case {case_id}")["record"])

    def close(self, status: str) -> None:
        with contextlib.suppress(OSError, ValueError, ABError):
            self._send({"op": "close", "status": status})
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def _send(self, message: dict[str, Any]) -> None:
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(message) + "\n")
            stdin.flush()
        except BrokenPipeError:
            raise self._ended(str(message.get("op", "start"))) from None

    def _receive(self, what: str) -> dict[str, Any]:
        stdout: IO[str] | None = self.proc.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            raise self._ended(what)
        message = json.loads(line)
        if "error" in message:
            raise ABError(f"{self.what}: {message['error']}")
        return dict(message)

    def _ended(self, what: str) -> ABError:
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return ABError(f"{self.what} ended during {what} (exit code "
                       f"{self.proc.returncode}); its log: {self.log_path}"
                       f"{_no_archbench_hint(self.log_path)}")


def servers_for(sides: dict[str, Side]) -> list[list[Side]]:
    """Which sides share a side process: those on this interpreter (revisions, folders)
    share one; an interpreter side has its own."""
    here = [s for s in sides.values() if s.kind != "python"]
    return ([here] if here else []) + [[s] for s in sides.values() if s.kind == "python"]


def _no_archbench_hint(log: Path) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    if "No module named bench" in text or "No module named 'bench'" in text:
        return (" — that interpreter has no archbench: install the same archbench version "
                "in it (pip install archbench==...)")
    tail = text.strip().splitlines()[-1:] or [""]
    return f" — last line: {tail[0]}" if tail[0] else ""


# ---- the run --------------------------------------------------------------------------------
def default_out(suite_name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = DEFAULT_RUNS_DIR / f"{stamp}-{suite_name}-ab"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def run_ab(suite_paths: Sequence[str], cases: Sequence[Case], sides: dict[str, Side],
           options: ABOptions, *, stop: StopRule | None = None,
           settings: dict[str, Any] | None = None, device: Sequence[str] | None = None,
           observer: ABObserver | None = None) -> ABResult:
    """Measure `cases` on both sides, pair by pair; each side's records go to
    `<out>/<side>/`, a normal run folder."""
    observer = observer or _Silent()
    out = (options.out or default_out(cases[0].suite if cases else "ab")).resolve()
    if out.exists() and any(out.iterdir()):
        raise ABError(f"{out} already holds files; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    ab_meta = {**dict(options.meta), "id": out.name, "seed": options.seed,
               "sides": {label: {"spec": s.spec, "kind": s.kind, "python": s.python,
                                 "root": str(s.root) if s.root else None, "commit": s.commit}
                         for label, s in sides.items()}}
    started = time.monotonic()
    result = ABResult(run_dirs={s: out / s for s in SIDES}, sides=dict(sides))
    servers: list[SideServer] = []
    procs: dict[str, SideServer] = {}
    status = "failed"
    try:
        configs = {label: {"suites": [str(Path(p).resolve()) for p in suite_paths],
                           "settings": settings or {},
                           "device": list(device) if device else None,
                           "case_ids": [c.case_id for c in cases], "out": str(out / label),
                           "isolation": options.isolation, "command": list(options.command),
                           "ab": {**ab_meta, "side": label}} for label in SIDES}
        for group in servers_for(sides):
            name = "-".join(s.label for s in group)
            server = SideServer(group, {s.label: configs[s.label] for s in group},
                                out / f"{name}-side.log")
            servers.append(server)
            procs.update({s.label: server for s in group})
        for server in servers:  # separate side processes start at the same time
            server.start()
        failed = []
        for server in servers:
            try:
                server.wait_ready()
            except ABError as exc:
                failed.append(str(exc))
        if failed:
            raise ABError("\n".join(failed))
        observer.started(result.run_dirs, len(cases))
        _interleave(cases, procs, options, stop, result, observer, started)
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        for server in servers:
            server.close(status)
        result.wall_s = time.monotonic() - started
        (out / "ab.json").write_text(json.dumps(
            {**ab_meta, "status": status, "wall_s": result.wall_s, "stopped": result.stopped,
             "pairs": result.pairs, "budget_s": options.budget_s,
             "min_pairs": options.min_pairs, "max_pairs": options.max_pairs}, indent=2))
    return result


def _interleave(cases: Sequence[Case], procs: dict[str, SideServer], options: ABOptions,
                stop: StopRule | None, result: ABResult, observer: ABObserver,
                started: float) -> None:
    pairs: dict[str, dict[str, list[Record]]] = {c.case_id: {s: [] for s in SIDES}
                                                 for c in cases}
    open_cases = list(cases)
    pair_s: dict[str, float] = {}  # case_id -> how long its last pair took
    for pair in range(options.max_pairs):
        this_round = list(open_cases)
        random.Random(f"{options.seed}:round:{pair}").shuffle(this_round)
        for case in this_round:
            if _over_budget(options, started, pair_s.get(case.case_id, _mean(pair_s))):
                for c in open_cases:
                    result.stopped[c.case_id] = "budget"
                return
            order = pair_orders(pair + 1, f"{options.seed}:{case.case_id}")[pair]
            t0 = time.monotonic()
            records = {label: procs[label].run(label, case.case_id, pair) for label in order}
            pair_s[case.case_id] = time.monotonic() - t0
            for label in SIDES:
                result.records[label].append(records[label])
            result.pairs[case.case_id] = pair + 1
            state = _after_pair(case, records, pairs[case.case_id], options, stop)
            if state is not None:
                result.stopped[case.case_id] = state
                open_cases.remove(case)
            observer.pair_done(case, pair, order, records, state)
        if not open_cases:
            return
    for case in open_cases:
        result.stopped[case.case_id] = "max_pairs"


def _after_pair(case: Case, records: dict[str, Record], pairs: dict[str, list[Record]],
                options: ABOptions, stop: StopRule | None) -> str | None:
    """Add the pair; the case's stop state ("failed" when a side did not give samples:
    there is nothing to pair, and the gate reports the status; "counted" after one pair of
    instruction counts, which do not drift with the machine)."""
    if all(r.status == "ok" for r in records.values()) and case.settings.counted:
        return "counted"
    if any(r.status != "ok" or not r.samples_ns for r in records.values()):
        return "failed"
    for label in SIDES:
        pairs[label].append(records[label])
    if stop is None or len(pairs["baseline"]) < options.min_pairs:
        return None
    return stop(case, pairs["baseline"], pairs["candidate"])


def _over_budget(options: ABOptions, started: float, expected_s: float) -> bool:
    """Whether one more pair (as long as the case's last one, or the mean so far) would end
    past the budget."""
    if options.budget_s is None:
        return False
    return time.monotonic() - started + expected_s > options.budget_s


def _mean(durations: dict[str, float]) -> float:
    return sum(durations.values()) / len(durations) if durations else 0.0


def pair_orders(pairs: int, seed: str) -> list[tuple[str, str]]:
    """The side order of each pair: ABBA blocks, each block's direction drawn from a seeded
    generator, so neither side always runs first (a worker that follows another inherits its
    heat and page cache) and a rerun with the same seed runs in the same order."""
    rng = random.Random(seed)
    orders: list[tuple[str, str]] = []
    while len(orders) < pairs:
        first = (SIDES[0], SIDES[1]) if rng.random() < 0.5 else (SIDES[1], SIDES[0])
        orders += [first, (first[1], first[0])]
    return orders[:pairs]


@contextlib.contextmanager
def resolved_sides(baseline: str, candidate: str) -> Iterator[dict[str, Side]]:
    """Both sides, with any temporary worktrees removed on exit."""
    with contextlib.ExitStack() as stack:
        yield {"baseline": resolve_side(baseline, "baseline", stack),
               "candidate": resolve_side(candidate, "candidate", stack)}

