"""Reports of runs: one self-contained interactive HTML file, a markdown summary, or the flat
results table as CSV/Parquet.

Reports read DataFrames (`bench.load`) and never measure. Sections appear only when the data
supports them, so a plain CPU run gives a shorter report than a sweep with pruning, precisions
and GPU telemetry.

    from bench.report import load_report_input, html_report
    report = load_report_input(["reports/runs/20261123-221354-quickstart"])
    Path("report.html").write_text(html_report(report))
"""

from __future__ import annotations

from bench.report.html import render_html, write_html
from bench.report.load import load_frame, load_report_input
from bench.report.model import ComparisonData, ReportInput, RunFrame, Section
from bench.report.sections import build_sections

__all__ = [
    "ComparisonData",
    "ReportInput",
    "RunFrame",
    "Section",
    "build_sections",
    "html_report",
    "load_frame",
    "load_report_input",
    "render_html",
    "write_html",
]


def html_report(report: ReportInput, *, generated_at: str | None = None) -> str:
    """The report as one self-contained HTML page."""
    return render_html(report, build_sections(report), generated_at=generated_at)
