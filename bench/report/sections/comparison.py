"""Several runs side by side: per case, the change of the median with its confidence interval
and the gate's verdict (from `bench.gate.compare`), coloured the same way everywhere."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from bench.report.chart_data import numeric
from bench.report.figures import add_line, figure_dict, new_figure
from bench.report.model import Chart, ComparisonData, Html, ReportInput, Section
from bench.report.style import VERDICT_COLOURS, attr, esc, fmt, signed_pct

TIMING = "median_ms"
#: Instruction counts (measure = "instructions"): every case's verdict is shown, as timing's.
COUNTS = "instructions_per_call"
VERDICT_ORDER = ("regression", "improvement", "inconclusive", "same")
#: Cases drawn in the change chart at most: regressions first, then the largest changes.
MAX_CASES = 80


# ---- data -----------------------------------------------------------------------------------
def timing_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The timing verdicts, regressions first, then improvements, inconclusive and same; the
    largest changes first within each."""
    if frame.empty or "metric" not in frame.columns:
        return frame.iloc[0:0]
    rows = frame[frame["metric"] == TIMING]
    order = {v: i for i, v in enumerate(VERDICT_ORDER)}
    return rows.assign(_order=rows["verdict"].map(order).fillna(len(order)),
                       _size=numeric(rows, "delta_pct").abs()).sort_values(
        ["_order", "_size"], ascending=[True, False], kind="stable").drop(
        columns=["_order", "_size"])


def other_changes(frame: pd.DataFrame) -> pd.DataFrame:
    """Non-timing verdicts that are not `same`: parameters, memory, fidelity, status."""
    if frame.empty or "metric" not in frame.columns:
        return frame.iloc[0:0]
    return frame[~frame["metric"].isin((TIMING, COUNTS)) & (frame["verdict"] != "same")]


