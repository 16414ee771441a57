"""Memory peaks, GPU telemetry timelines and energy per item (columns of the collectors)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bench.report.chart_data import numeric, ok_rows, present, structure
from bench.report.figures import figure_dict, hover, new_figure
from bench.report.model import Chart, Html, ReportInput, Section
from bench.report.style import PALETTE, PRECISION_COLOURS, colour_for, esc, fmt, palette_map

#: (column, label) of host-side and device-side peaks, in the order drawn.
HOST_MEMORY = (("peak_rss_timed_bytes", "peak RSS, timed window"),
               ("peak_rss_bytes", "peak RSS, whole case"),
               ("weight_bytes", "model weights, as stored"))
DEVICE_MEMORY = (("cuda_max_allocated_timed_bytes", "CUDA max allocated, timed window"),
                 ("cuda_max_reserved_timed_bytes", "CUDA max reserved, timed window"),
                 ("nvml_process_used_bytes", "process memory seen by NVML"))
#: Memory bars are drawn for this many cases at most: the largest peaks.
MAX_MEMORY_CASES = 30
#: (key in info["telemetry"], label with unit, scale applied) in the order drawn.
TELEMETRY = (("gpu_util_pct", "GPU utilisation (%)", 1.0),
             ("power_w", "power (W)", 1.0),
             ("sm_clock_mhz", "SM clock (MHz)", 1.0),
             ("temperature_c", "temperature (°C)", 1.0),
             ("rss_bytes", "host RSS (MiB)", 1 / 2**20))
MAX_TIMELINES = 10


# ---- data -----------------------------------------------------------------------------------
def memory_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Long form: one row per (case, memory metric) with `side` (host/device) and `mib`.
    Only measured cases and metrics with values; the cases with the largest peak first."""
    ok = ok_rows(frame)
    measured = [c for c, _ in (*HOST_MEMORY, *DEVICE_MEMORY)
                if c != "weight_bytes" and present(ok, c)]
    if ok.empty or not measured:
        return pd.DataFrame(columns=["name", "side", "metric", "mib", "peak_mib"])
    peak = pd.concat([numeric(ok, c) for c in measured], axis=1).max(axis=1) / 2**20
    rows = []
    for side, metrics in (("host", HOST_MEMORY), ("device", DEVICE_MEMORY)):
        for column, metric in metrics:
            if not present(ok, column):
                continue
            values = numeric(ok, column) / 2**20
            for index, value in values.items():
                if np.isfinite(value):
                    rows.append({"name": ok.at[index, "name"], "side": side, "metric": metric,
                                 "mib": float(value), "peak_mib": float(peak[index])})
    out = pd.DataFrame(rows)
    return out.sort_values(["peak_mib", "name"], ascending=[False, True], kind="stable")


def telemetry_series(frame: pd.DataFrame) -> list[tuple[str, dict[str, tuple[list[float],
                                                                             list[float]]]]]:
    """(case name, {series key: (t_s, values)}) for cases whose telemetry has samples."""
    if "telemetry" not in frame.columns:
        return []
    out = []
    for row in ok_rows(frame).to_dict("records"):
        data = structure(row.get("telemetry"))
        if data is None or not data.get("t_s"):
            continue
        times = [float(t) for t in data["t_s"]]
        series = {key: (times, [float(v) if v is not None else np.nan for v in data[key]])
                  for key, _, _ in TELEMETRY
                  if isinstance(data.get(key), list) and len(data[key]) == len(times)
                  and any(v is not None for v in data[key])}
        if series:
            out.append((str(row.get("name")), series))
    return out


