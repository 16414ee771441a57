"""What the history store keeps of a run: one row per case, with the commit it measured.

Rows come from archbench run folders (and saved baselines, which are run folders) and from
pytest-benchmark's saved JSON, so a project brings the history it already has. Every row
carries what the detector needs, derived once here from the raw data it also keeps:

- `level_ms`: the geometric mean of the per-repeat medians (several workers), else the
  median of the samples;
- `se_log`: the standard error of log(level): from the spread of the per-repeat medians
  (run-to-run variation within the run), else from the median's distribution-free interval.

Pure apart from reading the files named and asking git for a commit's time.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.env import fingerprint, fingerprint_hash
from bench.errors import BenchWarning, ResultsError

#: z of a two-sided 95% interval: turns the median's interval into a standard error.
_Z95 = 1.959963984540054

COLUMNS = ("run_id", "case_id", "name", "suite", "fingerprint", "environment", "commit",
           "commit_time", "branch", "dirty", "run_started_at", "source", "status",
           "n_repeats", "repeat_medians_ms", "median_ms", "ci_low_ms", "ci_high_ms",
           "level_ms", "se_log", "samples_ms", "params", "metrics", "added_at")


@dataclass(frozen=True)
class Commit:
    """Where in the project's history a run measured: the commit, its time, branch, dirty."""

    sha: str
    time: datetime
    branch: str | None = None
    dirty: bool = False


