"""Reading run folders into a `ReportInput` (the report's only I/O, kept out of rendering)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.errors import ResultsError
from bench.report.model import ReportInput, RunData
from bench.results import RESULTS_FILE, load, read_run


def run_folder(path: str | Path) -> Path:
    """A run folder from a folder or its results.jsonl; a clear error for anything else."""
    path = Path(path)
    if path.is_file() and path.name == RESULTS_FILE:
        return path.parent
    if not path.exists():
        raise ResultsError(f"{path}: no such run folder; pass folders made by `archbench run`, "
                           "e.g. reports/runs/<run-id>")
    return path


def load_run(path: str | Path) -> RunData:
    folder = run_folder(path)
    meta = read_run(folder)
    frame = load(folder)
    return RunData(label=str(meta.get("run_id") or folder.name), frame=frame, meta=meta,
                   path=str(folder))


def load_report_input(paths: Sequence[str | Path], *, title: str | None = None) -> ReportInput:
    """The runs at `paths`, in order (the first is the baseline of any comparison)."""
    if not paths:
        raise ResultsError("no run folder given; pass one or more, e.g. reports/runs/<run-id>")
    runs = [load_run(p) for p in paths]
    labels = [r.label for r in runs]
    if len(set(labels)) < len(labels):  # the same run twice, or two copies of one folder
        runs = [RunData(f"{r.label} ({i + 1})", r.frame, r.meta, r.path) if labels.count(r.label)
                > 1 else r for i, r in enumerate(runs)]
    return ReportInput(runs=tuple(runs), title=title)
