"""The run folder on disk: `run.json` (what ran, where, when) and `results.jsonl` (one record
per case, appended and fsynced as each case ends, so a crash or Ctrl-C loses nothing finished).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchWarning, ResultsError
from bench.plain import plain
from bench.results.record import Record

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"


# ---- store ----------------------------------------------------------------------------------
class ResultsStore:
    """Appends records to a run folder's results.jsonl, durably, one line per case."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / RESULTS_FILE
        self._drop_torn_tail()
        self.path.touch()

    def append(self, record: Record) -> None:
        line = json.dumps(record.to_dict(), separators=(",", ":"), allow_nan=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def _drop_torn_tail(self) -> None:
        """A record cut off mid-write (kill -9, power loss) is incomplete: drop it before
        appending, so it cannot glue onto the next record. Its case is simply redone."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            warnings.warn(f"{self.path}: dropped a truncated last record "
                          f"({len(data) - keep} bytes); its case will run again",
                          BenchWarning, stacklevel=2)
            with open(self.path, "rb+") as fh:
                fh.truncate(keep)

    def records(self) -> list[Record]:
        return list(read_records(self.path))

    def write_run(self, meta: Mapping[str, Any]) -> None:
        write_json_atomic(self.run_dir / RUN_FILE, meta)

    def read_run(self) -> dict[str, Any]:
        return read_run(self.run_dir)


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(plain(dict(data)), indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def read_run(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ResultsError(f"{run_dir}: not a run folder (no {RUN_FILE}); point at a folder "
                           "made by `archbench run`, e.g. reports/runs/<run-id>") from None
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: damaged run file: {exc}") from None


def read_records(path: str | Path) -> Iterator[Record]:
    """Records of a results.jsonl. A torn last line (the writer was killed mid-write) is
    skipped with a warning; damage anywhere else is an error naming the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{path}: no results file; is this a run folder?") from None
    lines = text.split("\n")
    torn_tail = not text.endswith("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            yield Record.from_dict(data)
        except (ValueError, TypeError, KeyError) as exc:
            is_last = number == len(lines)
            if is_last and torn_tail:
                warnings.warn(f"{path}:{number}: skipped a truncated last record (the run was "
                              "cut off while writing it)", BenchWarning, stacklevel=2)
                continue
            raise ResultsError(f"{path}:{number}: damaged record ({exc}); remove or fix that "
                               "line to read the rest") from None


def run_folder(path: str | Path) -> Path:
    """The run folder a path names: the folder itself, or the folder of its results.jsonl.
    The one place a "run folder or results file" argument is resolved."""
    path = Path(path)
    if path.is_file() and path.name == RESULTS_FILE:
        return path.parent
    if not path.is_dir():
        raise ResultsError(f"{path}: no such run folder (no results file there); give a folder "
                           f"made by `archbench run` (e.g. reports/runs/<run-id>) or its "
                           f"{RESULTS_FILE}")
    return path


def results_file(path: str | Path) -> Path:
    """The results file of a run folder; a file path is taken as the results file itself."""
    path = Path(path)
    return path if path.is_file() else run_folder(path) / RESULTS_FILE


def load_records(paths: str | Path | Iterable[str | Path]) -> list[Record]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Record] = []
    for p in paths:
        out += read_records(results_file(p))
    return out




@dataclass(frozen=True)
class RunData:
    """A run as the gate reads it: its records and its environment (None when unknown)."""

    records: tuple[Record, ...]
    env: dict[str, Any] | None = None
    label: str = ""
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def load_run(path: str | Path) -> RunData:
    """A run folder (or its results.jsonl) with its records and run.json."""
    folder = run_folder(path)
    meta = read_run(folder)
    records = tuple(read_records(folder / RESULTS_FILE))
    env = meta.get("env")
    return RunData(records=records, env=dict(env) if isinstance(env, dict) else None,
                   label=str(meta.get("run_id") or folder.name), path=folder, meta=meta)
