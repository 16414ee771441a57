"""Scale of the history store: RUNS runs x CASES cases (default 2,000 x 200 = 400k records).

Each run is appended through `HistoryStore.add` exactly as `archbench history add` does
(rows with SAMPLES raw samples and 5 per-repeat medians per case; a 5% step in a tenth of
the cases at run 1,900). Measured:

- append time per run (median, 95th percentile, max: the max includes the compactions);
- `archbench history show` and `archbench history check` wall time, as a user runs them (a
  fresh interpreter: imports, opening the store, the query, detection on every series);
- the store's size on disk;
- with --sqlite, the same rows in one SQLite file (WAL, synchronous=FULL, samples as a blob
  in a side table): append time and the time to read every point, for the store's choice.

Usage (a few minutes; the store is kept in --dir for benchmarks/history_report.py):
    python -m benchmarks.history_scale [--runs 2000] [--cases 200] [--samples 100]
        [--dir /tmp/history-scale] [--sqlite]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.history import HistoryStore


def make_rows(run: int, cases: int, samples: int, rng: np.random.Generator,
              levels: np.ndarray) -> list[dict[str, Any]]:
    when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=run)
    offset = rng.normal(0.0, 0.01)  # the whole run: the machine's state that day
    rows = []
    for c in range(cases):
        level = levels[c] * (1.05 if c % 10 == 0 and run >= 1900 else 1.0)
        medians = level * np.exp(offset + rng.normal(0.0, 0.005, 5))
        raw = (level * np.exp(offset + rng.normal(0.0, 0.02, samples))).astype(np.float32)
        logs = np.log(medians)
        rows.append({
            "run_id": f"run-{run:05d}", "case_id": f"{c:016x}", "name": f"case-{c:03d}",
            "suite": "scale", "fingerprint": "f" * 16, "environment": "{}",
            "commit": f"{run:040x}", "commit_time": when, "branch": "main", "dirty": False,
            "run_started_at": when, "source": "benchmark", "status": "ok", "n_repeats": 5,
            "repeat_medians_ms": medians.tolist(), "median_ms": float(np.median(raw)),
            "ci_low_ms": float(level * 0.99), "ci_high_ms": float(level * 1.01),
            "level_ms": float(np.exp(logs.mean())),
            "se_log": float(logs.std(ddof=1) / math.sqrt(5)), "samples_ms": raw,
            "params": "{}", "metrics": "{}", "added_at": when,
        })
    return rows


def cli_seconds(*args: str) -> tuple[float, float, int]:
    """Wall time, CPU time (user + system, all threads) and exit code of one command. On a
    shared machine the wall time includes waiting for a core; the CPU time does not, and
    bounds what the command costs on a quiet machine (from above, when DuckDB uses several
    threads)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench", "history", *args],
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode not in (0, 1):
        raise SystemExit(f"history {args[0]} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed, cpu, done.returncode


def sqlite_arm(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The same rows (regenerated from the same seed) in SQLite."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE records (run_id TEXT, case_id TEXT, name TEXT, fingerprint TEXT, "
               "commit_sha TEXT, commit_time TEXT, level_ms REAL, se_log REAL, "
               "repeat_medians BLOB, PRIMARY KEY (run_id, case_id))")
    db.execute("CREATE TABLE samples (run_id TEXT, case_id TEXT, samples BLOB, "
               "PRIMARY KEY (run_id, case_id))")
    times = []
    rng = np.random.default_rng(0)
    levels = np.exp(rng.uniform(math.log(0.05), math.log(50), args.cases))
    for run in range(args.runs):
        rows = make_rows(run, args.cases, args.samples, rng, levels)
        started = time.perf_counter()
        with db:
            db.executemany("INSERT OR IGNORE INTO records VALUES (?,?,?,?,?,?,?,?,?)", [
                (r["run_id"], r["case_id"], r["name"], r["fingerprint"], r["commit"],
                 r["commit_time"].isoformat(), r["level_ms"], r["se_log"],
                 np.asarray(r["repeat_medians_ms"]).tobytes()) for r in rows])
            db.executemany("INSERT OR IGNORE INTO samples VALUES (?,?,?)", [
                (r["run_id"], r["case_id"], r["samples_ms"].tobytes()) for r in rows])
        times.append(time.perf_counter() - started)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    started = time.perf_counter()
    con = sqlite3.connect(path)
    points = con.execute("SELECT fingerprint, case_id, commit_sha, commit_time, level_ms, "
                         "se_log FROM records ORDER BY fingerprint, case_id, commit_time"
                         ).fetchall()
    read_s = time.perf_counter() - started
    return {"append_ms_median": 1e3 * float(np.median(times)),
            "append_ms_p95": 1e3 * float(np.percentile(times, 95)),
            "read_points_s": read_s, "points": len(points),
            "bytes": path.stat().st_size}


def read_both(store: HistoryStore, sqlite_path: Path, rounds: int = 3) -> dict[str, float]:
    """The same read, every row's series key, commit, time, level and error, ordered by
    series and time, from both stores, alternated (ABAB) so load drift hits both alike."""
    columns = "fingerprint, case_id, {commit}, commit_time, level_ms, se_log"
    order = " ORDER BY fingerprint, case_id, commit_time"
    duck, lite = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        con = store.connect()
        con.execute(f"SELECT {columns.format(commit='commit')} FROM records{order}").df()
        duck.append(time.perf_counter() - started)
        started = time.perf_counter()
        sqlite3.connect(sqlite_path).execute(
            f"SELECT {columns.format(commit='commit_sha')} FROM records{order}").fetchall()
        lite.append(time.perf_counter() - started)
    return {"duckdb_read_all_s_median": float(np.median(duck)),
            "sqlite_read_all_s_median": float(np.median(lite))}


def in_process(store: HistoryStore) -> dict[str, float]:
    """Where the time of `history show` goes, once the modules are imported: reading the
    points (DuckDB), splitting them into series, detection, and drawing the trend section."""
    from bench.history import PointQuery, analyse, series_from_points
    from bench.report.html import render_html
    from bench.report.model import ReportInput
    from bench.report.sections.trend import trend_section

    out = {}
    for label, commits in (("window_250", 250), ("all_commits", 0)):
        started = time.perf_counter()
        points = store.points(PointQuery(last_commits=commits))
        read = time.perf_counter()
        series = series_from_points(points)
        split = time.perf_counter()
        history = analyse(series, store.accepted())
        fitted = time.perf_counter()
        render_html(ReportInput(runs=(), history=history), [trend_section(history)])
        drawn = time.perf_counter()
        out.update({f"{label}_points": len(points), f"{label}_read_s": read - started,
                    f"{label}_series_s": split - read, f"{label}_detect_s": fitted - split,
                    f"{label}_findings": len(history.findings),
                    f"{label}_trend_render_s": drawn - fitted})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/history-scale"))
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--cli-only", action="store_true",
                        help="time only the commands (not the in-process breakdown)")
    parser.add_argument("--reuse", action="store_true",
                        help="time the commands on the store already in --dir")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out: dict[str, Any] = {}
    if args.reuse and (args.dir / "store").is_dir():
        store = HistoryStore(args.dir / "store")
    else:
        shutil.rmtree(args.dir, ignore_errors=True)
        args.dir.mkdir(parents=True)
        store = HistoryStore(args.dir / "store", create=True)
        rng = np.random.default_rng(0)
        levels = np.exp(rng.uniform(math.log(0.05), math.log(50), args.cases))
        times = []
        for run in range(args.runs):
            rows = make_rows(run, args.cases, args.samples, rng, levels)
            started = time.perf_counter()
            store.add(rows)
            times.append(time.perf_counter() - started)
        out.update({"append_ms_median": 1e3 * float(np.median(times)),
                    "append_ms_p95": 1e3 * float(np.percentile(times, 95)),
                    "append_ms_max": 1e3 * float(np.max(times))})
    summary = store.summary()
    out.update({"runs": summary["runs"], "cases": summary["series"],
                "samples_per_record": args.samples, "records": summary["rows"],
                "files": summary["files"], "store_bytes": summary["bytes"]})
    if not args.cli_only:
        out.update(in_process(store))
    where = ["--store", str(store.path)]
    for name, command, extra in (
            ("show", "show", []), ("show_one_case", "show", ["case-010"]),
            ("show_all_commits", "show", ["--commits", "0"]),
            ("check_last_150", "check", ["--last", "150"])):
        timed = [cli_seconds(command, *where, *extra) for _ in range(3)]
        out[f"cli_{name}_s_median_of_3"] = float(np.median([t[0] for t in timed]))
        out[f"cli_{name}_cpu_s_median_of_3"] = float(np.median([t[1] for t in timed]))
    out["check_last_150_exit"] = cli_seconds("check", *where, "--last", "150")[2]
    out["cli_help_cpu_s"] = cli_seconds("--help")[1]  # interpreter start and imports only
    html = args.dir / "trend.html"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench", "report", "--history",
                           str(store.path), "-o", str(html)], capture_output=True, text=True)
    out["cli_report_history_s"] = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"report failed:\n{done.stdout}\n{done.stderr}")
    out["report_bytes"] = html.stat().st_size
    sqlite_path = args.dir / "history.sqlite"
    if args.sqlite and not (args.reuse and sqlite_path.is_file()):
        out["sqlite"] = sqlite_arm(sqlite_path, args)
    if sqlite_path.is_file():
        out["sqlite_bytes"] = sqlite_path.stat().st_size
        out.update(read_both(store, sqlite_path))
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
