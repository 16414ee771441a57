"""Reading run folders into a `ReportInput` (the report's only I/O, kept out of rendering)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.decide import Question
from bench.errors import CompareError, ResultsError
from bench.gate import render
from bench.gate.compare import FRAME_COLUMNS, CompareOptions, compare_runs
from bench.report.model import ComparisonData, ReportInput, RunFrame
from bench.results.frame import load
from bench.results.store import read_run, run_folder

if TYPE_CHECKING:
    import pandas as pd


def load_frame(path: str | Path) -> RunFrame:
    folder = run_folder(path)
    meta = read_run(folder)
    frame = load(folder)
    return RunFrame(label=str(meta.get("run_id") or folder.name), frame=frame, meta=meta,
                   path=str(folder))


def compare(baseline: RunFrame, candidate: RunFrame) -> ComparisonData:
    """The gate's comparison of two runs, for the report.

    Runs from different machines or builds are still compared here (a report may well put a
    laptop beside a server), and the mismatch is carried along so the report says plainly that
    the verdicts then compare environments, not code. Any other refusal becomes the reason
    shown in place of the comparison.
    """
    assert baseline.path is not None and candidate.path is not None
    try:
        result = compare_runs(baseline.path, candidate.path,
                              CompareOptions(allow_env_mismatch=True))
    except CompareError as exc:
        return ComparisonData(baseline.label, candidate.label, frame=_empty_comparison(),
                              error=str(exc))
    return ComparisonData(baseline.label, candidate.label, frame=result.to_frame(),
                          only_in_baseline=result.only_in_baseline,
                          only_in_candidate=result.only_in_candidate,
                          env_mismatch=result.env_mismatch, correction=result.correction,
                          caveats=(*render.drift_lines(result),
                                   *render.inconclusive_lines(result)))


def _empty_comparison() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns=list(FRAME_COLUMNS))


def load_report_input(paths: Sequence[str | Path], *, title: str | None = None,
                      question: Question | None = None) -> ReportInput:
    """The runs at `paths`, in order. With several, each later run is compared with the
    first (the baseline) by `bench.gate.compare`. Without a `question`, the first a run's
    suites asked (their `[decide]` table) is answered."""
    if not paths:
        raise ResultsError("no run folder given; pass one or more, e.g. reports/runs/<run-id>")
    runs = [load_frame(p) for p in paths]
    labels = [r.label for r in runs]
    if len(set(labels)) < len(labels):  # the same run twice, or two copies of one folder
        runs = [RunFrame(f"{r.label} ({i + 1})", r.frame, r.meta, r.path) if labels.count(r.label)
                > 1 else r for i, r in enumerate(runs)]
    comparisons = tuple(compare(runs[0], run) for run in runs[1:])
    if question is None:
        question = next((q for q in map(question_from_meta, (r.meta for r in runs)) if q), None)
    return ReportInput(runs=tuple(runs), comparisons=comparisons, title=title,
                       question=question)


def question_from_meta(meta: Mapping[str, Any]) -> Question | None:
    """The question of the first suite of a run that has a `[decide]` table (run.json keeps
    each suite's, as validated when it was loaded)."""
    for suite in meta.get("suites") or []:
        table = suite.get("decide") if isinstance(suite, Mapping) else None
        if table:
            return Question(objective=table.get("objective", "median_ms"),
                            constraints=tuple(table.get("constraints") or ()),
                            top=int(table.get("top", 5)),
                            confidence=float(table.get("confidence", 0.95)))
    return None
