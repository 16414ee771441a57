"""A compact markdown summary for a CI step summary or a pull-request comment.

GitHub renders HTML inside markdown, so data strings are HTML-escaped as well as having their
table pipes and newlines neutralised.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from bench.report.chart_data import is_flagged, ok_rows
from bench.report.model import ComparisonData, ReportInput, RunFrame
from bench.report.sections.summary import noisy_cases, status_counts
from bench.report.style import esc, fmt, interval, pct, si, signed_pct
from bench.results.record import FAILURE_STATUSES

#: Rows per table at most; a line says how many more there are.
MAX_ROWS = 30
VERDICT_ORDER = ("regression", "improvement", "inconclusive", "same")
VERDICT_MARK = {"regression": "🔴 regression", "improvement": "🟢 improvement",
                "inconclusive": "🟡 inconclusive", "same": "⚪ same"}


def md(value: Any) -> str:
    """A data string safe in a markdown table cell: HTML-escaped, one line, pipes escaped."""
    text = esc(value).replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    return text.replace("`", "\\`").replace("*", "\\*").replace("_", "\\_")


def _env_line(run: RunFrame) -> str:
    env = run.env
    bits = []
    if env.get("cpu_model"):
        bits.append(f"CPU {md(env['cpu_model'])} ({md(env.get('cpu_count_logical'))} threads "
                    "available)")
    gpus = env.get("gpus") or []
    if gpus:
        bits.append("GPU " + ", ".join(md(g.get("name")) for g in gpus))
    if env.get("torch_version"):
        bits.append(f"torch {md(env['torch_version'])}")
    if env.get("threads") is not None:
        bits.append(f"torch threads {md(env['threads'])}")
    if env.get("git_commit"):
        dirty = " (dirty)" if env.get("git_dirty") else ""
        bits.append(f"commit {md(str(env['git_commit'])[:10])}{dirty}")
    return " · ".join(bits)


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in counts.items()) or "no cases"


def _results_table(frame: pd.DataFrame) -> list[str]:
    ok = ok_rows(frame)
    lines: list[str] = []
    timed = ok[ok["median_ms"].notna()] if "median_ms" in ok.columns else ok.iloc[0:0]
    if not timed.empty:
        lines += ["| case | median (ms) | CI ± | noise | throughput (items/s) | params |",
                  "|---|---:|---:|---:|---:|---:|"]
        for row in timed.head(MAX_ROWS).to_dict("records"):
            noisy = is_flagged(row.get("noise_warning")) or is_flagged(row.get("target_met"),
                                                                      negate=True)
            flag = " ⚠️" if noisy else ""
            lines.append(f"| {md(row.get('name'))}{flag} | {fmt(row.get('median_ms'))} | "
                         f"{interval(row)} | {pct(row.get('noise'), 2)} | "
                         f"{fmt(row.get('throughput_items_s'))} | "
                         f"{si(row.get('params_total'))} |")
        if len(timed) > MAX_ROWS:
            lines.append(f"\n…and {len(timed) - MAX_ROWS} more measured case(s) in the full "
                         "report.")
    counted = ok[ok["instructions_per_call"].notna()] if "instructions_per_call" in ok.columns \
        else ok.iloc[0:0]
    if not counted.empty:
        lines += [*([""] if lines else []),
                  "| case | instructions/call | instructions/item | spread | params |",
                  "|---|---:|---:|---:|---:|"]
        for row in counted.head(MAX_ROWS).to_dict("records"):
            spread = row.get("instructions_spread_pct")
            lines.append(f"| {md(row.get('name'))} | {si(row.get('instructions_per_call'))} | "
                         f"{si(row.get('instructions_per_item'))} | "
                         f"{pct(spread / 100 if spread is not None else None, 3)} | "
                         f"{si(row.get('params_total'))} |")
        if len(counted) > MAX_ROWS:
            lines.append(f"\n…and {len(counted) - MAX_ROWS} more counted case(s) in the full "
                         "report.")
    return lines


#: The gate's headline metrics, each with its own verdict line and table of notable rows.
_HEADLINES = (("median_ms", "Latency", "(ms)"), ("instructions_per_call", "Instruction-count",
                                                 "(instr./call)"))


def _comparison(comparison: ComparisonData) -> list[str]:
    lines = [f"### {md(comparison.candidate)} against {md(comparison.baseline)}", ""]
    if comparison.error:
        return [*lines, f"Not compared: {md(comparison.error)}"]
    frame = comparison.frame
    for metric, title, unit in _HEADLINES:
        rows = frame[frame["metric"] == metric] if "metric" in frame else frame
        if rows.empty and metric != "median_ms":
            continue
        lines += _verdicts(rows, title, unit, comparison.correction if metric == "median_ms"
                           else None)
    if comparison.env_mismatch:
        lines.append(f"\n> ⚠️ Environments differ: {md(', '.join(comparison.env_mismatch))}")
    lines += [f"\n> ⚠️ {md(line)}" for line in comparison.caveats]
    for side, names in (("only in the baseline", comparison.only_in_baseline),
                        ("only in the candidate", comparison.only_in_candidate)):
        if names:
            lines.append(f"\n{len(names)} case(s) {side}: " + ", ".join(md(n) for n in
                                                                    names[:10]) +
                         (" …" if len(names) > 10 else ""))
    return lines


def _verdicts(rows: pd.DataFrame, title: str, unit: str, correction: str | None) -> list[str]:
    counts = rows["verdict"].value_counts() if "verdict" in rows else pd.Series(dtype=int)
    lines = [f"{title} verdicts: " + (", ".join(
        f"{int(counts[v])} {v}" for v in VERDICT_ORDER if counts.get(v, 0)) or "none") +
        (f" (p-values corrected: {md(correction)})" if correction else "")]
    notable = rows[rows["verdict"].isin(("regression", "improvement", "inconclusive"))] \
        if "verdict" in rows else rows.iloc[0:0]
    if not notable.empty:
        order = {v: i for i, v in enumerate(VERDICT_ORDER)}
        notable = notable.assign(_o=notable["verdict"].map(order)).sort_values(
            ["_o", "delta_pct"], ascending=[True, False])
        lines += ["", f"| case | baseline {unit} | candidate {unit} | Δ | 95% CI of Δ | verdict |",
                  "|---|---:|---:|---:|---|---|"]
        for row in notable.head(MAX_ROWS).to_dict("records"):
            lines.append(f"| {md(row.get('name'))} | {fmt(row.get('baseline'))} | "
                         f"{fmt(row.get('candidate'))} | {signed_pct(row.get('delta_pct'))} | "
                         f"{signed_pct(row.get('ci_low_pct'))} … "
                         f"{signed_pct(row.get('ci_high_pct'))} | "
                         f"{VERDICT_MARK.get(str(row.get('verdict')), md(row.get('verdict')))}"
                         " |")
        if len(notable) > MAX_ROWS:
            lines.append(f"\n…and {len(notable) - MAX_ROWS} more.")
        lines.append("")
    return lines


def _recommendation(report: ReportInput) -> list[str]:
    """The answer to the report's question, when it has one with constraints."""
    question = report.question
    if question is None or not question.constraints:
        return []
    from bench.decide import DecideError, decide
    from bench.decide.render import to_markdown

    try:
        return ["", to_markdown(decide(report.frame, question)).rstrip()]
    except DecideError as exc:
        return ["", f"**No recommendation:** {md(exc)}"]


