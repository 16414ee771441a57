"""What a report is made of: the runs it reads, and the sections drawn from them.

`ReportInput` holds DataFrames (and the comparison frames of `bench.gate.compare`) only; sections
are built from it by pure functions and rendered to HTML or markdown elsewhere. Nothing here
measures or reads files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pandas as pd

from bench.decide import Question
from bench.report.chart_data import latest_per_case


@dataclass(frozen=True, eq=False)
class RunFrame:
    """One run: its results frame (`bench.load`) and its run.json (empty for made-up frames)."""

    label: str
    frame: pd.DataFrame
    meta: Mapping[str, Any] = field(default_factory=dict)
    path: str | None = None

    @property
    def env(self) -> Mapping[str, Any]:
        return dict(self.meta.get("env") or {})


@dataclass(frozen=True, eq=False)
class ComparisonData:
    """One baseline-vs-candidate comparison, as `bench.gate.compare.Comparison` gives it.

    `error` holds why the comparison was refused (different machines...), so the report can
    say so instead of failing.
    """

    baseline: str
    candidate: str
    frame: pd.DataFrame
    only_in_baseline: tuple[str, ...] = ()
    only_in_candidate: tuple[str, ...] = ()
    env_mismatch: Mapping[str, Any] | None = None
    correction: str = ""
    error: str | None = None
    #: What a reader must know before trusting the verdicts (single-worker drift, cases the
    #: run could not decide and the smallest change it could have seen), as the CLI says it.
    caveats: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class ReportInput:
    runs: tuple[RunFrame, ...]
    comparisons: tuple[ComparisonData, ...] = ()
    title: str | None = None
    #: The architect's question (`archbench best`): with constraints, the report opens with
    #: its answer.
    question: Question | None = None
    #: A history store's series and findings (`bench.history.History`), for the trend section.
    history: Any = None

    @cached_property
    def frame(self) -> pd.DataFrame:
        """One row per case across the runs (the last run's row where a case repeats): what
        the single-run sections draw."""
        return latest_per_case([r.frame for r in self.runs])

    @cached_property
    def all_rows(self) -> pd.DataFrame:
        """Every row of every run, with a `run` column naming its run (the results table)."""
        frames = [r.frame.assign(run=r.label) for r in self.runs if not r.frame.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    @property
    def display_title(self) -> str:
        if self.title:
            return self.title
        labels = [r.label for r in self.runs]
        return " vs ".join(labels) if len(labels) <= 3 else f"{len(labels)} runs"


# ---- what sections are made of --------------------------------------------------------------
@dataclass(frozen=True)
class Html:
    """A fragment of markup built by the report code; every data string in it is escaped."""

    markup: str


@dataclass(frozen=True, eq=False)
class Chart:
    """A plotly figure (as its JSON-ready dict) and an optional caption (escaped markup)."""

    key: str
    figure: Mapping[str, Any]
    caption: str = ""


Block = Html | Chart


@dataclass(frozen=True, eq=False)
class Section:
    key: str
    title: str
    blocks: tuple[Block, ...]

    @property
    def charts(self) -> list[Chart]:
        return [b for b in self.blocks if isinstance(b, Chart)]
