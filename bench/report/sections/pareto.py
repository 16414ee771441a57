"""Pareto frontiers: which cases no other case beats on latency and size, or latency and error.

Frontiers are computed per deployment condition (device, batch size, mode): comparing a batch
of 32 on a GPU with a batch of 1 on a CPU would crown cases for the wrong reason.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from bench.report.chart_data import (
    label,
    numeric,
    ok_rows,
    pareto_mask,
    row_keys,
    varying,
    with_run_key,
)
from bench.report.figures import figure_dict, hover, new_figure, params_line
from bench.report.model import Chart, Html, ReportInput, Section
from bench.report.style import esc, fmt, palette_map, si

GROUP_COLUMNS = ("device", "batch_size", "mode")
#: Frontier points labelled with their name per group at most (all keep their hover text).
MAX_LABELS = 20


def pareto_points(frame: pd.DataFrame, x_column: str) -> pd.DataFrame:
    """Measured cases with a value in `x_column`, each with `group` (device, batch, mode) and
    `on_frontier`: no case of its group has both lower latency and lower `x_column`."""
    ok = ok_rows(frame)
    ok = ok[numeric(ok, x_column).notna() & (numeric(ok, "median_ms") > 0)]
    if ok.empty:
        return ok.assign(group=[], on_frontier=[])
    keys = row_keys(ok, with_run_key(GROUP_COLUMNS, ok))
    shown = varying(ok, [*GROUP_COLUMNS, "run_id"]) or ["device"]
    labels = pd.Series([label(r, shown) for r in ok.to_dict("records")], index=ok.index)
    frontier = pd.Series(False, index=ok.index)
    for _, members in ok.groupby(keys, sort=False):
        mask = pareto_mask(numeric(members, x_column), numeric(members, "median_ms"))
        frontier[members.index] = mask
    return ok.assign(group=labels, on_frontier=frontier)


def pareto_chart(points: pd.DataFrame, x_column: str, x_title: str, title: str, key: str,
                 describe: Any) -> Chart:
    fig = go.Figure()
    colours = palette_map(points["group"])
    for group, members in points.groupby("group", sort=True):
        colour = colours[str(group)]
        members = members.assign(_x=numeric(members, x_column)).sort_values("_x")
        rows = members.to_dict("records")
        fig.add_trace(go.Scatter(
            x=members["_x"], y=numeric(members, "median_ms"), mode="markers",
            name=esc(f"{group}: all cases"), legendgroup=esc(group),
            marker={"color": colour, "opacity": 0.35, "size": 7},
            hovertext=[hover(r, describe(r), params_line(r)) for r in rows], hoverinfo="text"))
        front = members[members["on_frontier"]]
        front_rows = front.to_dict("records")
        labelled = len(front_rows) <= MAX_LABELS
        fig.add_trace(go.Scatter(
            x=front["_x"], y=numeric(front, "median_ms"),
            mode="lines+markers+text" if labelled else "lines+markers",
            line={"color": colour, "shape": "hv", "width": 2},
            marker={"color": colour, "size": 10, "line": {"color": "#222", "width": 1}},
            text=[esc(r.get("name")) for r in front_rows],
            # labels point inwards so the ones at the right edge are not cut off
            textposition=["top right" if i < (len(front_rows) + 1) // 2 else "top left"
                          for i in range(len(front_rows))],
            textfont={"size": 10}, name=esc(f"{group}: frontier"), legendgroup=esc(group),
            hovertext=[hover(r, "<i>on the Pareto frontier</i>", describe(r), params_line(r))
                       for r in front_rows], hoverinfo="text"))
    new_figure(title, x_title, "median latency (ms, log)", height=520, fig=fig,
               legend={"title": {"text": "device · batch"}})
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return Chart(key, figure_dict(fig),
                 "Frontier points (outlined, joined) are those no other case of the same device "
                 "and batch beats on both axes; the faded points are beaten by one of them.")


def build(report: ReportInput) -> Section | None:
    frame = report.frame
    blocks: list[Any] = []
    by_params = pareto_points(frame, "params_total")
    if len(by_params) >= 2:
        blocks.append(pareto_chart(
            by_params, "params_total", "parameters (count, log)",
            "Pareto frontier: latency against parameters", "pareto-params",
            lambda r: f"{si(r.get('params_total'))} parameters"))
    by_error = pareto_points(frame, "fidelity_rel_l2")
    by_error = by_error[numeric(by_error, "fidelity_rel_l2") > 0]
    if len(by_error) >= 2:
        by_error = pareto_points(by_error, "fidelity_rel_l2")
        blocks.append(pareto_chart(
            by_error, "fidelity_rel_l2", "relative L2 error vs the fp32 model (log)",
            "Pareto frontier: latency against fidelity error", "pareto-fidelity",
            lambda r: f"rel. L2 error {fmt(r.get('fidelity_rel_l2'), 3)}"))
        blocks.append(Html('<p class="muted">Only transformed cases carry a fidelity error; '
                           "the fp32 reference itself (error 0) cannot sit on a log axis and is "
                           "left out of this chart.</p>"))
    if not blocks:
        return None
    return Section("pareto", "Pareto frontier", tuple(blocks))
