"""The run folder on disk: `run.json` (what ran, where, when) and `results.jsonl` (one record
per case, appended and fsynced as each case ends, so a crash or Ctrl-C loses nothing finished).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchWarning, ResultsError
from bench.files import problem, read_text
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
        """Add one line and fsync it. A write that fails part-way (disk full, file-size
        limit) is cut back off, so the file never ends in half a record."""
        data = (json.dumps(record.to_dict(), separators=(",", ":"), allow_nan=False)
                + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise problem(exc, self.path) from exc
        finally:
            os.close(fd)


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
    """Write a JSON file so readers see the old or the new content, never half of one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    text = json.dumps(plain(dict(data)), indent=2, sort_keys=True, default=str) + "\n"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise problem(exc, path) from exc


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """A run folder's run.json: an object whose `env`, when present, is an object too."""
    path = Path(run_dir) / RUN_FILE
    try:
        data = loads(read_text(path))
    except FileNotFoundError:
        raise ResultsError(f"{run_dir}: not a run folder (no {RUN_FILE}); point at a folder "
                           "made by `archbench run`, e.g. reports/runs/<run-id>") from None
    except (ValueError, RecursionError) as exc:
        raise ResultsError(f"{path}: damaged run file ({_short(exc)}); restore it from the "
                           "run's copy or rerun") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: damaged run file (a JSON {json_type(data)}, not an "
                           "object); restore it or rerun")
    if "env" in data and not isinstance(data["env"], dict):
        raise ResultsError(f"{path}: damaged run file (`env` is not an object); restore it or "
                           "rerun")
    return data


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def loads(text: str) -> Any:
    """json.loads for archbench's files; a string holding half a surrogate pair (legal JSON,
    but not text: it cannot be written back as UTF-8) is a ValueError like any damage."""
    data = json.loads(text)
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string holds an unpaired surrogate escape") from None
    return data


def json_type(value: Any) -> str:
    """JSON's name for the type of a decoded value, for messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
             float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _short(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).splitlines()[0][:200]




def read_records(path: str | Path) -> Iterator[Record]:
    """Records of a results.jsonl. A torn last line (the writer was killed mid-write) is
    skipped with a warning; damage anywhere else is an error naming the line."""
    path = Path(path)
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise ResultsError(f"{path}: no results file; is this a run folder?") from None
    lines = text.split("\n")
    torn_tail = not text.endswith("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = loads(line)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            yield Record.from_dict(data)
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            is_last = number == len(lines)
            if is_last and torn_tail:
                warnings.warn(f"{path}:{number}: skipped a truncated last record (the run was "
                              "cut off while writing it)", BenchWarning, stacklevel=2)
                continue
            raise ResultsError(f"{path}:{number}: damaged record ({_short(exc)}); remove or fix "
                               "that line to read the rest") from None


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
    if not isinstance(env, dict):
        raise ResultsError(f"{folder / RUN_FILE}: no `env` (the machine and software the run "
                           "measured on), so the gate cannot check the runs are comparable; "
                           "the file is damaged or hand-written: restore it from a copy, or "
                           "run the suite again")
    return RunData(records=records, env=dict(env),
                   label=str(meta.get("run_id") or folder.name), path=folder, meta=meta)
