"""The history store: a folder of Parquet files, queried with DuckDB. No server.

Layout::

    STORE/archbench-history.json   format version (the folder is a store)
    STORE/data/L0-*.parquet        one file per append: the new rows of one run
    STORE/data/L1-*.parquet ...    compacted files: COMPACT_AT files of a level merged
    STORE/accepted.json            changes marked accepted (`history accept`)
    STORE/.lock                    held while writing

Why Parquet files and DuckDB rather than SQLite (benchmarks/history_scale.py, 2,000 runs x
200 cases with 100 samples each, on a loaded 2-core machine): the store is 1.7x smaller
(172 MB against 293 MB: column compression; it is what a CI cache carries from push to
push), reading every point takes about as long (5.7 s against 6.3 s, alternated), an append
costs more (0.1 s against 0.04 s a run: nothing beside a run's minutes), and the pooling and
windowing the history needs run as vectorised SQL over columns, not as Python over rows. The
files are plain Parquet, readable by DuckDB, pandas or polars without archbench. A file, once
renamed into place, never changes, which makes the store easy to reason about:

- *crash-safe*: a file is written under a temporary name, fsynced, then renamed; readers
  only see `*.parquet`, so a half-written file is never read. Compaction writes the merged
  file (which names, in its metadata, the files it replaces) before deleting its inputs;
  readers drop any file a live compacted file replaces, so a crash between the two steps
  leaves nothing counted twice.
- *idempotent*: a row is (run_id, case_id); an append skips rows already stored, so adding
  the same run twice adds nothing, and a resumed run adds only its new cases.
- *one writer at a time*: appends, compaction and accepts hold an exclusive lock on
  `STORE/.lock`; readers take no lock (they see whole files only).
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError, ResultsError

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

FORMAT = 1
MARKER = "archbench-history.json"
DATA = "data"
ACCEPTED = "accepted.json"
LOCK = ".lock"
#: Files at one level that merge into one file of the next: bounds the files a query opens
#: (DuckDB pays about a millisecond per file) at about COMPACT_AT per level.
COMPACT_AT = 32
#: File metadata: the files a compacted file replaces, and the run ids a file holds.
_REPLACES = b"archbench.replaces"
_RUNS = b"archbench.runs"


@dataclass(frozen=True)
class AddResult:
    """What an append did: rows written, rows skipped as already stored, runs touched."""

    added: int
    skipped: int
    runs: tuple[str, ...] = ()
    file: str | None = None


@dataclass(frozen=True)
class Accepted:
    """A change marked accepted at `commit`, for the cases matching `cases` (all when empty)."""

    commit: str
    cases: tuple[str, ...] = ()
    at: str = ""
    note: str = ""

    def covers(self, name: str, case_id: str) -> bool:
        return not self.cases or any(matches(name, case_id, p) for p in self.cases)


#: Metrics a run records once per case that the history analyses besides the timing: the
#: whole case's peak RSS, the CUDA allocator's peak in the timed window, instructions per
#: call (counted runs). Their thresholds are the gate's (memory 10%, counts 0.5%).
EXTRA_METRICS = ("peak_rss_bytes", "cuda_max_allocated_timed_bytes", "instructions_per_call")


@dataclass(frozen=True)
class PointQuery:
    """Which points to read: a case pattern (substring or glob of the name, or a case_id),
    one branch, dirty working trees or not, one environment fingerprint (prefix), the newest
    commits only."""

    patterns: tuple[str, ...] = ()
    branch: str | None = None
    include_dirty: bool = False
    fingerprint: str | None = None
    #: Only the newest this many commits (0: all), as a window for long histories.
    last_commits: int = 0
    #: Whether the timing is read (`points`).
    timing: bool = True
    #: Metrics read besides the timing (memory peaks, instruction counts: `metric_points`).
    metrics: tuple[str, ...] = ()


def require() -> None:
    """The history's own dependencies (the `history` extra), or an error saying how to get
    them: DuckDB queries the store."""
    import importlib.util

    if importlib.util.find_spec("duckdb") is None:
        raise BenchError("archbench history needs duckdb; install it with "
                         "pip install 'archbench[history]'")


def matches(name: str, case_id: str, pattern: str) -> bool:
    """The case selection rule of `archbench run --filter`, on names: substring or glob, or
    the exact case_id."""
    if pattern == case_id:
        return True
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name


class HistoryStore:
    """A history store folder. `create=True` makes one where there is none."""

    def __init__(self, path: str | Path, *, create: bool = False) -> None:
        require()
        self.path = Path(path)
        marker = self.path / MARKER
        if not marker.is_file():
            if not create:
                raise ResultsError(f"{self.path}: no history store here (no {MARKER}); "
                                   "create one with `archbench history add --store "
                                   f"{self.path} RUN`")
            if self.path.exists() and any(self.path.iterdir()):
                raise ResultsError(f"{self.path}: the folder exists and is not a history "
                                   "store; give an empty or new folder")
            (self.path / DATA).mkdir(parents=True, exist_ok=True)
            _write_json_atomic(marker, {"format": FORMAT,
                                        "created_at": datetime.now(UTC).isoformat()})
        try:
            info = json.loads(marker.read_text())
            version = int(info["format"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ResultsError(f"{marker}: damaged store marker ({exc}); it should hold "
                               f'{{"format": {FORMAT}}}') from None
        if version > FORMAT:
            raise ResultsError(f"{self.path}: history store format {version} is newer than "
                               f"this archbench understands ({FORMAT}); upgrade archbench")
        (self.path / DATA).mkdir(exist_ok=True)

    # ---- files ------------------------------------------------------------------------------
    def live_files(self) -> list[Path]:
        """The data files a reader counts: every `*.parquet`, less those a live compacted file
        replaces (left behind by a crash between writing the merge and deleting its inputs)."""
        return list(self._live_index())

    def _live_index(self) -> dict[Path, frozenset[str]]:
        """Live files and the run ids each holds, both from the files' own metadata."""
        import pyarrow.parquet as pq

        files = sorted((self.path / DATA).glob("L*.parquet"))
        replaced: set[str] = set()
        runs: dict[Path, frozenset[str]] = {}
        for file in files:
            meta = pq.read_metadata(file).metadata or {}
            replaced.update(json.loads(meta.get(_REPLACES, b"[]")))
            runs[file] = frozenset(json.loads(meta.get(_RUNS, b"[]")))
        return {f: r for f, r in runs.items() if f.name not in replaced}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path / LOCK, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with a `records` view over the live files (empty but typed when
        the store has none), for the queries below and for users' own."""
        import duckdb

        from bench.history.rows import schema

        con = duckdb.connect()
        files = self.live_files()
        if files:
            names = ", ".join(f"'{_sql_text(str(f))}'" for f in files)
            con.execute(f"CREATE VIEW records AS SELECT * FROM read_parquet([{names}], "
                        "union_by_name = true)")
        else:
            con.register("records_empty", schema().empty_table())
            con.execute("CREATE VIEW records AS SELECT * FROM records_empty")
        return con

    # ---- writing ----------------------------------------------------------------------------
    def add(self, rows: Sequence[Mapping[str, Any]]) -> AddResult:
        """Append rows (see bench.history.rows); rows already stored are skipped."""
        from bench.history.rows import to_table

        if not rows:
            return AddResult(added=0, skipped=0)
        run_ids = sorted({str(r["run_id"]) for r in rows})
        with self._locked():
            index = self._live_index()
            self._clean(index)
            have = self._stored_keys(run_ids, index)
            fresh: list[Mapping[str, Any]] = []
            seen: set[tuple[str, str]] = set()
            for row in rows:
                key = (str(row["run_id"]), str(row["case_id"]))
                if key not in have and key not in seen:
                    fresh.append(row)
                    seen.add(key)
            written = None
            if fresh:
                runs = sorted({str(r["run_id"]) for r in fresh})
                written = self._write(to_table(fresh), level=0, runs=runs)
                index[written] = frozenset(runs)
                self._compact(index)
        return AddResult(added=len(fresh), skipped=len(rows) - len(fresh),
                         runs=tuple(run_ids), file=written.name if written else None)

    def _stored_keys(self, run_ids: list[str],
                     index: Mapping[Path, frozenset[str]]) -> set[tuple[str, str]]:
        """(run_id, case_id) already stored for these runs; only files whose metadata lists
        one of the runs are read, so appending a new run reads no data at all."""
        import duckdb

        wanted = set(run_ids)
        files = [f for f, runs in index.items() if runs & wanted]
        if not files:
            return set()
        found = duckdb.connect().execute(
            "SELECT DISTINCT run_id, case_id FROM read_parquet(?, union_by_name = true) "
            "WHERE list_contains(?, run_id)", [[str(f) for f in files], run_ids]).fetchall()
        return {(str(a), str(b)) for a, b in found}

    def _write(self, table: Any, *, level: int, runs: Sequence[str]) -> Path:
        import pyarrow.parquet as pq

        final = self._new_name(level)
        tmp = final.with_name(f".{final.name}.tmp")
        table = table.replace_schema_metadata({_RUNS: json.dumps(list(runs)).encode()})
        pq.write_table(table, tmp, compression="zstd")
        _fsync(tmp)
        os.replace(tmp, final)
        _fsync(final.parent)
        return final

    def _new_name(self, level: int) -> Path:
        return self.path / DATA / f"L{level}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"

    def _compact(self, index: dict[Path, frozenset[str]]) -> None:
        """Merge COMPACT_AT files of a level into one of the next, level by level."""
        import duckdb

        level = 0
        while True:
            files = [f for f in index if f.name.startswith(f"L{level}-")]
            if len(files) < COMPACT_AT:
                return
            final = self._new_name(level + 1)
            tmp = final.with_name(f".{final.name}.tmp")
            meta = {_REPLACES.decode(): json.dumps([f.name for f in files]),
                    _RUNS.decode(): json.dumps(sorted(set().union(*(index[f] for f in files))))}
            options = ", ".join(f"'{k}': '{_sql_text(v)}'" for k, v in meta.items())
            duckdb.connect().execute(
                "COPY (SELECT * FROM read_parquet(?, union_by_name = true)) "
                f"TO '{_sql_text(str(tmp))}' (FORMAT parquet, COMPRESSION zstd, "
                f"KV_METADATA {{{options}}})", [[str(f) for f in files]])
            _fsync(tmp)
            os.replace(tmp, final)
            _fsync(final.parent)
            index[final] = frozenset(json.loads(meta[_RUNS.decode()]))
            for file in files:
                file.unlink(missing_ok=True)
                del index[file]
            level += 1

    def _clean(self, index: Mapping[Path, frozenset[str]]) -> None:
        """Under the lock: remove what a crashed writer left (temporary files, and inputs a
        finished merge replaced)."""
        for file in (self.path / DATA).iterdir():
            if file.name.endswith(".tmp") or (file.suffix == ".parquet" and file not in index):
                file.unlink(missing_ok=True)

    # ---- reading ----------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Counts for `history show`'s header: rows, runs, commits, series, environments."""
        con = self.connect()
        rows, runs, commits, series, envs = con.execute(
            "SELECT count(*), count(DISTINCT run_id), count(DISTINCT commit), "
            "count(DISTINCT (fingerprint, case_id)), count(DISTINCT fingerprint) "
            "FROM records").fetchone() or (0, 0, 0, 0, 0)
        size = sum(f.stat().st_size for f in (self.path / DATA).glob("*.parquet"))
        return {"rows": rows, "runs": runs, "commits": commits, "series": series,
                "environments": envs, "files": len(self.live_files()), "bytes": size}

    def points(self, query: PointQuery = PointQuery()) -> pd.DataFrame:
        """One row per series (environment fingerprint x case) and commit, oldest first.

        Runs of the same commit pool their per-repeat medians: `log_level` is the mean of
        their logs, `se_log` its standard error (a single run keeps its own: from its
        repeats, or its median's interval); `low_ms`/`high_ms` the 95% band drawn around it.
        """
        where, params = self._filters(query, "level_ms > 0")
        con = self.connect()
        # Runs of one commit are pooled from their per-run figures (no unnest): a run's
        # level is the geometric mean of its n repeats, so the pooled log level is the
        # n-weighted mean, and the pooled spread adds the runs' own spreads (se^2 n (n - 1)
        # is their sum of squares) to the spread between the runs.
        sql = f"""
            WITH r AS (SELECT fingerprint, case_id, commit, commit_time, run_started_at, name,
                              environment, branch, dirty, run_id, ln(level_ms) AS l,
                              greatest(coalesce(n_repeats, 1), 1) AS n,
                              coalesce(se_log, 0) AS se
                       FROM records WHERE {' AND '.join(where)}),
            a AS (SELECT fingerprint, case_id, commit, min(commit_time) AS commit_time,
                         min(run_started_at) AS first_run,
                         arg_max(name, run_started_at) AS name,
                         arg_max(environment, run_started_at) AS environment,
                         arg_max(branch, run_started_at) AS branch, bool_or(dirty) AS dirty,
                         count(DISTINCT run_id) AS runs, sum(n) AS n_repeats,
                         sum(n * l) / sum(n) AS log_level,
                         sum(se * se * n * (n - 1)) + sum(n * l * l)
                             - sum(n * l) * sum(n * l) / sum(n) AS ss,
                         min(se) AS se_one
                  FROM r GROUP BY ALL)
            SELECT fingerprint, environment, case_id, name, commit, commit_time, branch, dirty,
                   runs, n_repeats, log_level,
                   CASE WHEN n_repeats >= 2 AND runs >= 2
                        THEN sqrt(greatest(ss, 0) / (n_repeats - 1) / n_repeats)
                        ELSE se_one END AS se_log, first_run
            FROM a
            ORDER BY fingerprint, case_id, commit_time, first_run, commit"""
        frame = self._matching(con.execute(sql, params).df(), query)
        import numpy as np

        frame["se_log"] = frame["se_log"].astype(float).fillna(0.0)
        frame["level_ms"] = np.exp(frame["log_level"])
        frame["low_ms"] = np.exp(frame["log_level"] - 1.959964 * frame["se_log"])
        frame["high_ms"] = np.exp(frame["log_level"] + 1.959964 * frame["se_log"])
        return frame

    def metric_points(self, query: PointQuery = PointQuery()) -> pd.DataFrame:
        """Like `points`, for metrics a run records once per case (memory peaks, instruction
        counts: the rows' `metrics`; those of `query.metrics`), one row per series, metric
        and commit: `log_level` the
        mean of the runs' logs, `se_log` its standard error between runs (0 for one run),
        `metric` the metric's name. Rows of runs that did not record the metric are left
        out, so a store without memory figures costs one query."""
        import numpy as np
        import pandas as pd

        metrics = query.metrics
        if not metrics:
            return pd.DataFrame()
        where, params = self._filters(query, "metrics IS NOT NULL")
        values = ", ".join(
            f"TRY_CAST(json_extract_string(metrics, '$.\"{_sql_text(m)}\"') AS DOUBLE)"
            for m in metrics)
        names = ", ".join(f"'{_sql_text(m)}'" for m in metrics)
        sql = f"""
            WITH r AS (SELECT fingerprint, case_id, commit, commit_time, run_started_at, name,
                              environment, run_id,
                              unnest([{names}]) AS metric, unnest([{values}]) AS v
                       FROM records WHERE {' AND '.join(where)}),
            a AS (SELECT fingerprint, case_id, metric, commit, min(commit_time) AS commit_time,
                         min(run_started_at) AS first_run,
                         arg_max(name, run_started_at) AS name,
                         arg_max(environment, run_started_at) AS environment,
                         count(DISTINCT run_id) AS runs, avg(ln(v)) AS log_level,
                         coalesce(stddev_samp(ln(v)) / sqrt(count(*)), 0) AS se_log
                  FROM r WHERE v > 0 GROUP BY ALL)
            SELECT fingerprint, environment, case_id, name, metric, commit, commit_time, runs,
                   runs AS n_repeats, log_level, se_log, first_run
            FROM a
            ORDER BY fingerprint, case_id, metric, commit_time, first_run, commit"""
        frame = self._matching(self.connect().execute(sql, params).df(), query)
        frame["level_ms"] = np.exp(frame["log_level"])
        frame["low_ms"] = np.exp(frame["log_level"] - 1.959964 * frame["se_log"])
        frame["high_ms"] = np.exp(frame["log_level"] + 1.959964 * frame["se_log"])
        return frame

    def _filters(self, query: PointQuery, present: str) -> tuple[list[str], list[Any]]:
        """SQL conditions (and their parameters) of a point query."""
        where = ["status = 'ok'", present]
        params: list[Any] = []
        if not query.include_dirty:
            where.append("NOT coalesce(dirty, false)")
        if query.branch:
            where.append("branch = ?")
            params.append(query.branch)
        if query.fingerprint:
            where.append("starts_with(fingerprint, ?)")
            params.append(query.fingerprint)
        if query.last_commits:
            where.append("commit IN (SELECT commit FROM records GROUP BY commit "
                         "ORDER BY min(commit_time) DESC, commit DESC LIMIT ?)")
            params.append(int(query.last_commits))
        return where, params

    @staticmethod
    def _matching(frame: pd.DataFrame, query: PointQuery) -> pd.DataFrame:
        """The rows of the cases the query's patterns select."""
        if query.patterns and not frame.empty:
            names = frame[["name", "case_id"]].drop_duplicates()
            keep = {(n, c) for n, c in names.itertuples(index=False)
                    if any(matches(n, c, p) for p in query.patterns)}
            mask = [(n, c) in keep for n, c in zip(frame["name"], frame["case_id"], strict=True)]
            frame = frame[mask].reset_index(drop=True)
        return frame

    def commits(self) -> list[tuple[str, datetime]]:
        """Every commit in the store with its time, oldest first."""
        con = self.connect()
        return [(str(c), t) for c, t in con.execute(
            "SELECT commit, min(commit_time) AS t FROM records GROUP BY commit "
            "ORDER BY t, commit").fetchall()]

    # ---- accepted changes -------------------------------------------------------------------
    def accepted(self) -> list[Accepted]:
        path = self.path / ACCEPTED
        if not path.is_file():
            return []
        try:
            data = json.loads(path.read_text())
            return [Accepted(commit=str(a["commit"]), cases=tuple(a.get("cases") or ()),
                             at=str(a.get("at") or ""), note=str(a.get("note") or ""))
                    for a in data["accepted"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ResultsError(f"{path}: damaged list of accepted changes ({exc}); fix or "
                               "remove the file") from None

    def accept(self, commit: str, cases: Iterable[str] = (), note: str = "") -> Accepted:
        """Mark the change at `commit` (a full sha or a unique prefix) as accepted."""
        sha = self.resolve_commit(commit)
        entry = Accepted(commit=sha, cases=tuple(cases), at=datetime.now(UTC).isoformat(),
                         note=note)
        with self._locked():
            entries = [*self.accepted(), entry]
            _write_json_atomic(self.path / ACCEPTED, {"format": FORMAT, "accepted": [
                {"commit": a.commit, "cases": list(a.cases), "at": a.at, "note": a.note}
                for a in entries]})
        return entry

    def resolve_commit(self, ref: str) -> str:
        known = [c for c, _ in self.commits()]
        hits = [c for c in known if c.startswith(ref)] if len(ref) >= 4 else []
        if len(hits) == 1:
            return hits[0]
        recent = ", ".join(c[:12] for c in known[-5:]) or "none yet"
        if len(hits) > 1:
            raise ResultsError(f'commit "{ref}" is ambiguous in {self.path} '
                               f"({len(hits)} commits start with it); give more of it")
        raise ResultsError(f'commit "{ref}" is not in {self.path} (the newest are: {recent}); '
                           "give a commit the store has runs of (at least 4 characters)")


def _sql_text(text: str) -> str:
    """Text inside a single-quoted SQL literal."""
    return text.replace("'", "''")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(dict(data), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _fsync(tmp)
    os.replace(tmp, path)
