"""The report's sections, in the order shown. Each builder takes the `ReportInput` and returns
a `Section`, or None when the data does not support it (a plain CPU run has no pruning, no
telemetry...), so a report only ever shows what its runs measured."""

from __future__ import annotations

from collections.abc import Callable

from bench.report.model import ReportInput, Section
from bench.report.sections import (
    comparison,
    distributions,
    generation,
    profile,
    recommendation,
    resources,
    scaling,
    summary,
    table,
    tradeoffs,
    transforms,
    trend,
)

SectionBuilder = Callable[[ReportInput], Section | None]

SECTION_BUILDERS: tuple[SectionBuilder, ...] = (
    recommendation.build,
    summary.build,
    comparison.build,
    trend.build,
    table.build,
    scaling.build,
    generation.build,
    transforms.build_pruning,
    transforms.build_precision,
    tradeoffs.build,
    resources.build,
    profile.build,
    distributions.build,
    table.build_failures,
)


def build_sections(report: ReportInput) -> list[Section]:
    return [s for s in (build(report) for build in SECTION_BUILDERS) if s is not None]
