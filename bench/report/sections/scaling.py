"""Scaling: how latency and throughput grow with width and depth, and the fitted exponent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bench.report.chart_data import (
    PARAM_COLUMNS,
    achieved_flops_s,
    fit_groups,
    flops_per_call,
    label,
    numeric,
    ok_rows,
    row_dicts,
    row_keys,
    scaling_fits,
    varying,
    with_run_key,
)
from bench.report.figures import (
    axis_type_buttons,
    figure_dict,
    hover,
    new_figure,
    params_line,
    title_axes,
)
from bench.report.model import Chart, Html, ReportInput, Section
from bench.report.style import esc, fmt, palette_map, sequential_map, si

DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
#: Facet grids larger than this are unreadable; the most populated facets are kept.
MAX_FACET_ROWS, MAX_FACET_COLS = 4, 4


# ---- data -----------------------------------------------------------------------------------
def scaling_series(frame: pd.DataFrame) -> pd.DataFrame:
    """Measured cases as lines against width: one line per depth (and per any other parameter
    that varies), faceted by precision and device. Lines with a single width are dropped.

    Adds `series` (the line's label), `line_key` and `facet` columns; sorted by line, width.
    """
    ok = ok_rows(frame)
    ok = ok[numeric(ok, "width").notna() & (numeric(ok, "median_ms") > 0)]
    if ok.empty:
        return ok.assign(series=[], line_key=[], facet=[])
    line_columns = [c for c in PARAM_COLUMNS if c not in ("width", "precision", "device")]
    shown = ["depth", *[c for c in varying(ok, [*line_columns, "run_id"]) if c != "depth"]]
    records = ok.to_dict("records")
    out = ok.assign(
        series=[label(r, shown) for r in records],
        line_key=row_keys(ok, with_run_key([*line_columns, "precision", "device"], ok)),
        facet=[f"{r.get('precision') or 'fp32'} · {r.get('device') or '?'}" for r in records],
        _width=numeric(ok, "width"), _depth=numeric(ok, "depth"))
    widths = out.groupby("line_key")["_width"].nunique()
    out = out[out["line_key"].map(widths) >= 2]
    return out.sort_values(["series", "line_key", "_width"]).drop(columns=["_width"])


@dataclass(frozen=True, eq=False)
class Grid:
    """Median latency over depth (rows) × width (columns) for one group of cases."""

    label: str
    depths: list[float]
    widths: list[float]
    median_ms: np.ndarray
    names: list[list[str]]


def heatmap_grids(frame: pd.DataFrame) -> list[Grid]:
    """One grid per group of cases equal in all but depth and width, when the group has at
    least two depths and two widths; missing cells are NaN."""
    ok = ok_rows(frame)
    ok = ok[numeric(ok, "depth").notna() & numeric(ok, "width").notna() &
            (numeric(ok, "median_ms") > 0)]
    if ok.empty:
        return []
    group_columns = [c for c in PARAM_COLUMNS if c not in ("depth", "width")]
    keys = row_keys(ok, with_run_key(group_columns, ok))
    shown = varying(ok, [*group_columns, "run_id"]) or ["model"]
    grids = []
    records = row_dicts(ok)
    for _, members in ok.groupby(keys, sort=False):
        depths = sorted(set(numeric(members, "depth")))
        widths = sorted(set(numeric(members, "width")))
        if len(depths) < 2 or len(widths) < 2:
            continue
        z = np.full((len(depths), len(widths)), np.nan)
        names = [["" for _ in widths] for _ in depths]
        for row in (records[i] for i in members.index):
            i, j = depths.index(float(row["depth"])), widths.index(float(row["width"]))
            z[i, j] = float(row["median_ms"])
            names[i][j] = str(row.get("name") or "")
        grids.append(Grid(label(members.iloc[0].to_dict(), shown), depths, widths, z, names))
    return grids


# ---- charts ---------------------------------------------------------------------------------
def _facets(series: pd.DataFrame) -> tuple[list[str], list[str]]:
    precisions = list(series["precision"].astype(str).value_counts().index[:MAX_FACET_ROWS]) \
        if "precision" in series else ["fp32"]
    devices = list(series["device"].astype(str).value_counts().index[:MAX_FACET_COLS]) \
        if "device" in series else ["?"]
    return sorted(precisions), sorted(devices)


def width_chart(series: pd.DataFrame, metric: str, y_title: str, key: str) -> Chart:
    precisions, devices = _facets(series)
    fig = make_subplots(rows=len(precisions), cols=len(devices), horizontal_spacing=0.08,
                        vertical_spacing=0.12 if len(precisions) > 1 else 0.1,
                        subplot_titles=[esc(f"{p} · {d}") for p in precisions for d in devices])
    colours = sequential_map([d for d in numeric(series, "depth").fillna(0)])
    models = sorted(series["model"].astype(str).unique()) if "model" in series else []
    records = row_dicts(series)
    seen: set[str] = set()
    for _, line in series.groupby("line_key", sort=False):
        first = line.iloc[0]
        precision, device = str(first.get("precision")), str(first.get("device"))
        if precision not in precisions or device not in devices:
            continue
        name = str(first["series"])
        depth = float(first["depth"]) if pd.notna(first.get("depth")) else 0.0
        model_index = models.index(str(first.get("model"))) if models else 0
        rows = [records[i] for i in line.index]
        fig.add_trace(go.Scatter(
            x=numeric(line, "width"), y=numeric(line, metric), mode="lines+markers",
            name=esc(name), legendgroup=esc(name), showlegend=name not in seen,
            line={"color": colours.get(depth, "#4292c6"),
                  "dash": DASHES[model_index % len(DASHES)]},
            hovertext=[hover(r, f"{esc(y_title)}: {fmt(r.get(metric))}", params_line(r))
                       for r in rows], hoverinfo="text"),
            row=precisions.index(precision) + 1, col=devices.index(device) + 1)
        seen.add(name)
    height = 150 + 300 * len(precisions)
    what = "Latency" if metric == "median_ms" else "Throughput"
    new_figure(f"{what} against width, one line per depth (facets: precision · device)",
               "width (units of the model's width axis)", y_title, height=height, fig=fig,
               legend={"title": {"text": "line"}})
    title_axes(fig, "width", y_title)
    widths = sorted(set(numeric(series, "width").dropna()))
    if len(widths) <= 16:  # label the widths measured, not log-scale digits
        fig.update_xaxes(tickvals=widths, ticktext=[f"{w:g}" for w in widths])
    axis_type_buttons(fig)
    return Chart(key, figure_dict(fig))


def heatmap_chart(grids: list[Grid]) -> Chart:
    fig = go.Figure()
    for index, grid in enumerate(grids):
        text = [[fmt(v, 3) if np.isfinite(v) else "" for v in row] for row in grid.median_ms]
        hovertext = [[f"<b>{esc(grid.names[i][j])}</b><br>depth {fmt(d)} · width {fmt(w)}"
                      f"<br>median {fmt(grid.median_ms[i, j])} ms" if grid.names[i][j] else ""
                      for j, w in enumerate(grid.widths)] for i, d in enumerate(grid.depths)]
        fig.add_trace(go.Heatmap(
            x=[f"{w:g}" for w in grid.widths], y=[f"{d:g}" for d in grid.depths],
            z=np.log10(grid.median_ms), text=text, texttemplate="%{text}",
            hovertext=hovertext, hoverinfo="text", colorscale="Viridis",
            colorbar={"title": {"text": "median (ms)"},
                      "tickvals": _log_ticks(grid.median_ms),
                      "ticktext": [fmt(10 ** t, 3) for t in _log_ticks(grid.median_ms)]},
            visible=index == 0, name=esc(grid.label)))
    title = "Median latency (ms) over depth × width"
    new_figure(f"{title}: {grids[0].label}", "width", "depth", height=420, fig=fig)
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    if len(grids) > 1:
        buttons = [{"label": esc(g.label), "method": "update",
                    "args": [{"visible": [j == i for j in range(len(grids))]},
                             {"title.text": esc(f"{title}: {g.label}")}]}
                   for i, g in enumerate(grids)]
        fig.update_layout(updatemenus=[{"type": "dropdown", "buttons": buttons, "x": 1.0,
                                        "xanchor": "right", "y": 1.12, "yanchor": "bottom"}])
    return Chart("scaling-heatmap", figure_dict(fig),
                 "Colour is on a log scale; each cell is a case's median latency. "
                 + ("Pick the group in the menu." if len(grids) > 1 else ""))


def _log_ticks(values: np.ndarray) -> list[float]:
    finite = values[np.isfinite(values) & (values > 0)]
    low, high = np.log10(finite.min()), np.log10(finite.max())
    return [float(t) for t in np.linspace(low, high, 5)] if high > low else [float(low)]


def fit_chart(frame: pd.DataFrame) -> Chart:
    groups = fit_groups(frame)
    colours = palette_map([g.label for g in groups])
    records = row_dicts(frame)
    fig = go.Figure()
    for group in groups:
        members = group.members.assign(_flops=flops_per_call(group.members)).sort_values(
            "_flops")
        colour = colours[group.label]
        name = f"{group.label}: exponent {group.fit.slope:.2f}"
        achieved = achieved_flops_s(members)
        rows = [{**records[i], "_flops": f} for i, f in members["_flops"].items()]
        fig.add_trace(go.Scatter(
            x=members["_flops"], y=numeric(members, "median_ms"), mode="markers",
            name=esc(name), legendgroup=esc(group.label), marker={"color": colour, "size": 8},
            hovertext=[hover(r, f"{si(r['_flops'], 'FLOP')} per call",
                             f"achieved {si(a, 'FLOP/s')}") for r, a in
                       zip(rows, achieved, strict=True)], hoverinfo="text"))
        xs = np.geomspace(members["_flops"].min(), members["_flops"].max(), 20)
        fig.add_trace(go.Scatter(
            x=xs, y=[group.fit.predict(x) for x in xs], mode="lines", showlegend=False,
            legendgroup=esc(group.label), line={"color": colour, "dash": "dash"},
            hoverinfo="skip"))
    new_figure("Latency against FLOPs per call: fitted scaling exponent per group",
               "FLOPs per call (FLOP, log)", "median latency (ms, log)", height=460, fig=fig)
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return Chart("scaling-fit", figure_dict(fig),
                 "Dashed: least-squares fit of log latency on log FLOPs. Exponent 1: latency "
                 "grows in proportion to the work (compute-bound); well below 1: fixed "
                 "overheads dominate and small models leave the hardware idle.")


def fit_table(fits: pd.DataFrame) -> str:
    rows = []
    for row in fits.to_dict("records"):
        r2 = fmt(row["r2"], 3) if row["r2"] is not None and row["r2"] == row["r2"] else "–"
        note = " (dense-equivalent)" if row["dense_equivalent"] else ""
        rows.append(f"<tr><td>{esc(row['group'])}</td><td class=num>{row['n']}</td>"
                    f"<td class=num>{row['exponent']:.3f}</td><td class=num>{r2}</td>"
                    f"<td class=num>{esc(si(row['flops_min'], 'FLOP'))} – "
                    f"{esc(si(row['flops_max'], 'FLOP'))}</td>"
                    f"<td class=num>{esc(si(row['achieved_flops_s_median'], 'FLOP/s'))}{note}"
                    f"</td><td class=num>{esc(si(row['achieved_flops_s_max'], 'FLOP/s'))}"
                    "</td></tr>")
    return ('<table class="small"><thead><tr><th>group</th><th>cases</th><th>exponent</th>'
            "<th>R² (log)</th><th>FLOPs per call</th><th>achieved, median</th>"
            f"<th>achieved, best</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
            '<p class="muted">Achieved FLOP/s = counted FLOPs per item × items per second. '
            "Dense-equivalent counts (quantised or sparse kernels) are the dense model's "
            "FLOPs, so they measure speed, not arithmetic done.</p>")


def build(report: ReportInput) -> Section | None:
    frame = report.frame
    blocks: list[Any] = []
    series = scaling_series(frame)
    if not series.empty:
        blocks.append(width_chart(series, "median_ms", "median latency (ms)", "scaling-latency"))
        blocks.append(width_chart(series, "throughput_items_s", "throughput (items/s)",
                                  "scaling-throughput"))
    grids = heatmap_grids(frame)
    if grids:
        blocks.append(heatmap_chart(grids))
    fits = scaling_fits(frame)
    if not fits.empty:
        blocks.append(Html("<h3>Scaling exponent</h3>"))
        blocks.append(fit_chart(frame))
        blocks.append(Html(fit_table(fits)))
    if not blocks:
        return None
    return Section("scaling", "Scaling with depth and width", tuple(blocks))