def timed_spans(frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Case name -> (first, last) sample time in the timed window, from the telemetry's
    per-sample `phase`; cases without a timed sample are left out."""
    if "telemetry" not in frame.columns:
        return {}
    spans = {}
    for row in ok_rows(frame).to_dict("records"):
        data = structure(row.get("telemetry"))
        if data is None:
            continue
        times, phases = data.get("t_s") or [], data.get("phase") or []
        timed = [float(t) for t, p in zip(times, phases, strict=False) if p == "timed"]
        if timed:
            spans[str(row.get("name"))] = (min(timed), max(timed))
    return spans


# ---- charts ---------------------------------------------------------------------------------
def memory_chart(memory: pd.DataFrame) -> Chart:
    names = list(dict.fromkeys(memory["name"]))[:MAX_MEMORY_CASES]
    memory = memory[memory["name"].isin(names)]
    sides = [s for s in ("host", "device") if (memory["side"] == s).any()]
    fig = make_subplots(rows=1, cols=len(sides), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"{s} memory" for s in sides])
    colours = palette_map(memory["metric"])
    for col, side in enumerate(sides, start=1):
        for metric, rows in memory[memory["side"] == side].groupby("metric", sort=False):
            fig.add_trace(go.Bar(
                y=[esc(n) for n in rows["name"]], x=rows["mib"], orientation="h",
                name=esc(metric), marker={"color": colours[str(metric)]},
                hovertext=[f"<b>{esc(n)}</b><br>{esc(metric)}: {fmt(v)} MiB"
                           for n, v in zip(rows["name"], rows["mib"], strict=True)],
                hoverinfo="text"), row=1, col=col)
    bars_per_case = int(memory.groupby("side")["metric"].nunique().max())
    height = 160 + 14 * len(names) * bars_per_case
    new_figure("Memory peaks per case (MiB)", "memory (MiB)", "case", height=min(height, 4000),
               fig=fig, barmode="group", legend={"title": {"text": "metric"}})
    fig.update_yaxes(autorange="reversed", title_text="")
    fig.update_yaxes(title_text="case", row=1, col=1)
    return Chart("memory", figure_dict(fig))


def telemetry_chart(series: list[tuple[str, dict[str, tuple[list[float], list[float]]]]],
                    spans: Mapping[str, tuple[float, float]] | None = None) -> Chart:
    keys = [k for k, _, _ in TELEMETRY if any(k in s for _, s in series)]
    titles = {k: t for k, t, _ in TELEMETRY}
    scales = {k: f for k, _, f in TELEMETRY}
    fig = make_subplots(rows=len(keys), cols=1, shared_xaxes=True, vertical_spacing=0.06)
    shown = series[:MAX_TIMELINES]
    for index, (name, data) in enumerate(shown):
        colour = PALETTE[index % len(PALETTE)]
        first_key = next(k for k in keys if k in data)
        for row, key in enumerate(keys, start=1):
            if key not in data:
                continue
            times, values = data[key]
            scaled = [v * scales[key] for v in values]
            fig.add_trace(go.Scatter(
                x=times, y=scaled, mode="lines", name=esc(name), legendgroup=esc(name),
                showlegend=key == first_key,
                line={"color": colour},
                hovertext=[f"<b>{esc(name)}</b><br>t = {fmt(t)} s<br>{esc(titles[key])}: "
                           f"{fmt(v)}" for t, v in zip(times, scaled, strict=True)],
                hoverinfo="text"), row=row, col=1)
            span = (spans or {}).get(name)
            if span is not None:  # the timed window drawn over the line, thicker
                fig.add_trace(go.Scatter(
                    x=times, y=[v if span[0] <= t <= span[1] else None
                                for t, v in zip(times, scaled, strict=True)],
                    mode="lines", name=esc(name), legendgroup=esc(name), showlegend=False,
                    line={"color": colour, "width": 4}, hoverinfo="skip"), row=row, col=1)
    new_figure("Telemetry during each case", "time since the case started (s)", "",
               height=140 + 190 * len(keys), fig=fig, legend={"title": {"text": "case"}})
    for row, key in enumerate(keys, start=1):
        fig.update_yaxes(title_text=esc(titles[key]), row=row, col=1)
    fig.update_xaxes(title_text="", row=None)
    fig.update_xaxes(title_text="time since the case started (s)", row=len(keys), col=1)
    note = (f"Showing {len(shown)} of {len(series)} cases with telemetry."
            if len(series) > len(shown) else "")
    marked = " The thick part of each line is the timed window." if spans else ""
    return Chart("telemetry", figure_dict(fig),
                 "Sampled by the parent process, outside the timed worker." + marked + " " + note)


def energy_chart(frame: pd.DataFrame) -> Chart:
    ok = ok_rows(frame)
    ok = ok[numeric(ok, "energy_per_item_j") > 0]
    per_item_ms = numeric(ok, "median_ms") / numeric(ok, "batch_size").fillna(1.0)
    ok = ok.assign(_per_item_ms=per_item_ms)
    fig = go.Figure()
    for precision, rows in ok.groupby(ok.get("precision", pd.Series("fp32", index=ok.index))
                                      .astype(str), sort=True):
        records = rows.to_dict("records")
        fig.add_trace(go.Scatter(
            x=rows["_per_item_ms"], y=numeric(rows, "energy_per_item_j"), mode="markers",
            name=esc(precision), marker={"color": colour_for(precision, PRECISION_COLOURS),
                                         "size": 9},
            hovertext=[hover(r, f"energy {fmt(r.get('energy_per_item_j'))} J/item "
                                f"({esc(r.get('energy_method') or 'method not recorded')})",
                             f"power mean {fmt(r.get('power_mean_w'))} W, max "
                             f"{fmt(r.get('power_max_w'))} W") for r in records],
            hoverinfo="text"))
    new_figure("Energy per item against latency per item", "latency per item (ms, log)",
               "energy per item (J, log)", fig=fig, legend={"title": {"text": "precision"}})
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return Chart("energy", figure_dict(fig),
                 "Energy from the GPU's energy counter where it has one, else the integral of "
                 "sampled power over the timed window (see each point's method).")


def build(report: ReportInput) -> Section | None:
    frame = report.frame
    blocks: list[Any] = []
    memory = memory_frame(frame)
    if not memory.empty:
        cases = memory["name"].nunique()
        blocks.append(memory_chart(memory))
        if cases > MAX_MEMORY_CASES:
            blocks.append(Html(f'<p class="muted">The {MAX_MEMORY_CASES} cases with the largest '
                               f"peaks of {cases}; every case's peaks are in the results "
                               "table.</p>"))
    series = telemetry_series(frame)
    if series:
        blocks.append(telemetry_chart(series, timed_spans(frame)))
    if present(ok_rows(frame), "energy_per_item_j"):
        blocks.append(energy_chart(frame))
    if not blocks:
        return None
    return Section("resources", "Memory, telemetry and energy", tuple(blocks))
