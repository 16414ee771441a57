"""Look and wording shared by every chart and table: colours, number formats, escaping.

Colours are fixed per precision, pruning method, status and verdict so the same value has the
same colour in every chart of a report (and in every report). Escaping lives here so there is
exactly one rule: every string that comes from a suite, a model or an error message passes
through `esc` before it reaches HTML or a chart.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from bench.stats import interval_basis

# ---- escaping -------------------------------------------------------------------------------


def esc(value: Any) -> str:
    """Text for HTML content *and* for plotly labels (titles, hover, legend, ticks).

    plotly.js renders its labels as a small subset of HTML and decodes entities, so the same
    escaping of &, < and > shows a name such as `<script>` as text in both places. Quotes are
    left alone here (plotly decodes no `&quot;`); attributes use `attr`.
    """
    return html.escape("" if value is None else str(value), quote=False)


def attr(value: Any) -> str:
    """Text for an HTML attribute value (quotes escaped too)."""
    return html.escape("" if value is None else str(value), quote=True)


# ---- colours --------------------------------------------------------------------------------
#: One colour per precision, in every chart.
PRECISION_COLOURS = {
    "fp32": "#1f77b4", "tf32": "#17becf", "fp16": "#ff7f0e", "bf16": "#d62728",
    "amp-fp16": "#e7a33e", "amp-bf16": "#e377c2", "int8-dynamic": "#2ca02c",
    "int8-weight-only": "#8c564b", "fp8": "#9467bd",
}
#: One colour per pruning method, in every chart.
PRUNE_COLOURS = {
    "none": "#1f77b4", "unstructured": "#d62728", "structured": "#2ca02c",
    "semi-structured-2:4": "#9467bd",
}
STATUS_COLOURS = {
    "ok": "#2ca02c", "unsupported": "#b8860b", "failed": "#d62728", "oom": "#d62728",
    "crashed": "#d62728", "timeout": "#d62728",
}
#: Verdicts of a comparison: red for worse, green for better, grey when nothing is shown.
VERDICT_COLOURS = {
    "regression": "#d62728", "improvement": "#2ca02c", "same": "#7f7f7f",
    "inconclusive": "#e7a33e",
}
#: For values with no fixed colour (devices, models, groups), assigned in sorted order.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
#: Sequential colours for ordered values such as depth (light to dark).
SEQUENTIAL = ("#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b")
FALLBACK_COLOUR = "#7f7f7f"


def colour_for(value: Any, fixed: dict[str, str]) -> str:
    return fixed.get(str(value), FALLBACK_COLOUR)


def palette_map(values: Sequence[Any]) -> dict[str, str]:
    """Stable colours for arbitrary labels: sorted, then cycled through PALETTE."""
    ordered = sorted({str(v) for v in values})
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(ordered)}


def sequential_map(values: Sequence[Any]) -> dict[Any, str]:
    """Light-to-dark colours for ordered values (depths): spread across SEQUENTIAL."""
    ordered = sorted(set(values))
    if len(ordered) == 1:
        return {ordered[0]: SEQUENTIAL[-2]}
    last = len(SEQUENTIAL) - 1
    return {v: SEQUENTIAL[round(i * last / (len(ordered) - 1))] for i, v in enumerate(ordered)}


# ---- numbers --------------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fmt(value: Any, digits: int = 4) -> str:
    """A number with `digits` significant digits, no exponent for everyday magnitudes."""
    if not is_number(value):
        return "–"
    number = float(value)
    if number == 0:
        return "0"
    if 1e-3 <= abs(number) < 1e6:
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(number))))
        return f"{number:.{decimals}f}"
    return f"{number:.{digits - 1}e}"


_SI = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si(value: Any, unit: str = "", digits: int = 3) -> str:
    """1.23 G, 45.6 M: large counts (FLOPs, parameters, FLOP/s) in SI prefixes."""
    if not is_number(value):
        return "–"
    number = float(value)
    for scale, prefix in _SI:
        if abs(number) >= scale:
            return f"{fmt(number / scale, digits)} {prefix}{unit}"
    return f"{fmt(number, digits)} {unit}".rstrip()


def mib(value: Any) -> str:
    return f"{fmt(float(value) / 2**20, 4)} MiB" if is_number(value) else "–"


def pct(value: Any, digits: int = 3) -> str:
    """A fraction (0.012) as a percentage (1.2%)."""
    return f"{fmt(float(value) * 100, digits)}%" if is_number(value) else "–"


def interval(row: Mapping[str, Any], digits: int = 2) -> str:
    """A case's interval and what it includes: "±1.9% (5 workers)", or "±0.8% (one worker:
    variation between runs not measured)" — the words every display of it carries."""
    if not is_number(row.get("ci_rel")):
        return "–"
    workers = int(float(row["repeats"])) if is_number(row.get("repeats")) else 1
    basis = interval_basis(workers, bool(row.get("ci_between_workers")))
    return f"±{pct(row.get('ci_rel'), digits)} ({basis})"


def signed_pct(value: Any) -> str:
    """A percentage already in percent (delta_pct), with its sign: +3.1%, -0.42% (two
    decimals under 1%: instruction counts move by hundredths)."""
    if not is_number(value):
        return "–"
    return f"{float(value):+.2f}%" if abs(float(value)) < 1 else f"{float(value):+.1f}%"


# ---- chart layout ---------------------------------------------------------------------------
#: A small template of our own instead of plotly's default, which would add ~10 kB to every
#: figure of a report that may hold dozens.
TEMPLATE: dict[str, Any] = {
    "layout": {
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif",
                 "size": 12, "color": "#222"},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "colorway": list(PALETTE),
        "hovermode": "closest",
        "hoverlabel": {"align": "left"},
        "xaxis": {"gridcolor": "#e5e5e5", "linecolor": "#999", "zerolinecolor": "#ccc",
                  "automargin": True, "showline": True},
        "yaxis": {"gridcolor": "#e5e5e5", "linecolor": "#999", "zerolinecolor": "#ccc",
                  "automargin": True, "showline": True},
        "legend": {"bgcolor": "rgba(255,255,255,0.85)", "bordercolor": "#ddd",
                   "borderwidth": 1},
        "margin": {"l": 70, "r": 30, "t": 70, "b": 60},
    }
}
