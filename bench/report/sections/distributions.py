"""Latency distributions drawn from the raw samples: a box per case, outliers as points."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from bench.report.chart_data import BoxStats, box_stats, numeric, ok_rows
from bench.report.figures import figure_dict, new_figure
from bench.report.model import Chart, Html, ReportInput, Section
from bench.report.style import PRECISION_COLOURS, colour_for, esc, fmt

#: Boxes drawn at most; past it, the noisiest cases (the ones worth a look) are kept.
MAX_BOXES = 60


def _has_samples(value: object) -> bool:
    """A list or array of samples with at least one value (NaN for a case without any)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        return False
    return len(value) > 0


def distribution_cases(frame: pd.DataFrame, limit: int = MAX_BOXES,
                       ) -> tuple[list[tuple[dict, BoxStats]], int]:
    """(row, box) for the measured cases with raw samples, in frame order, and how many had
    samples. Over `limit` cases, the `limit` noisiest (IQR/median) are kept, in frame order."""
    ok = ok_rows(frame)
    if "samples_ms" not in ok.columns:
        return [], 0
    ok = ok[ok["samples_ms"].map(_has_samples)]
    total = len(ok)
    if total > limit:
        noise = numeric(ok, "noise").fillna(0.0)
        keep = noise.sort_values(ascending=False, kind="stable").index[:limit]
        ok = ok.loc[sorted(keep, key=list(ok.index).index)]
    return [(row, box_stats(list(row["samples_ms"]))) for row in ok.to_dict("records")], total


def distribution_chart(cases: list[tuple[dict, BoxStats]]) -> Chart:
    fig = go.Figure()
    by_precision: dict[str, list[tuple[dict, BoxStats]]] = {}
    for row, box in cases:
        by_precision.setdefault(str(row.get("precision") or "fp32"), []).append((row, box))
    for precision, members in sorted(by_precision.items()):
        colour = colour_for(precision, PRECISION_COLOURS)
        names = [esc(row.get("name")) for row, _ in members]
        boxes = [box for _, box in members]
        fig.add_trace(go.Box(
            y=names, q1=[b.q1 for b in boxes], median=[b.median for b in boxes],
            q3=[b.q3 for b in boxes], lowerfence=[b.lowerfence for b in boxes],
            upperfence=[b.upperfence for b in boxes], orientation="h", name=esc(precision),
            legendgroup=esc(precision), marker={"color": colour}, line={"width": 1.5},
            boxpoints=False, hoverinfo="y+x"))
        xs, ys, texts = [], [], []
        for (_, box), name in zip(members, names, strict=True):
            for value in box.outliers:
                xs.append(value)
                ys.append(name)
                texts.append(f"<b>{name}</b><br>sample {fmt(value)} ms (outside 1.5 IQR; "
                             f"{box.n_outliers} of {box.n} samples)")
        if xs:
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="markers", name=esc(f"{precision} outliers"),
                legendgroup=esc(precision), showlegend=False,
                marker={"color": colour, "size": 4, "opacity": 0.6}, hovertext=texts,
                hoverinfo="text"))
    height = 160 + 24 * len(cases)
    new_figure("Latency distribution per case, from the raw samples",
               "latency per iteration (ms, log)", "case", height=height, fig=fig,
               legend={"title": {"text": "precision"}})
    fig.update_xaxes(type="log")
    fig.update_yaxes(autorange="reversed", type="category")
    return Chart("distributions", figure_dict(fig),
                 "Boxes: quartiles and median; whiskers: the furthest samples within 1.5 IQR; "
                 "points: samples beyond. A sample is the mean time per call of one timed "
                 "block (its size is in the results table).")


def build(report: ReportInput) -> Section | None:
    cases, total = distribution_cases(report.frame)
    if not cases:
        return None
    blocks: list[Chart | Html] = [distribution_chart(cases)]
    if total > len(cases):
        blocks.insert(0, Html(f'<p class="muted">Showing the {len(cases)} noisiest of {total} '
                              "cases (by IQR / median); every case's quartiles are in the "
                              "results table.</p>"))
    return Section("distributions", "Latency distributions", tuple(blocks))
