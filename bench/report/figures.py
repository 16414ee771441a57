"""Building blocks for the report's plotly figures: titled axes, hover text, log toggles.

Every figure is made through `new_figure`, so each has a title, a small template and axis
titles with units; hover text is built by `hover`, which escapes the case name and lists the
key numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from bench.report.style import TEMPLATE, esc, fmt, interval, si


def new_figure(title: str, x_title: str, y_title: str, *, height: int = 420,
               fig: go.Figure | None = None, **layout: Any) -> go.Figure:
    """A figure with our template, an (escaped) title and axis titles (give units in them).

    Pass `fig` to style a figure made by `make_subplots`; its extra axes get titles through
    `title_axes`.
    """
    fig = fig if fig is not None else go.Figure()
    fig.update_layout(template=TEMPLATE, height=height,
                      title={"text": esc(title), "x": 0.01, "xanchor": "left"}, **layout)
    fig.update_xaxes(title_text=esc(x_title))
    fig.update_yaxes(title_text=esc(y_title))
    return fig


def figure_dict(fig: go.Figure) -> dict[str, Any]:
    return dict(fig.to_plotly_json())


def hover(row: Mapping[str, Any], *lines: str) -> str:
    """Hover text: the case name in bold, its median with the CI, then `lines` (markup that
    the caller built from numbers and escaped text)."""
    name = esc(row.get("name") or "?")
    head = f"<b>{name}</b>"
    median = row.get("median_ms")
    timing = ""
    if median is not None and fmt(median) != "–":
        timing = f"median {fmt(median)} ms"
        if fmt(row.get("ci_rel")) != "–":
            timing += f" {esc(interval(row))}"
    parts = [head, timing, *lines]
    return "<br>".join(p for p in parts if p)


def labelled(row: Mapping[str, Any],
             labels: Sequence[tuple[str, Callable[[Any], str]]]) -> str:
    """The labels of the keys that hold a value in `row`, joined with ' · '."""
    return " · ".join(label(row.get(key)) for key, label in labels
                      if fmt(row.get(key)) != "–")


def params_line(row: Mapping[str, Any]) -> str:
    return labelled(row, [("params_total", lambda v: f"{si(v)} params"),
                          ("flops_per_item", lambda v: f"{si(v, 'FLOP')}/item"),
                          ("throughput_items_s", lambda v: f"{si(v)} items/s")])


def axis_type_buttons(fig: go.Figure, *, default: str = "log", x: bool = True,
                      y: bool = True) -> None:
    """Buttons switching every subplot's axes between log and linear scales."""
    names = [key for key in fig.layout.to_plotly_json()
             if (x and key.startswith("xaxis")) or (y and key.startswith("yaxis"))]
    names = names or [n for n, wanted in (("xaxis", x), ("yaxis", y)) if wanted]

    def args(kind: str) -> dict[str, str]:
        return {f"{name}.type": kind for name in names}

    fig.update_layout(updatemenus=[{
        "type": "buttons", "direction": "left", "x": 1.0, "xanchor": "right", "y": 1.08,
        "yanchor": "bottom", "showactive": True, "active": 0 if default == "log" else 1,
        "buttons": [{"label": "log axes", "method": "relayout", "args": [args("log")]},
                    {"label": "linear axes", "method": "relayout", "args": [args("linear")]}],
    }])
    fig.update_layout(args(default))


def add_line(fig: go.Figure, *, text: str, x: float | None = None, y: float | None = None,
             band: float | None = None) -> None:
    """A labelled reference line across the plot: horizontal at `y` or vertical at `x`; with
    `band`, a shaded band of ±band around the vertical line instead.

    Shapes and labels go in as dicts, which the layout validates itself, rather than through
    plotly's add_hline/add_vrect helpers, which build them from separately loaded classes.
    """
    line = {"color": "#555", "width": 1, "dash": "dot"}
    if y is not None:
        shape = {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": y,
                 "y1": y, "line": line}
        note = {"xref": "paper", "x": 1, "xanchor": "right", "yref": "y", "y": y,
                "yanchor": "top", "text": esc(text), "showarrow": False}
    elif band is not None and x is not None:
        shape = {"type": "rect", "xref": "x", "x0": x - band, "x1": x + band, "yref": "paper",
                 "y0": 0, "y1": 1, "fillcolor": "#999", "opacity": 0.15, "line": {"width": 0},
                 "layer": "below"}
        note = {"xref": "x", "x": x - band, "xanchor": "left", "yref": "paper", "y": 1,
                "yanchor": "bottom", "text": esc(text), "showarrow": False}
    else:
        shape = {"type": "line", "xref": "x", "x0": x, "x1": x, "yref": "paper", "y0": 0,
                 "y1": 1, "line": {**line, "dash": "solid"}}
        note = None
    fig.update_layout(shapes=[*fig.layout.shapes, shape],
                      annotations=[*fig.layout.annotations, *([note] if note else [])])


def title_axes(fig: go.Figure, x_title: str, y_title: str) -> None:
    """Give every axis of a subplot grid the same titles (escaped)."""
    fig.for_each_xaxis(lambda axis: axis.update(title_text=esc(x_title)))
    fig.for_each_yaxis(lambda axis: axis.update(title_text=esc(y_title)))


def escaped(values: Iterable[Any]) -> list[str]:
    return [esc(v) for v in values]