def count_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The instruction-count verdicts, in case order."""
    if frame.empty or "metric" not in frame.columns:
        return frame.iloc[0:0]
    return frame[frame["metric"] == COUNTS]


def verdict_counts(frame: pd.DataFrame) -> dict[str, int]:
    counts = timing_rows(frame)["verdict"].value_counts() if not frame.empty else {}
    return {v: int(counts[v]) for v in VERDICT_ORDER if counts.get(v)}


# ---- output ---------------------------------------------------------------------------------
def _chip(verdict: str, count: int | None = None) -> str:
    colour = attr(VERDICT_COLOURS.get(verdict, "#777"))
    text = f"{count} {verdict}" if count is not None else verdict
    return (f'<span class="chip verdict" style="border-color:{colour};color:{colour}">'
            f"{esc(text)}</span>")


def change_chart(rows: pd.DataFrame, comparison: ComparisonData, key: str) -> Chart:
    shown = rows.head(MAX_CASES)
    fig = go.Figure()
    threshold = numeric(shown, "threshold").median()
    if pd.notna(threshold):
        add_line(fig, x=0.0, band=float(threshold), text=f"±{threshold:g}% threshold")
    add_line(fig, x=0.0, text="")
    for verdict in VERDICT_ORDER:
        part = shown[shown["verdict"] == verdict]
        if part.empty:
            continue
        delta = numeric(part, "delta_pct")
        low, high = numeric(part, "ci_low_pct"), numeric(part, "ci_high_pct")
        fig.add_trace(go.Scatter(
            x=delta, y=[esc(n) for n in part["name"]], mode="markers", name=esc(verdict),
            marker={"color": VERDICT_COLOURS[verdict], "size": 9, "symbol": "diamond"},
            error_x={"type": "data", "symmetric": False,
                     "array": (high - delta).clip(lower=0).fillna(0),
                     "arrayminus": (delta - low).clip(lower=0).fillna(0), "thickness": 1.5},
            hovertext=[_hover(r) for r in part.to_dict("records")], hoverinfo="text"))
    height = 170 + 22 * len(shown)
    new_figure(f"Change of the median latency, {comparison.candidate} against "
               f"{comparison.baseline}", "change of the median (%, + is slower)", "case",
               height=height, fig=fig, legend={"title": {"text": "verdict"}})
    fig.update_yaxes(autorange="reversed", type="category")
    caption = ("Diamonds: change of the median; bars: its 95% confidence interval "
               "(Hodges–Lehmann). A regression needs both a change past the threshold and a "
               "significant test after correction across cases.")
    if len(rows) > len(shown):
        caption += f" Showing {len(shown)} of {len(rows)} cases: regressions and the largest " \
                   "changes first."
    return Chart(key, figure_dict(fig), caption)


def _hover(row: dict[str, Any]) -> str:
    lines = [f"<b>{esc(row.get('name'))}</b>",
             f"median {fmt(row.get('baseline'))} ms → {fmt(row.get('candidate'))} ms",
             f"change {signed_pct(row.get('delta_pct'))} (95% CI "
             f"{signed_pct(row.get('ci_low_pct'))} … {signed_pct(row.get('ci_high_pct'))})"]
    if fmt(row.get("p_adjusted")) != "–":
        lines.append(f"p (corrected) {fmt(row.get('p_adjusted'), 2)}")
    lines.append(f"verdict: {esc(row.get('verdict'))}")
    if row.get("note"):
        lines.append(esc(row.get("note")))
    return "<br>".join(lines)


def side_by_side_table(rows: pd.DataFrame, comparison: ComparisonData) -> str:
    body = []
    for row in rows.to_dict("records"):
        verdict = str(row.get("verdict"))
        body.append(
            f"<tr><td>{esc(row.get('name'))}</td><td class=num>{fmt(row.get('baseline'))}</td>"
            f"<td class=num>{fmt(row.get('candidate'))}</td>"
            f"<td class=num>{signed_pct(row.get('delta_pct'))}</td>"
            f"<td class=num>{signed_pct(row.get('ci_low_pct'))} … "
            f"{signed_pct(row.get('ci_high_pct'))}</td>"
            f"<td class=num>{fmt(row.get('p_adjusted'), 2)}</td><td>{_chip(verdict)}</td>"
            f"<td class=muted>{esc(row.get('note') or '')}</td></tr>")
    return (f'<div class="table-wrap"><table class="small"><thead><tr><th>case</th>'
            f"<th>{esc(comparison.baseline)} median (ms)</th>"
            f"<th>{esc(comparison.candidate)} median (ms)</th><th>change</th>"
            "<th>95% CI of the change</th><th>p (corrected)</th><th>verdict</th><th>why</th>"
            f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def counts_table(rows: pd.DataFrame, comparison: ComparisonData) -> str:
    """Instruction counts beside the latency verdicts: per call on each side, the change,
    the verdict against the tolerance and the samples' spread (in the note)."""
    counts = rows["verdict"].value_counts()
    chips = " ".join(_chip(v, int(counts[v])) for v in VERDICT_ORDER if counts.get(v))
    body = "".join(
        f"<tr><td>{esc(r.get('name'))}</td><td class=num>{fmt(r.get('baseline'))}</td>"
        f"<td class=num>{fmt(r.get('candidate'))}</td>"
        f"<td class=num>{signed_pct(r.get('delta_pct'))}</td>"
        f"<td class=num>±{fmt(r.get('threshold'))}%</td><td>{_chip(str(r.get('verdict')))}"
        f"</td><td class=muted>{esc(r.get('note') or '')}</td></tr>"
        for r in rows.to_dict("records"))
    return (f"<h4>Instruction counts</h4><p>Instruction-count verdicts: {chips}. Counted under "
            "callgrind: the change against the tolerance is the verdict (counts repeat to "
            "hundredths of a percent whatever the machine's load).</p>"
            '<div class="table-wrap"><table class="small"><thead><tr><th>case</th>'
            f"<th>{esc(comparison.baseline)} instructions/call</th>"
            f"<th>{esc(comparison.candidate)} instructions/call</th><th>change</th>"
            "<th>tolerance</th><th>verdict</th><th>why</th></tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def other_table(rows: pd.DataFrame) -> str:
    body = "".join(
        f"<tr><td>{esc(r.get('name'))}</td><td>{esc(r.get('metric'))}</td>"
        f"<td class=num>{fmt(r.get('baseline'))}</td><td class=num>{fmt(r.get('candidate'))}"
        f"</td><td class=num>{signed_pct(r.get('delta_pct'))}</td>"
        f"<td>{_chip(str(r.get('verdict')))}</td><td class=muted>{esc(r.get('note') or '')}"
        "</td></tr>" for r in rows.to_dict("records"))
    return ("<h4>Other metrics that changed</h4><table class=\"small\"><thead><tr><th>case</th>"
            "<th>metric</th><th>baseline</th><th>candidate</th><th>change</th><th>verdict</th>"
            f"<th>why</th></tr></thead><tbody>{body}</tbody></table>")


def comparison_blocks(comparison: ComparisonData, index: int) -> list[Any]:
    title = f"<h3>{esc(comparison.candidate)} against {esc(comparison.baseline)}</h3>"
    if comparison.error:
        return [Html(f'{title}<p class="warn">Not compared: {esc(comparison.error)}</p>')]
    parts = [title]
    counts = verdict_counts(comparison.frame)
    chips = " ".join(_chip(v, n) for v, n in counts.items()) or "no case measured on both sides"
    correction = (f" p-values corrected across cases ({esc(comparison.correction)})."
                  if comparison.correction else "")
    parts.append(f"<p>Latency verdicts: {chips}.{correction}</p>")
    if comparison.env_mismatch:
        keys = ", ".join(esc(k) for k in comparison.env_mismatch)
        parts.append(f'<p class="warn">The runs measured different environments ({keys}): '
                     "the changes below compare machines or builds, not only code.</p>")
    parts += [f'<p class="warn caveat">{esc(line)}</p>' for line in comparison.caveats]
    for side, names in (("only in the baseline", comparison.only_in_baseline),
                        ("only in the candidate", comparison.only_in_candidate)):
        if names:
            listed = ", ".join(esc(n) for n in names[:20]) + (" …" if len(names) > 20 else "")
            parts.append(f"<p class=muted>{len(names)} case(s) {side}: {listed}</p>")
    blocks: list[Any] = [Html("".join(parts))]
    rows = timing_rows(comparison.frame)
    if not rows.empty:
        blocks.append(change_chart(rows, comparison, f"compare-{index}"))
        blocks.append(Html(side_by_side_table(rows, comparison)))
    counted = count_rows(comparison.frame)
    if not counted.empty:
        blocks.append(Html(counts_table(counted, comparison)))
    others = other_changes(comparison.frame)
    if not others.empty:
        blocks.append(Html(other_table(others)))
    return blocks


def build(report: ReportInput) -> Section | None:
    if not report.comparisons:
        return None
    blocks: list[Any] = [Html("<p>Each later run against the first (the baseline), case by "
                              "case, with the verdicts of <code>archbench compare</code>.</p>")]
    for index, comparison in enumerate(report.comparisons, start=1):
        blocks += comparison_blocks(comparison, index)
    return Section("comparison", "Runs compared", tuple(blocks))