def render_markdown(report: ReportInput) -> str:
    lines = [f"## archbench: {md(report.display_title)}", ""]
    for run in report.runs:
        suites = ", ".join(md(s.get("name")) for s in run.meta.get("suites") or [])
        head = f"**{md(run.label)}**" + (f" (suite {suites})" if suites else "")
        lines.append(f"- {head}: {_counts(status_counts(run.frame))}")
        env = _env_line(run)
        if env:
            lines.append(f"  - {env}")
    lines += _recommendation(report)
    frame = report.frame
    noisy = noisy_cases(frame)
    if not noisy.empty:
        lines += ["", f"> ⚠️ {len(noisy)} of {len(ok_rows(frame))} measured case(s) are noisy "
                      "(IQR/median ≥ 10%) or missed their confidence target."]
    for comparison in report.comparisons:
        lines += ["", *_comparison(comparison)]
    table = _results_table(frame)
    if table:
        lines += ["", *(["### Results", ""] if report.comparisons else []), *table]
    bad = frame[frame["status"] != "ok"] if "status" in frame.columns else frame.iloc[0:0]
    if not bad.empty:
        failed = bad["status"].isin(FAILURE_STATUSES).sum()
        lines += ["", f"<details><summary>{len(bad)} case(s) not measured ({failed} failed, "
                      f"{len(bad) - failed} unsupported)</summary>", ""]
        for row in bad.head(MAX_ROWS * 2).to_dict("records"):
            reason = str(row.get("reason") or "").strip().splitlines()
            lines.append(f"- **{md(row.get('name'))}** {md(row.get('status'))}: "
                         f"{md(reason[0] if reason else '')}")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"
