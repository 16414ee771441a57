"""Operator profile: where each profiled case spends its time, by operator (self time per call).

Drawn only for cases run with `profile = true`; the full per-operator table and the Chrome
trace path stay in the results.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from bench.report.chart_data import ok_rows, structure
from bench.report.figures import figure_dict, new_figure
from bench.report.model import Chart, Html, ReportInput, Section
from bench.report.style import esc, fmt, palette_map

#: Operators shown by name; the rest of each case's profiled time is one "other" bar.
MAX_OPERATORS = 8
#: Profiled cases drawn at most (in frame order).
MAX_CASES = 30
OTHER = "other operators"


def profile_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Long form: one row per (case, operator) with `ms` per call (device self time on CUDA,
    CPU self time elsewhere). The `MAX_OPERATORS` operators with the most time over all cases
    keep their names; each case's remaining time is one `OTHER` row."""
    columns = ["name", "operator", "ms", "calls"]
    if "profile" not in frame.columns:
        return pd.DataFrame(columns=columns)
    rows = []
    for row in ok_rows(frame).to_dict("records"):
        profile = structure(row.get("profile"))
        for op in (profile or {}).get("top_ops") or []:
            ms = op.get("self_device_ms")
            ms = op.get("self_cpu_ms") if ms is None else ms
            if isinstance(ms, (int, float)):
                rows.append({"name": str(row.get("name")), "operator": str(op.get("name")),
                             "ms": float(ms), "calls": op.get("calls")})
    long = pd.DataFrame(rows, columns=columns)
    if long.empty:
        return long
    ranked = long.groupby("operator")["ms"].sum().sort_values(ascending=False, kind="stable")
    named = set(ranked.index[:MAX_OPERATORS])
    kept = long[long["operator"].isin(named)]
    rest = (long[~long["operator"].isin(named)].groupby("name", sort=False)["ms"].sum()
            .reset_index().assign(operator=OTHER, calls=None))
    return pd.concat([kept, rest[columns]] if not rest.empty else [kept], ignore_index=True)


def profile_chart(ops: pd.DataFrame) -> Chart:
    names = list(dict.fromkeys(ops["name"]))[:MAX_CASES]
    ops = ops[ops["name"].isin(names)]
    order = [*(op for op in dict.fromkeys(ops["operator"]) if op != OTHER), OTHER]
    colours = palette_map(order)
    fig = go.Figure()
    for operator in order:
        rows = ops[ops["operator"] == operator]
        if rows.empty:
            continue
        fig.add_trace(go.Bar(
            y=[esc(n) for n in rows["name"]], x=rows["ms"], orientation="h", name=esc(operator),
            marker=({"color": "#dddddd", "pattern": {"shape": "/"}} if operator == OTHER
                    else {"color": colours[operator]}),
            hovertext=[f"<b>{esc(n)}</b><br>{esc(operator)}: {fmt(ms)} ms per call"
                       + (f" ({fmt(c)} calls)" if c is not None and c == c else "")
                       for n, ms, c in zip(rows["name"], rows["ms"], rows["calls"], strict=True)],
            hoverinfo="text"))
    new_figure("Self time per call, by operator", "self time per call (ms)", "case",
               height=min(160 + 26 * len(names), 3000), fig=fig, barmode="stack",
               legend={"title": {"text": "operator"}, "traceorder": "normal"})
    fig.update_yaxes(autorange="reversed", type="category")
    return Chart("profile", figure_dict(fig),
                 "From torch.profiler over a few calls after the timed window (device time on "
                 "CUDA, CPU time elsewhere). Only each case's top operators are recorded, so "
                 "the bars can fall short of the measured latency.")


def build(report: ReportInput) -> Section | None:
    ops = profile_frame(report.frame)
    if ops.empty:
        return None
    blocks: list[Chart | Html] = [profile_chart(ops)]
    cases = ops["name"].nunique()
    if cases > MAX_CASES:
        blocks.insert(0, Html(f'<p class="muted">The first {MAX_CASES} of {cases} profiled '
                              "cases.</p>"))
    return Section("profile", "Operator profile", tuple(blocks))
