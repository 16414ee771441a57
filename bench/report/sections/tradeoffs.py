"""Trade-offs, per model family: latency against fidelity and against the memory the model
adds above the runtime, with precision as colour, pruning as symbol, the fp32 unpruned twin as
the reference, and a Pareto frontier per batch size.

This is the view that answers "which knobs buy speed, and what do they cost": one figure per
family (a model at one input size, device and mode), since a frontier across families would
crown a small model for being small. Memory is shown above the runtime's own footprint, which
is most of the peak RSS of a small model (torch alone is ~300 MiB) and the same for every case.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bench.decide.answer import FAMILY_COLUMNS, family_label
from bench.decide.metrics import with_derived
from bench.report.chart_data import numeric, ok_rows
from bench.report.figures import figure_dict, hover
from bench.report.model import Chart, Html, ReportInput, Section
from bench.report.style import PRECISION_COLOURS, TEMPLATE, colour_for, esc, fmt
from bench.stats import pareto_mask

#: Pruning method -> marker symbol (colour is precision's).
PRUNE_SYMBOLS = {"none": "circle", "unstructured": "x", "structured": "diamond",
                 "semi-structured-2:4": "square"}
BATCH_DASHES = ("solid", "dash", "dot", "dashdot")
#: Families drawn at most (the most populated first); the rest are named below the charts.
MAX_FAMILIES = 8
#: Point labels per panel at most: the frontier and the reference are labelled first.
MAX_LABELS = 14
MIB = 2 ** 20
#: Within a family, these tell its cases apart besides precision and pruning.
ARCH_COLUMNS = ("depth", "width", "activation", "batch_size")


def tradeoff_points(frame: pd.DataFrame) -> pd.DataFrame:
    """Measured cases with a latency, each with `family` (its label without the batch),
    `batch`, `reference` (fp32 and unpruned), `fidelity` (top-1 agreement, or relative L2
    error where no top-1 was recorded), `memory_mib` (above the runtime), `tag` (a short
    label: "bf16 s25%") and `front_fidelity` / `front_memory` (on the Pareto frontier of its
    family and batch)."""
    ok = ok_rows(frame)
    ok = ok[numeric(ok, "median_ms") > 0]
    if ok.empty:
        return ok.assign(family=[], batch=[], reference=[], fidelity=[], memory_mib=[],
                         tag=[], front_fidelity=[], front_memory=[])
    ok = with_derived(ok)
    wanted = dict.fromkeys((*FAMILY_COLUMNS, *ARCH_COLUMNS, "precision", "prune_method",
                            "prune_ratio"))
    records = ok[[c for c in wanted if c in ok.columns]].to_dict("records")
    family = [family_label({**r, "batch_size": None}) for r in records]
    precision = ok.get("precision", pd.Series("fp32", index=ok.index)).fillna("fp32").astype(str)
    method = ok.get("prune_method", pd.Series("none", index=ok.index)).fillna("none").astype(str)
    reference = ((precision == "fp32") & (method == "none")).to_numpy()
    fidelity, perfect = numeric(ok, "fidelity_top1_agreement"), 1.0
    if fidelity.notna().sum() < 2:
        fidelity, perfect = numeric(ok, "fidelity_rel_l2"), 0.0
    # the reference is the fp32 model itself: where its own fidelity was not recorded (an
    # older record), it is exact by definition, so it still anchors the fidelity axis
    fidelity = fidelity.where(~(reference & fidelity.isna()) | fidelity.isna().all(), perfect)
    out = ok.assign(
        family=family, batch=numeric(ok, "batch_size").fillna(1.0), reference=reference,
        fidelity=fidelity, memory_mib=numeric(ok, "memory_above_runtime_bytes") / MIB,
        tag="", front_fidelity=False, front_memory=False)
    for _, members in out.groupby("family", sort=False):  # name what varies in the family
        vary = [c for c in ARCH_COLUMNS if c in members.columns
                and members[c].astype(str).nunique() > 1]
        out.loc[members.index, "tag"] = [_tag(r, vary) for r in members.to_dict("records")]
    higher_better = fidelity is not None and fidelity.name != "fidelity_rel_l2"
    for _, members in out.groupby(["family", "batch"], sort=False):
        latency = numeric(members, "median_ms").to_numpy()
        fid = members["fidelity"].to_numpy(dtype=float)
        out.loc[members.index, "front_fidelity"] = pareto_mask(
            latency, -fid if higher_better else fid)
        out.loc[members.index, "front_memory"] = pareto_mask(
            latency, members["memory_mib"].to_numpy(dtype=float))
    return out


def _tag(row: Mapping[str, Any], vary: Sequence[str] = ()) -> str:
    """A label that fits beside a point: what varies in its family (d4 w512 b32), the
    precision, then pruning as u50% / s25%."""
    prefixes = {"depth": "d", "width": "w", "batch_size": "b", "activation": ""}
    parts = [f"{prefixes[c]}{_short(row.get(c))}" for c in vary]
    parts.append(str(row.get("precision") or "fp32"))
    method = row.get("prune_method")
    if method not in (None, "none") and method == method:
        short = {"unstructured": "u", "structured": "s", "semi-structured-2:4": "2:4 "}
        ratio = row.get("prune_ratio")
        ratio = float(ratio) if ratio is not None and ratio == ratio else 0.0
        parts.append(f"{short.get(str(method), str(method))}{ratio * 100:g}%")
    return " ".join(parts)


def _short(value: Any) -> str:
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def log_ticks(values: Sequence[float] | np.ndarray) -> tuple[list[float], list[str]]:
    """Ticks at 1, 2 and 5 times powers of ten inside the data's range (only powers of ten
    when it spans more than three decades): a few readable labels instead of every minor
    tick of plotly's log axis."""
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data) & (data > 0)]
    if not data.size:
        return [], []
    low, high = float(data.min()), float(data.max())
    steps = (1.0,) if math.log10(high / low) > 3 else (1.0, 2.0, 5.0)
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(low)) - 1,
                                          math.ceil(math.log10(high)) + 1) for m in steps]
    inside = [t for t in ticks if low / 1.5 <= t <= high * 1.5]
    if len(inside) < 2:  # a narrow range: the ends themselves
        inside = [low, high]
    return inside, [fmt(t, 3) for t in inside]


