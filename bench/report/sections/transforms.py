"""Pruning and precision: speed-up against the untransformed case, and what it cost in fidelity.

Speed-ups compare each case with its reference in the same run: the same case unpruned (for
pruning) or in fp32 (for precision). Error bars come from the two medians' confidence
intervals, so a speed-up of 1.02 with a bar across 1 is no speed-up at all.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from bench.report.chart_data import (
    PARAM_COLUMNS,
    label,
    numeric,
    present,
    row_dicts,
    row_keys,
    varying,
    with_reference,
    with_run_key,
)
from bench.report.figures import add_line, figure_dict, hover, labelled, new_figure
from bench.report.model import Chart, Html, ReportInput, Section
from bench.report.style import PRECISION_COLOURS, PRUNE_COLOURS, colour_for, esc, fmt, pct

PRUNE_ORDER = ("unstructured", "structured", "semi-structured-2:4")


# ---- data -----------------------------------------------------------------------------------
def pruning_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Pruned cases that have their unpruned twin in the same run, with the speed-up."""
    if not present(frame, "prune_method"):
        return frame.iloc[0:0]
    out = with_reference(frame, ("prune_method", "prune_ratio", "prune_scope"),
                         {"prune_method": "none"})
    return out[out["speedup"].notna()] if "speedup" in out else out


def precision_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Cases in another precision that have their fp32 twin in the same run, with speed-up."""
    if not present(frame, "precision"):
        return frame.iloc[0:0]
    out = with_reference(frame, ("precision",), {"precision": "fp32"})
    return out[out["speedup"].notna()] if "speedup" in out else out


def method_summary(pruned: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per pruning method: cases, median speed-up, and the median achieved FLOPs ratio where
    the transform recorded it (1.0 = the kernels still do all the work)."""
    out: dict[str, dict[str, float]] = {}
    for method, rows in pruned.groupby(pruned["prune_method"].astype(str)):
        entry = {"n": float(len(rows)), "speedup": float(numeric(rows, "speedup").median())}
        if present(rows, "prune_flops_ratio"):
            entry["flops_ratio"] = float(numeric(rows, "prune_flops_ratio").median())
        if present(rows, "prune_sparsity"):
            entry["sparsity"] = float(numeric(rows, "prune_sparsity").median())
        out[method] = entry
    return out


# ---- charts ---------------------------------------------------------------------------------
def _line_groups(rows: pd.DataFrame, exclude: tuple[str, ...]) -> Any:
    """Rows grouped into lines: equal in every parameter but those in `exclude`."""
    columns = [c for c in PARAM_COLUMNS if c not in exclude]
    return rows.groupby(row_keys(rows, with_run_key(columns, rows)), sort=False)


#: Per precision within a pruning chart (the colour is the method's).
DASHES = ("solid", "dash", "dot", "dashdot")
SYMBOLS = ("circle", "square", "triangle-up", "diamond")