def schema() -> Any:
    """The Parquet schema of a store's rows (pyarrow imported on use)."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema([
        ("run_id", pa.string()), ("case_id", pa.string()), ("name", pa.string()),
        ("suite", pa.string()), ("fingerprint", pa.string()), ("environment", pa.string()),
        ("commit", pa.string()), ("commit_time", ts), ("branch", pa.string()),
        ("dirty", pa.bool_()), ("run_started_at", ts), ("source", pa.string()),
        ("status", pa.string()), ("n_repeats", pa.int32()),
        ("repeat_medians_ms", pa.list_(pa.float64())), ("median_ms", pa.float64()),
        ("ci_low_ms", pa.float64()), ("ci_high_ms", pa.float64()),
        ("level_ms", pa.float64()), ("se_log", pa.float64()),
        # float32 keeps 7 significant digits of every sample at half the size.
        ("samples_ms", pa.list_(pa.float32())), ("params", pa.string()),
        ("metrics", pa.string()), ("added_at", ts),
    ])


def to_table(rows: Sequence[Mapping[str, Any]]) -> Any:
    import pyarrow as pa

    return pa.Table.from_pylist([dict(r) for r in rows], schema=schema())


# ---- archbench runs -------------------------------------------------------------------------
def run_rows(records: Iterable[Any], meta: Mapping[str, Any], *, source: str,
             commit: Commit | None = None, where: str = "") -> list[dict[str, Any]]:
    """Rows of one run (its repeats merged per case). `commit` overrides what the run recorded;
    without either, the run cannot be placed in history and the error says how to fix it."""
    from bench.results.repeats import merge_repeats

    env = dict(meta.get("env") or {})
    placed = commit or commit_of_run(meta, where=where)
    started = _time(meta.get("started_at")) or placed.time
    fp = fingerprint_hash(env)
    environment = json.dumps(fingerprint(env), sort_keys=True, default=str)
    now = datetime.now(UTC)
    rows = []
    for record in merge_repeats(records):
        rows.append({
            "run_id": str(meta.get("run_id") or record.run_id), "case_id": record.case_id,
            "name": record.name, "suite": record.suite, "fingerprint": fp,
            "environment": environment, "commit": placed.sha, "commit_time": placed.time,
            "branch": placed.branch, "dirty": placed.dirty, "run_started_at": started,
            "source": source, "status": record.status,
            **_timing_columns(record.samples_ns,
                              (record.timing or {}).get("repeat_medians_ns") or [],
                              float(record.settings.get("confidence", 0.95))),
            "params": json.dumps(dict(record.params), sort_keys=True, default=str),
            "metrics": json.dumps(_scalars(record.metrics), sort_keys=True),
            "added_at": now,
        })
    return rows


def commit_of_run(meta: Mapping[str, Any], *, where: str = "") -> Commit:
    """The commit a run recorded (run.json's git state), with the commit's time from git when
    the repository is at hand, else the run's start time (with a warning)."""
    env = dict(meta.get("env") or {})
    sha = env.get("git_commit")
    if not sha:
        raise ResultsError(f"{where or 'run'}: the run recorded no git commit (it was not run "
                           "inside a git repository); give the commit it measured with "
                           "--commit SHA (and --commit-time ISO-TIME)")
    time = _time(env.get("git_commit_time")) or git_commit_time(sha, meta.get("cwd"))
    if time is None:
        time = _time(meta.get("started_at"))
        if time is None:
            raise ResultsError(f"{where or 'run'}: no time for commit {sha[:12]}; give "
                               "--commit-time ISO-TIME")
        warnings.warn(f"{where or 'run'}: git cannot date commit {sha[:12]} here; the run is "
                      "placed at its start time instead", BenchWarning, stacklevel=2)
    return Commit(sha=str(sha), time=time, branch=env.get("git_branch"),
                  dirty=bool(env.get("git_dirty")))


def git_commit_time(sha: str, cwd: Any = None) -> datetime | None:
    """The committer time of `sha`, asked of the repository at `cwd` (then the current one)."""
    for where in (cwd, None):
        if where is not None and not Path(str(where)).is_dir():
            continue
        try:
            done = subprocess.run(["git", "show", "-s", "--format=%cI", sha], cwd=where,
                                  capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode == 0 and done.stdout.strip():
            return _time(done.stdout.strip())
    return None


def _timing_columns(samples_ns: Sequence[float], repeat_medians_ns: Sequence[float],
                    confidence: float) -> dict[str, Any]:
    """A run's level of one case and its interval, as `bench.load()` states them
    (`bench.stats.level`: across the run's workers where there are two or more); `se_log` is
    the standard error that gives that interval at 95% (a t-interval over few workers is
    wider than 1.96 of their standard error, and the history's bands must not be narrower
    than the run's own)."""
    from bench.stats import summarize

    empty = {"n_repeats": 0, "repeat_medians_ms": None, "median_ms": None, "ci_low_ms": None,
             "ci_high_ms": None, "level_ms": None, "se_log": None, "samples_ms": None}
    samples_ms = [float(s) / 1e6 for s in samples_ns]
    if not samples_ms or min(samples_ms) <= 0:
        return empty
    summary = summarize(samples_ns, confidence=confidence,
                        worker_medians_ns=repeat_medians_ns)
    medians = [float(m) / 1e6 for m in repeat_medians_ns] or [summary.median_ms]
    low, high = summary.ci_low_ms, summary.ci_high_ms
    se = (math.log(high) - math.log(low)) / (2 * _Z95) if low > 0 else math.inf
    return {"n_repeats": len(medians), "repeat_medians_ms": medians,
            "median_ms": summary.median_ms, "ci_low_ms": low, "ci_high_ms": high,
            "level_ms": summary.median_ms, "se_log": se if math.isfinite(se) else None,
            "samples_ms": samples_ms}


# ---- pytest-benchmark -----------------------------------------------------------------------
def pytest_benchmark_rows(path: Path, *, commit: Commit | None = None) -> list[dict[str, Any]]:
    """Rows of one pytest-benchmark JSON file (`pytest --benchmark-save` / `--benchmark-json`,
    or archbench's own export).

    Each benchmark is one case: `extra_info.case_id` when archbench wrote the file, else a
    stable id from its full name. Its samples are `stats.data` (per-round times per
    iteration) when the file kept them (`--benchmark-save-data`); without them the level is
    the saved median and its error is estimated from the IQR and the rounds (a normal
    approximation, said in the row's metrics as `se_from = "iqr"`).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: not readable as pytest-benchmark JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ResultsError(f"{path}: no \"benchmarks\" list; is this a file written by "
                           "pytest-benchmark (--benchmark-save or --benchmark-json)?")
    machine = data.get("machine_info") or {}
    env = dict(machine.get("archbench_env") or {}) or {
        "cpu_model": (machine.get("cpu") or {}).get("brand_raw") or machine.get("processor"),
        "gpus": [], "torch_version": machine.get("torch_version"),
        "cuda_version": machine.get("cuda_version"), "threads": machine.get("threads")}
    info = data.get("commit_info") or {}
    when = _time(data.get("datetime"))
    if commit is None:
        sha = info.get("id")
        if not sha or sha == "unversioned":
            raise ResultsError(f"{path}: the file records no commit (commit_info.id); give "
                               "the commit it measured with --commit SHA")
        time = (_time(info.get("time")) or _time(info.get("author_time")) or
                git_commit_time(sha) or when)
        if time is None:
            raise ResultsError(f"{path}: no time for commit {sha[:12]}; give --commit-time")
        commit = Commit(sha=str(sha), time=time, branch=info.get("branch"),
                        dirty=bool(info.get("dirty")))
    run_id = f"pytest-benchmark:{path.name}:{data.get('datetime') or ''}"
    fp = fingerprint_hash(env)
    environment = json.dumps(fingerprint(env), sort_keys=True, default=str)
    now = datetime.now(UTC)
    rows = []
    for index, bench in enumerate(data["benchmarks"]):
        where = f"{path}: benchmarks[{index}]"
        if not isinstance(bench, dict) or not isinstance(bench.get("stats"), dict):
            raise ResultsError(f"{where}: no \"stats\"; the file is damaged")
        stats = bench["stats"]
        extra = bench.get("extra_info") or {}
        fullname = str(bench.get("fullname") or bench.get("name") or "")
        if not fullname:
            raise ResultsError(f"{where}: a benchmark without a name")
        case_id = str(extra.get("case_id") or _stable_id(fullname))
        samples = [float(s) for s in stats.get("data") or []]
        if samples:
            timing = _timing_columns([s * 1e9 for s in samples], [], 0.95)
            metrics = {"se_from": "samples"}
        else:
            timing = _from_summary(stats, where)
            metrics = {"se_from": "iqr"}
        metrics.update({k: v for k, v in extra.items()
                        if isinstance(v, (int, float, str, bool)) and k != "case_id"})
        rows.append({
            "run_id": run_id, "case_id": case_id, "name": str(bench.get("name") or fullname),
            "suite": str(bench.get("group") or ""), "fingerprint": fp,
            "environment": environment, "commit": commit.sha, "commit_time": commit.time,
            "branch": commit.branch, "dirty": commit.dirty, "run_started_at": when or commit.time,
            "source": f"pytest-benchmark {path.name}", "status": "ok", **timing,
            "params": json.dumps(bench.get("params") or {}, sort_keys=True, default=str),
            "metrics": json.dumps(metrics, sort_keys=True), "added_at": now,
        })
    return rows


def _from_summary(stats: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Level and error from pytest-benchmark's summary when it kept no samples: the median's
    standard error of a normal sample, 1.2533 sigma / sqrt(n), with sigma = IQR / 1.349."""
    try:
        median_s = float(stats["median"])
        rounds = int(stats.get("rounds") or 1)
        iqr_s = float(stats.get("iqr") or 0.0)
    except (KeyError, TypeError, ValueError):
        raise ResultsError(f"{where}: stats has no usable \"median\"") from None
    if median_s <= 0:
        raise ResultsError(f"{where}: median {median_s} is not a positive time")
    se = 1.2533 * (iqr_s / 1.349) / median_s / math.sqrt(max(rounds, 1))
    median_ms = median_s * 1e3
    return {"n_repeats": 1, "repeat_medians_ms": [median_ms], "median_ms": median_ms,
            "ci_low_ms": median_ms * math.exp(-_Z95 * se),
            "ci_high_ms": median_ms * math.exp(_Z95 * se), "level_ms": median_ms,
            "se_log": se, "samples_ms": None}


def _stable_id(text: str) -> str:
    return hashlib.sha256(f"pytest-benchmark:{text}".encode()).hexdigest()[:16]


def _scalars(metrics: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
            out[key] = value
        elif isinstance(value, float):
            out[key] = value if math.isfinite(value) else None
    return out


def _time(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO text (or a datetime); None when there is none."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_time(text: str, *, what: str = "--commit-time") -> datetime:
    parsed = _time(text)
    if parsed is None:
        raise ResultsError(f'{what} "{text}" is not an ISO time; write e.g. '
                           '2026-11-30T09:00:00+00:00')
    return parsed
