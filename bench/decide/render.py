"""An answer as text: a headline, table cells, and markdown for CI summaries. Pure: builds
strings from an `Answer`; printing is the CLI's job, HTML the report's."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from bench.decide.answer import Answer
from bench.decide.constraints import format_value


def question_line(answer: Answer) -> str:
    goal = "highest" if answer.objective.higher_is_better else "lowest"
    under = ", ".join(c.text for c in answer.constraints) or "no constraint"
    return (f"{goal} {answer.objective.name} under {under} "
            f"(confidence {answer.question.confidence:g})")


def objective_cell(answer: Answer, row: Mapping[str, Any]) -> str:
    metric = answer.objective
    text = format_value(metric, row.get(metric.name, math.nan))
    if metric.has_interval:
        low = float(row.get(f"{metric.name}_low", math.nan))
        high = float(row.get(f"{metric.name}_high", math.nan))
        text += f" [{format_value(metric, low)}, {format_value(metric, high)}]"
    return text


def headline(answer: Answer) -> str:
    """One sentence: the recommendation, or why there is none."""
    best = answer.best
    if best is None:
        counts = answer.counts
        if counts.get("uncertain"):
            return (f"No configuration meets every constraint with confidence "
                    f"{answer.question.confidence:g}; {counts['uncertain']} meet(s) them on "
                    "point values only (see uncertain): measure longer to settle.")
        return "No configuration meets every constraint (see why not)."
    text = (f"Best: {best['name']} ({best['knobs']}), {answer.objective.name} "
            f"{objective_cell(answer, best)}")
    tied = answer.ranking[(answer.ranking["rank"] == 1)]
    if len(tied) > 1:
        others = ", ".join(str(n) for n in tied["name"].iloc[1:])
        text += f"; statistically tied with {others}"
    if isinstance(best.get("vs_twin"), str):
        text += f". {best['vs_twin']}"
    return text + "."


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)) or \
            value is pd.NA:
        return "–"
    return f"{float(value):.{digits}g}"


def _memory(row: Mapping[str, Any]) -> str:
    value = row.get("memory_above_runtime_bytes")
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "–"
    return f"{value / 2 ** 20:.0f} MiB"


def ranking_rows(answer: Answer) -> list[list[str]]:
    """rank, configuration, family, objective [CI], top-1, memory above runtime, vs twin."""
    out = []
    for row in answer.ranking.to_dict("records"):
        rank = f"={row['rank']}" if row.get("tied") else str(row["rank"])
        out.append([rank, str(row["name"]), str(row["knobs"]), objective_cell(answer, row),
                    _fmt(row.get("fidelity_top1_agreement")), _memory(row),
                    _speedup(row)])
    return out


RANKING_COLUMNS = ("rank", "case", "knobs", "objective [CI]", "top-1 agr.",
                   "memory above runtime", "speed-up vs fp32 unpruned")


def _speedup(row: Mapping[str, Any]) -> str:
    value = row.get("speedup_vs_twin")
    if value is None or not math.isfinite(float(value)):
        return "–"
    return (f"{float(value):.2f}× ({_fmt(row.get('speedup_low'))}–"
            f"{_fmt(row.get('speedup_high'))})")


def uncertain_rows(answer: Answer) -> list[list[str]]:
    return [[str(r["name"]), objective_cell(answer, r), str(r["failed"])]
            for r in answer.uncertain.to_dict("records")]


def why_not_rows(answer: Answer) -> list[list[str]]:
    return [[str(r["name"]), objective_cell(answer, r), str(r["failed"])]
            for r in answer.why_not.to_dict("records")]


def pareto_rows(answer: Answer) -> list[list[str]]:
    return [[str(r["family"]), str(r["knobs"]),
             format_value(answer.objective, r.get(answer.objective.name, math.nan)),
             _fmt(r.get("fidelity_top1_agreement")), _memory(r), str(r["frontier"]),
             str(r["verdict"])] for r in answer.pareto.to_dict("records")]


PARETO_COLUMNS = ("family", "knobs", "objective", "top-1 agr.", "memory above runtime",
                  "frontier", "verdict")


def counts_line(answer: Answer) -> str:
    c = answer.counts
    line = (f"{c.get('measured', 0)} measured case(s): {c.get('meets', 0)} meet every "
            f"constraint, {c.get('uncertain', 0)} uncertain, {c.get('fails', 0)} fail")
    if c.get("not_measured"):
        line += f"; {c['not_measured']} not measured (failed or unsupported)"
    return line


def _md_table(columns: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:  # GitHub renders HTML in markdown: escape it too
        return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(answer: Answer, *, heading: str = "###") -> str:
    parts = [f"{heading} Recommendation", "", f"**Question:** {question_line(answer)}.", "",
             f"**{headline(answer)}**", ""]
    if not answer.ranking.empty:
        parts += [_md_table(RANKING_COLUMNS, ranking_rows(answer)), ""]
        if answer.ranking["tied"].any():
            parts += ["`=N`: statistically tied with the rank above at this confidence.", ""]
    if not answer.uncertain.empty:
        parts += ["**Uncertain** (point values meet every constraint, intervals do not):", "",
                  _md_table(("case", "objective [CI]", "why uncertain"),
                            uncertain_rows(answer)), ""]
    if not answer.why_not.empty:
        parts += ["**Why not** (the best excluded configurations):", "",
                  _md_table(("case", "objective [CI]", "failed"), why_not_rows(answer)), ""]
    if not answer.pareto.empty:
        parts += ["<details><summary>Pareto-optimal set per family</summary>", "",
                  _md_table(PARETO_COLUMNS, pareto_rows(answer)), "", "</details>", ""]
    if not answer.boundaries.empty:
        parts += ["**Scaling boundaries** (interpolated from fits, not measured):", ""]
        parts += [f"- {r['family']} {r['knobs']}: {r['statement']}"
                  for r in answer.boundaries.to_dict("records")]
        parts.append("")
    parts.append(counts_line(answer) + ".")
    parts += [f"\n_Note: {n}._" for n in answer.notes]
    return "\n".join(parts) + "\n"