def pruning_chart(pruned: pd.DataFrame, metric: str, y_title: str, key: str, *,
                  log_y: bool = False) -> Chart:
    """One trace per method holding all its lines (one per pruned architecture), split by
    gaps: a sweep of hundreds of architectures stays a handful of traces to draw."""
    fig = go.Figure()
    architecture = [c for c in varying(pruned, PARAM_COLUMNS) if c not in
                    ("prune_method", "prune_ratio", "prune_scope")]
    records = row_dicts(pruned)
    ratio = numeric(pruned, "prune_ratio")
    value = numeric(pruned, metric)
    low = (value - numeric(pruned, "speedup_low")).clip(lower=0).fillna(0)
    high = (numeric(pruned, "speedup_high") - value).clip(lower=0).fillna(0)
    traces: dict[tuple[str, str], dict[str, list[Any]]] = {}
    # precisions of one method get a symbol each and a small sideways nudge, so fp32 and bf16
    # at the same ratio do not hide each other
    precisions = sorted(pruned["precision"].astype(str).unique()) if "precision" in pruned \
        else ["fp32"]
    for _, line in _line_groups(pruned, ("prune_ratio",)):
        index = ratio[line.index].sort_values(kind="stable").index
        method = str(pruned.at[index[0], "prune_method"])
        precision = str(pruned.at[index[0], "precision"]) if "precision" in pruned else "fp32"
        nudge = 0.008 * (precisions.index(precision) - (len(precisions) - 1) / 2)
        arch = label(records[index[0]], architecture) if architecture else "the model"
        trace = traces.setdefault((method, precision), {"x": [], "y": [], "hover": [],
                                                        "low": [], "high": []})
        if trace["x"]:  # a gap between two architectures' lines
            for part, gap in (("x", None), ("y", None), ("hover", ""), ("low", 0), ("high", 0)):
                trace[part].append(gap)
        for i in index:
            r = records[i]
            trace["x"].append(float(ratio[i]) + nudge)
            trace["y"].append(float(value[i]))
            trace["low"].append(float(low[i]))
            trace["high"].append(float(high[i]))
            trace["hover"].append(hover(
                r, f"{esc(method)} {pct(r.get('prune_ratio'))} of {esc(arch)}",
                _speedup_line(r), _fidelity_line(r), _sparsity_line(r)))
    order = {m: i for i, m in enumerate(PRUNE_ORDER)}
    for method, precision in sorted(traces, key=lambda k: (order.get(k[0], 99), k)):
        trace = traces[(method, precision)]
        error = ({"type": "data", "symmetric": False, "array": trace["high"],
                  "arrayminus": trace["low"], "thickness": 1, "width": 3}
                 if metric == "speedup" else None)
        name = f"{method} · {precision}" if len(precisions) > 1 else method
        fig.add_trace(go.Scatter(
            x=trace["x"], y=trace["y"], mode="lines+markers", connectgaps=False,
            name=esc(name), line={"color": colour_for(method, PRUNE_COLOURS),
                                  "dash": DASHES[precisions.index(precision) % len(DASHES)]},
            marker={"symbol": SYMBOLS[precisions.index(precision) % len(SYMBOLS)], "size": 8},
            error_y=error, hovertext=trace["hover"], hoverinfo="text"))
    new_figure(f"Pruning: {y_title} against pruning ratio, one line per method"
               + (" and precision" if len(precisions) > 1 else ""),
               "pruning ratio (share of weights or channels removed, %)", y_title, fig=fig,
               legend={"title": {"text": "method"}})
    fig.update_xaxes(range=[-0.03, 1.0], tickformat=".0%")
    if metric == "speedup":
        add_line(fig, y=1.0, text="1× = no faster than unpruned")
    if log_y:
        fig.update_yaxes(type="log")
    return Chart(key, figure_dict(fig))


def _speedup_line(row: dict[str, Any]) -> str:
    """The speed-up over the reference with its interval and what the interval rests on."""
    return (f"speed-up ×{fmt(row.get('speedup'), 3)} [{fmt(row.get('speedup_low'), 3)}, "
            f"{fmt(row.get('speedup_high'), 3)}] vs {esc(row.get('ref_name'))} "
            f"({fmt(row.get('ref_median_ms'))} ms; {esc(row.get('speedup_basis') or '–')})")


def _fidelity_line(row: dict[str, Any]) -> str:
    return labelled(row, [("fidelity_rel_l2", lambda v: f"rel. L2 error {fmt(v, 3)}"),
                          ("fidelity_top1_agreement", lambda v: f"top-1 agreement {pct(v)}")])


def _sparsity_line(row: dict[str, Any]) -> str:
    return labelled(row, [("prune_sparsity", lambda v: f"sparsity {pct(v)}"),
                          ("prune_flops_ratio", lambda v: f"FLOPs ×{fmt(v, 3)}")])


