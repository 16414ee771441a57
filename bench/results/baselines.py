"""Named baselines: save a run folder under a name, find one by name, list them.

A baseline is a copy of a run folder (`run.json` + `results.jsonl`; logs and traces are left
behind) under `<baselines dir>/<NAME>/`, plus a `baseline.json` saying where it came from.
The folder is `.archbench/baselines` in the current directory unless `--baselines-dir` or
`$ARCHBENCH_BASELINES` says otherwise: one small folder that a CI cache or artifact can carry
from the main branch's job to a pull request's.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.errors import CompareError, ResultsError
from bench.files import read_text
from bench.results.store import (
    RESULTS_FILE,
    RUN_FILE,
    RunData,
    load_run,
    loads,
    read_records,
    read_run,
    write_json_atomic,
)

BASELINES_ENV = "ARCHBENCH_BASELINES"
BASELINES_DIR_HELP = (f"where named baselines live (default ${BASELINES_ENV} or "
                      ".archbench/baselines)")
DEFAULT_BASELINES_DIR = Path(".archbench") / "baselines"
BASELINE_FILE = "baseline.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def baselines_dir(override: str | Path | None = None) -> Path:
    """The baselines folder: the option, else $ARCHBENCH_BASELINES, else .archbench/baselines."""
    if override:
        return Path(override)
    return Path(os.environ.get(BASELINES_ENV) or DEFAULT_BASELINES_DIR)


def resolve(ref: str | Path, directory: Path) -> RunData:
    """A run folder path, or the name of a saved baseline."""
    path = Path(ref)
    if path.exists():
        return load_run(path)
    name = str(ref)
    if _NAME.match(name) and (directory / name / RUN_FILE).is_file():
        data = load_run(directory / name)
        return RunData(records=data.records, env=data.env, label=f"baseline {name}",
                       path=data.path, meta=data.meta)
    known = [b["name"] for b in list_baselines(directory)]
    listed = ", ".join(known) if known else "none saved yet"
    raise CompareError(f'"{ref}" is neither a run folder nor a baseline in {directory} '
                       f"(baselines: {listed}); save one with `archbench baseline save RUN "
                       "--name NAME`")


def save(run: str | Path, name: str, directory: Path) -> dict[str, Any]:
    """Copy a run folder into the baselines folder as NAME, replacing an older one atomically.

    Returns the baseline's description (what `list_baselines` shows), with `replaced` set to
    the run id it replaced, if any.
    """
    if not _NAME.match(name):
        raise CompareError(f'baseline name "{name}" must start with a letter or digit and hold '
                           "only letters, digits, '.', '_' and '-' (it becomes a folder name)")
    source = load_run(run)
    assert source.path is not None
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    previous = describe(target) if (target / RUN_FILE).is_file() else None
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=directory))
    try:
        for file in (RUN_FILE, RESULTS_FILE):
            shutil.copy2(source.path / file, staging / file)
        info = {"name": name, "saved_at": datetime.now(UTC).isoformat(),
                "source": str(source.path.resolve()), "run_id": source.meta.get("run_id")}
        write_json_atomic(staging / BASELINE_FILE, info)
        if target.exists():
            old = target.with_name(f".{name}-old-{os.getpid()}")
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    out = describe(target)
    out["replaced"] = previous["run_id"] if previous else None
    return out


def describe(folder: Path) -> dict[str, Any]:
    """Name, source run, when saved, suites, case counts and the machine of a baseline."""
    meta = read_run(folder)
    info: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):  # a hand-copied folder may lack it
        info = _read_json(folder / BASELINE_FILE)
    records = list(read_records(folder / RESULTS_FILE))
    env = meta.get("env") or {}
    return {
        "name": folder.name,
        "path": str(folder),
        "run_id": meta.get("run_id"),
        "saved_at": info.get("saved_at"),
        "suites": [s.get("name") for s in meta.get("suites") or []],
        "cases": len(records),
        "ok": sum(r.status == "ok" for r in records),
        "status": meta.get("status"),
        "cpu_model": env.get("cpu_model"),
        "gpus": [g.get("name") for g in env.get("gpus") or []],
        "torch_version": env.get("torch_version"),
        "git_commit": env.get("git_commit"),
    }


def list_baselines(directory: Path) -> list[dict[str, Any]]:
    if not directory.is_dir():
        return []
    out = []
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        if folder.name.startswith(".") or not (folder / RUN_FILE).is_file():
            continue
        try:
            out.append(describe(folder))
        except ResultsError as exc:
            out.append({"name": folder.name, "path": str(folder), "error": str(exc)})
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = loads(read_text(path))
    except (ValueError, RecursionError) as exc:
        raise ResultsError(f"{path}: damaged ({str(exc)[:200]})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: damaged (not a JSON object)")
    return data