def tradeoff_chart(points: pd.DataFrame, family: str, key: str) -> Chart:
    has_memory = bool(points["memory_mib"].notna().any())
    has_fidelity = points["fidelity"].nunique(dropna=True) > 1 or not has_memory
    fidelity_is_top1 = "fidelity_top1_agreement" in points.columns and \
        numeric(points, "fidelity_top1_agreement").notna().sum() >= 2
    panels = ([("fidelity", "front_fidelity")] if has_fidelity else []) + \
        ([("memory_mib", "front_memory")] if has_memory else [])
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.1, shared_yaxes=True)
    batches = sorted(points["batch"].unique())
    shown_legend: set[str] = set()
    for col, (column, front_column) in enumerate(panels, start=1):
        data = points[points[column].notna()]
        # every case: colour = precision, symbol = pruning method
        for (precision, method), members in data.groupby(["precision", "prune_method"],
                                                         sort=True, dropna=False):
            name = f"{precision} · {'unpruned' if method == 'none' else method}"
            rows = members.to_dict("records")
            is_ref = members["reference"].to_numpy(dtype=bool)
            fig.add_trace(go.Scatter(
                x=members[column], y=numeric(members, "median_ms"), mode="markers",
                name=esc(name), legendgroup=esc(name), showlegend=name not in shown_legend,
                marker={"color": colour_for(precision, PRECISION_COLOURS),
                        "symbol": [("star" if r else PRUNE_SYMBOLS.get(str(method), "circle"))
                                   for r in is_ref],
                        "size": [16 if r else 10 for r in is_ref],
                        "line": {"color": "#222", "width": [1.5 if r else 0.5 for r in is_ref]}},
                error_y=_ci(members),
                hovertext=[hover(r, _describe(r)) for r in rows], hoverinfo="text"),
                row=1, col=col)
            shown_legend.add(name)
        # one frontier per batch, as a step line through its points
        for b_index, batch in enumerate(batches):
            front = data[(data["batch"] == batch) & data[front_column]].sort_values(column)
            if len(front) < 2:
                continue
            fig.add_trace(go.Scatter(
                x=front[column], y=numeric(front, "median_ms"), mode="lines",
                line={"color": "#444", "width": 1.2,
                      "dash": BATCH_DASHES[b_index % len(BATCH_DASHES)],
                      "shape": "hv" if column == "memory_mib" else "vh"},
                name=esc(f"frontier, batch {batch:g}"), legendgroup=f"front-{batch:g}",
                showlegend=col == 1, hoverinfo="skip"), row=1, col=col)
        _labels(fig, data, column, front_column, col)
    latency = numeric(points, "median_ms")
    tickvals, ticktext = log_ticks(pd.concat([latency, numeric(points, "ci_low_ms"),
                                              numeric(points, "ci_high_ms")]))
    fig.update_yaxes(type="log", tickvals=tickvals, ticktext=ticktext)
    fig.update_xaxes(zeroline=False)
    fig.update_yaxes(title_text="median latency (ms, log)", row=1, col=1)
    fidelity_title = ("top-1 agreement with fp32 (higher is better)" if fidelity_is_top1
                      else "relative L2 error vs fp32 (lower is better)")
    if has_fidelity:
        fig.update_xaxes(title_text=esc(fidelity_title), row=1, col=1)
        if fidelity_is_top1:
            fig.update_xaxes(range=[-0.05, 1.08], tickformat=".0%", row=1, col=1)
    if has_memory:
        fig.update_xaxes(title_text="memory above the runtime (MiB)", rangemode="tozero",
                         row=1, col=len(panels))
    fig.update_layout(template=TEMPLATE, height=480,
                      title={"text": esc(f"{family}: latency against " + " and ".join(
                          "fidelity" if c == "fidelity" else "memory" for c, _ in panels)),
                             "x": 0.01, "xanchor": "left"},
                      legend={"title": {"text": "precision · pruning"}},
                      margin={"l": 70, "r": 40, "t": 70, "b": 60})
    return Chart(key, figure_dict(fig))


