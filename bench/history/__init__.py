"""History: every run of every commit, per case and environment, with the changes found.

    from bench.history import HistoryStore, load_history
    store = HistoryStore(".archbench/history", create=True)
    store.add(run_rows(...))                       # or `archbench history add STORE RUN`
    history = load_history(store)                  # series, change points, findings
    for finding in history.findings: ...

Layers: reads results (records, run folders) and the gate's statistics and thresholds;
the report and the front ends read it.
"""

from __future__ import annotations

from pathlib import Path

from bench.history.analyse import (
    Change,
    CheckResult,
    DetectOptions,
    Finding,
    History,
    Series,
    analyse,
    check,
    series_from_points,
)
from bench.history.store import Accepted, AddResult, HistoryStore, PointQuery

__all__ = ["Accepted", "AddResult", "Change", "CheckResult", "DetectOptions", "Finding",
           "History", "HistoryStore", "PointQuery", "Series", "add_run", "analyse", "check",
           "load_history", "series_from_points"]


def load_history(store: HistoryStore, query: PointQuery | None = None,
                 options: DetectOptions | None = None) -> History:
    """Every series the query selects (the timing, and the metrics it names), fitted, with
    its findings grouped by commit."""
    query = query or PointQuery()
    series = series_from_points(store.points(query)) if query.timing else []
    if query.metrics:
        series += series_from_points(store.metric_points(query))
    return analyse(series, store.accepted(), options or DetectOptions())


def add_run(store: HistoryStore, run: str | Path, *, source: str = "archbench run",
            commit: str | None = None, commit_time: str | None = None,
            branch: str | None = None) -> AddResult:
    """Append a run folder (or a saved baseline's folder) to the store; the commit options
    override what the run recorded."""
    from bench.errors import ResultsError
    from bench.history.rows import Commit, commit_of_run, git_commit_time, parse_time, run_rows
    from bench.results import load_run

    data = load_run(run)
    where = str(run)
    env = dict(data.meta.get("env") or {})
    if commit or commit_time:
        sha = commit or env.get("git_commit")
        if not sha:
            raise ResultsError(f"{where}: the run recorded no git commit; give the commit it "
                               "measured with --commit SHA")
        when = parse_time(commit_time) if commit_time else git_commit_time(
            sha, data.meta.get("cwd"))
        if when is None:
            raise ResultsError(f"{where}: git cannot date commit {sha[:12]} here; give "
                               "--commit-time ISO-TIME")
        placed = Commit(sha=str(sha), time=when, branch=branch or env.get("git_branch"),
                        dirty=False if commit else bool(env.get("git_dirty")))
    else:
        placed = commit_of_run(data.meta, where=where)
        if branch:
            placed = Commit(sha=placed.sha, time=placed.time, branch=branch,
                            dirty=placed.dirty)
    return store.add(run_rows(data.records, data.meta, source=source, commit=placed,
                              where=where))