def masked_note(summary: dict[str, dict[str, float]]) -> str:
    """Plain words on what pruning can and cannot speed up, with the run's own numbers."""
    measured = []
    for method in [m for m in PRUNE_ORDER if m in summary] + sorted(set(summary) -
                                                                    set(PRUNE_ORDER)):
        entry = summary[method]
        text = f"{esc(method)}: median speed-up ×{fmt(entry['speedup'], 3)} over " \
               f"{int(entry['n'])} case(s)"
        if "flops_ratio" in entry:
            text += f", FLOPs ×{fmt(entry['flops_ratio'], 3)} of the unpruned model"
        measured.append(f"<li>{text}</li>")
    return (
        '<div class="callout"><b>Masked (unstructured) pruning does not make dense kernels '
        "faster.</b> It zeroes weights through a mask: every tensor keeps its shape, so a dense "
        "matrix multiply does exactly the same work, zeros included, and runs at the same "
        "speed (expect ×1.0; the sparsity shows up in fidelity, not latency). Structured "
        "pruning removes whole neurons, channels or heads, so the layers really shrink and can "
        "run faster. 2:4 semi-structured sparsity can be faster only on CUDA sparse tensor "
        "cores in fp16/bf16."
        f"<p>Measured in this report:</p><ul>{''.join(measured)}</ul></div>")


def precision_chart(rows: pd.DataFrame, metric: str, y_title: str, key: str, *,
                    log_y: bool = False) -> Chart:
    """A box of cases per precision (and device, where there are several): the precision is
    on the axis, not only in the legend."""
    fig = go.Figure()
    several_devices = "device" in rows and rows["device"].astype(str).nunique() > 1
    for precision in sorted(rows["precision"].astype(str).unique()):
        subset = rows[rows["precision"].astype(str) == precision]
        values = numeric(subset, metric)
        if values.notna().sum() == 0:
            continue
        records = subset.to_dict("records")
        where = (precision + " · " + subset["device"].astype(str) if several_devices
                 else pd.Series(precision, index=subset.index))
        fig.add_trace(go.Box(
            x=where.map(esc), y=values, name=esc(precision),
            marker={"color": colour_for(precision, PRECISION_COLOURS)},
            boxpoints="all", jitter=0.3, pointpos=0, hoveron="points",
            hovertext=[hover(r, _speedup_line(r), _fidelity_line(r))
                       for r in records], hoverinfo="text"))
    new_figure(f"Precision: {y_title} per precision" + (" and device" if several_devices
                                                         else ""),
               "precision · device" if several_devices else "precision", y_title, fig=fig,
               legend={"title": {"text": "precision"}})
    if metric == "speedup":
        add_line(fig, y=1.0, text="1× = as fast as fp32")
    if log_y:
        fig.update_yaxes(type="log")
    return Chart(key, figure_dict(fig))


def build_pruning(report: ReportInput) -> Section | None:
    pruned = pruning_frame(report.frame)
    if pruned.empty:
        return None
    blocks: list[Any] = [Html(masked_note(method_summary(pruned))),
                         pruning_chart(pruned, "speedup", "speed-up vs unpruned (×)",
                                       "pruning-speedup")]
    # fidelity is measured against the fp32 model: only fp32 cases show pruning's own error
    fp32 = pruned[pruned["precision"].astype(str) == "fp32"] if "precision" in pruned else pruned
    if present(fp32, "fidelity_rel_l2"):
        blocks.append(pruning_chart(fp32, "fidelity_rel_l2",
                                    "relative L2 error vs the unpruned fp32 output",
                                    "pruning-fidelity", log_y=True))
    return Section("pruning", "Pruning", tuple(blocks))


def build_precision(report: ReportInput) -> Section | None:
    rows = precision_frame(report.frame)
    if rows.empty:
        return None
    blocks: list[Any] = [
        Html("<p>Each point is one case against the same case in fp32 on the same device. "
             "Low precision is not free everywhere: bf16 on a CPU without AVX512-BF16/AMX is "
             "emulated and slower than fp32.</p>"),
        precision_chart(rows, "speedup", "speed-up vs fp32 (×)", "precision-speedup")]
    # fidelity is measured against the unpruned fp32 model: only unpruned cases show the
    # error of the precision alone
    unpruned = rows[rows["prune_method"].astype(str) == "none"] if "prune_method" in rows \
        else rows
    if present(unpruned, "fidelity_rel_l2"):
        blocks.append(precision_chart(unpruned, "fidelity_rel_l2",
                                      "relative L2 error vs the fp32 output (unpruned cases)",
                                      "precision-error", log_y=True))
    return Section("precision", "Precision", tuple(blocks))