def _ci(members: pd.DataFrame) -> dict[str, Any]:
    median = numeric(members, "median_ms")
    return {"type": "data", "symmetric": False, "thickness": 1, "width": 0,
            "color": "rgba(80,80,80,0.45)",
            "array": (numeric(members, "ci_high_ms") - median).clip(lower=0).fillna(0),
            "arrayminus": (median - numeric(members, "ci_low_ms")).clip(lower=0).fillna(0)}


def _describe(row: Mapping[str, Any]) -> str:
    parts = []
    if row.get("reference"):
        parts.append("<i>the fp32 unpruned reference</i>")
    for column, label in (("fidelity_top1_agreement", "top-1 agreement"),
                          ("fidelity_rel_l2", "rel. L2 error")):
        if fmt(row.get(column)) != "–":
            parts.append(f"{label} {fmt(row.get(column), 3)}")
    if fmt(row.get("memory_mib")) != "–":
        parts.append(f"{fmt(row.get('memory_mib'), 3)} MiB above the runtime")
    return "<br>".join(parts)


def _labels(fig: go.Figure, data: pd.DataFrame, column: str, front_column: str,
            col: int) -> None:
    """Short labels for the reference and the frontier points (up to MAX_LABELS), placed
    towards the middle of the panel so none is cut at an edge, and skipped where a label
    already stands (points that coincide)."""
    chosen = data[data["reference"] | data[front_column]]
    chosen = chosen.sort_values(["reference", "median_ms"], ascending=[False, True])
    if chosen.empty:
        return
    xs = data[column].astype(float)
    span = float(xs.max() - xs.min()) or 1.0
    log_y = np.log10(numeric(data, "median_ms").clip(lower=1e-12))
    y_span = float(log_y.max() - log_y.min()) or 1.0
    placed: list[tuple[float, float]] = []
    keep = []
    for index, row in chosen.iterrows():
        x = (float(row[column]) - float(xs.min())) / span
        y = (math.log10(max(float(row["median_ms"]), 1e-12)) - float(log_y.min())) / y_span
        if any(abs(x - px) < 0.12 and abs(y - py) < 0.05 for px, py in placed):
            continue
        placed.append((x, y))
        keep.append(index)
        if len(keep) >= MAX_LABELS:
            break
    chosen = chosen.loc[keep]
    middle = (xs.min() + xs.max()) / 2
    positions = [("top " if ref else "middle ") + ("right" if x <= middle else "left")
                 for x, ref in zip(chosen[column].astype(float), chosen["reference"],
                                   strict=True)]
    fig.add_trace(go.Scatter(
        x=chosen[column], y=numeric(chosen, "median_ms"), mode="text",
        text=[f"  {esc(t)}  " for t in chosen["tag"]], textposition=positions,
        textfont={"size": 10, "color": "#333"}, showlegend=False, hoverinfo="skip",
        cliponaxis=False), row=1, col=col)


def runtime_note(points: pd.DataFrame) -> str:
    runtime = numeric(points, "rss_before_build_bytes").dropna() / MIB
    if runtime.empty:
        return ("Memory above the runtime needs the worker's RSS before the model is built "
                "(`rss_before_build_bytes`), which this run did not record.")
    return (f"Memory above the runtime = the worker's peak RSS less its RSS just before the "
            f"model was built (Python, torch and archbench loaded, nothing of the model yet), "
            f"both measured in every case's own worker. The runtime itself took "
            f"{fmt(runtime.min(), 3)}–{fmt(runtime.max(), 3)} MiB here (median "
            f"{fmt(runtime.median(), 3)} MiB), most of every case's peak.")


def build(report: ReportInput) -> Section | None:
    points = tradeoff_points(report.frame)
    if points.empty or not (points["fidelity"].notna().any() or
                            points["memory_mib"].notna().any()):
        return None  # latency alone is the scaling section's
    sizes = points.groupby("family").size().sort_values(ascending=False)
    families = [f for f in sizes.index if sizes[f] >= 2][:MAX_FAMILIES]
    if not families:
        return None
    blocks: list[Any] = [Html(
        '<p class="muted">One figure per model family. Colour is the precision, the symbol the '
        "pruning method (○ none, × unstructured, ◇ structured, □ 2:4); the star is the fp32 "
        "unpruned reference each case is measured against. Lines join each batch size's "
        "Pareto frontier: cases no other case of that batch beats on both axes. Bars are the "
        "95% confidence interval of the median.</p>")]
    for index, family in enumerate(families):
        blocks.append(tradeoff_chart(points[points["family"] == family], family,
                                     f"tradeoff-{index}"))
    blocks.append(Html(f'<p class="muted">{esc(runtime_note(points))}</p>'))
    left_out = [f for f in sizes.index if f not in families]
    if left_out:
        blocks.append(Html(f'<p class="muted">Not drawn ({len(left_out)} families with a single '
                           f"case or beyond the first {MAX_FAMILIES}): "
                           f"{esc(', '.join(map(str, left_out)))}.</p>"))
    return Section("tradeoffs", "Trade-offs per model family", tuple(blocks))
