"""The answer first: when the report is asked a question (an objective under constraints),
the best configuration, how sure, the ties, the near misses and why they missed."""

from __future__ import annotations

from collections.abc import Sequence

from bench.decide import DecideError, Question, decide
from bench.decide import render as text
from bench.decide.answer import Answer
from bench.report.model import Html, ReportInput, Section
from bench.report.style import esc


def _table(columns: Sequence[str], rows: list[list[str]], *, first_bold: bool = False) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for index, row in enumerate(rows):
        cells = "".join(f"<td>{esc(c)}</td>" for c in row)
        style = ' class="best"' if first_bold and index == 0 else ""
        body.append(f"<tr{style}>{cells}</tr>")
    return (f'<table class="small recommendation"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def answer_html(answer: Answer) -> str:
    parts = [f"<p><b>Question:</b> {esc(text.question_line(answer))}.</p>",
             f'<p class="answer"><b>{esc(text.headline(answer))}</b></p>']
    if not answer.ranking.empty:
        parts.append(_table(text.RANKING_COLUMNS, text.ranking_rows(answer), first_bold=True))
        if answer.ranking["tied"].any():
            parts.append('<p class="muted">=N: statistically tied with the rank above at this '
                         "confidence (the gate's rank test on the raw samples).</p>")
    if not answer.uncertain.empty:
        parts.append("<h3>Uncertain: point values meet every constraint, intervals do not</h3>")
        parts.append(_table(("case", "objective [CI]", "why uncertain"),
                            text.uncertain_rows(answer)))
    if not answer.why_not.empty:
        parts.append("<h3>Why not: the best excluded configurations</h3>")
        parts.append(_table(("case", "objective [CI]", "failed"), text.why_not_rows(answer)))
    if not answer.boundaries.empty:
        items = "".join(f"<li>{esc(r['family'])} {esc(r['knobs'])}: {esc(r['statement'])}</li>"
                        for r in answer.boundaries.head(20).to_dict("records"))
        parts.append("<h3>Scaling boundaries (interpolated from fits, not measured)</h3>"
                     f"<ul>{items}</ul>")
    if not answer.pareto.empty:
        parts.append("<details><summary>Pareto-optimal set per family</summary>"
                     + _table(text.PARETO_COLUMNS, text.pareto_rows(answer)) + "</details>")
    notes = [text.counts_line(answer) + ".", *answer.notes]
    parts.append("".join(f'<p class="muted">{esc(n)}</p>' for n in notes))
    return "".join(parts)


def build_for(report: ReportInput, question: Question | None) -> Section | None:
    """The section for `question`, or None without one; a question the runs cannot answer
    (a metric they did not collect) is said in the section, not raised: the report is still
    worth drawing."""
    if question is None or not question.constraints:
        return None
    try:
        markup = answer_html(decide(report.frame, question))
    except DecideError as exc:
        markup = f'<p class="muted">No recommendation: {esc(exc)}</p>'
    return Section("recommendation", "Recommendation", (Html(markup),))


def build(report: ReportInput) -> Section | None:
    return build_for(report, report.question)
