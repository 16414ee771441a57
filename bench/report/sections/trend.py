"""Trends over commits, from a history store (`archbench report --history STORE`).

What a reader should see at a glance is *what changed at which commit*: so the section opens
with the findings (changes grouped by the commit that brought them in), draws each recent
finding as one chart of its cases relative to their level before it, then every case that
changed on its own timeline (points with their 95% bands, change points marked and labelled
with the commit), and an overview of every case. One line per case *and* environment:
series of different fingerprints are never joined.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.report.figures import figure_dict, new_figure
from bench.report.model import Chart, Html, ReportInput, Section
from bench.report.style import VERDICT_COLOURS, attr, esc, palette_map

if TYPE_CHECKING:
    from bench.history import Change, Finding, History, Series

#: Findings drawn as their own chart, newest first; the rest are listed.
FINDING_CHARTS = 6
#: Cases drawn in one finding's chart; the rest are named under it.
FINDING_MEMBERS = 12
#: Changed cases drawn on their own timeline.
CASE_CHARTS = 24
SLOWER, FASTER = VERDICT_COLOURS["regression"], VERDICT_COLOURS["improvement"]


def build(report: ReportInput) -> Section | None:
    history: History | None = getattr(report, "history", None)
    if history is None or not history.series:
        return None
    return trend_section(history)


def trend_section(history: History) -> Section:
    findings = [f for f in history.findings if not f.accepted]
    several_envs = len({s.fingerprint for s in history.series}) > 1
    blocks: list[Html | Chart] = [Html(_summary(history, findings))]
    for i, finding in enumerate(findings[:FINDING_CHARTS]):
        blocks.append(Chart(f"trend-finding-{i}", _finding_figure(finding, several_envs),
                            caption=_finding_caption(finding)))
    changed = _changed_series(history)
    for i, series in enumerate(changed[:CASE_CHARTS]):
        blocks.append(Chart(f"trend-case-{i}", _case_figure(series, history, several_envs)))
    if len(changed) > CASE_CHARTS:
        blocks.append(Html(f'<p class="muted">{len(changed) - CASE_CHARTS} more changed '
                           "case(s) are in the overview below and in "
                           "<code>archbench history show</code>.</p>"))
    blocks.append(Chart("trend-overview", _overview_figure(history, several_envs),
                        caption="Every case relative to its median over the commits shown; "
                                "hover a point for the case, commit, date and level."))
    return Section(key="trends", title="Trends over commits", blocks=tuple(blocks))


# ---- text -----------------------------------------------------------------------------------
def _summary(history: History, findings: Sequence[Finding]) -> str:
    envs = {s.fingerprint for s in history.series}
    head = (f"<p>{len(history.series)} series ({len(envs)} environment"
            f"{'s' * (len(envs) != 1)}) over {len(history.commits)} commits; "
            f"{len(findings)} change{'s' * (len(findings) != 1)} found"
            f"{'' if not history.accepted else f', {len(history.accepted)} accepted'}. "
            "A change is placed between the last commit measured at the old level and the "
            "first at the new one; its size is the ratio of the levels either side, with the "
            "95% interval.</p>")
    if not findings:
        return head + '<p class="good">No change in any case over these commits.</p>'
    rows = []
    for f in findings[:40]:
        low, high = f.pct_range()
        size = f"{low:+.1f}%" if abs(high - low) < 0.05 else f"{low:+.1f}% to {high:+.1f}%"
        names = ", ".join(esc(c.series.name) for c in f.changes[:8])
        more = f" and {len(f.changes) - 8} more" if len(f.changes) > 8 else ""
        colour = SLOWER if f.direction == "slower" else FASTER
        kind = f"drift from {esc(f.first[:10])}" if f.kind == "drift" else esc(f.kind)
        rows.append(f'<tr><td><code>{esc(f.previous[:10])}..{esc(f.commit[:10])}</code></td>'
                    f"<td>{esc(f'{f.time:%Y-%m-%d %H:%M}')}</td>"
                    f'<td class="num">{len(f.changes)}</td>'
                    f'<td style="color:{attr(colour)}">{esc(f.direction)} {esc(size)}</td>'
                    f"<td>{kind}</td><td>{names}{esc(more)}</td></tr>")
    return (head + '<table class="small"><thead><tr><th>commits</th><th>date</th>'
            "<th>cases</th><th>change</th><th>kind</th><th>which</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _finding_caption(finding: Finding) -> str:
    rest = len(finding.changes) - FINDING_MEMBERS
    names = ", ".join(c.series.name for c in finding.changes[FINDING_MEMBERS:])
    return (f"Each case's level relative to its level before {finding.commit[:10]} "
            "(1.0 = unchanged), with its 95% band."
            + (f" Not drawn: {rest} more case(s): {names}." if rest > 0 else ""))


def _label(series: Series, several_envs: bool) -> str:
    return f"{series.name} [{series.fingerprint[:8]}]" if several_envs else series.name


def _hover(series: Series, several_envs: bool) -> list[str]:
    name = esc(_label(series, several_envs))
    dates = [t.isoformat(sep=" ", timespec="minutes")[:16] for t in series.times]
    return [f"<b>{name}</b><br>commit {esc(c[:10])} · {d}<br>"
            f"{lv:.4g} ms [{lo:.4g}, {hi:.4g}] · {r} run(s)"
            for c, d, lv, lo, hi, r in zip(series.commits, dates, series.level_ms.tolist(),
                                           series.low_ms.tolist(), series.high_ms.tolist(),
                                           series.runs, strict=True)]


# ---- figures --------------------------------------------------------------------------------
# Traces and marks go in as plain dicts: plotly's validating objects cost seconds for a few
# hundred series (the layout still comes from `new_figure`, validated once).
def _figure(title: str, x_title: str, y_title: str, **layout: Any) -> dict[str, Any]:
    """A figure dict with our template and escaped titles; the template is validated once
    (`new_figure` per chart cost a third of a second each) and shared, never mutated."""
    base = _base_layout()
    return {"data": [], "layout": {
        **base, **layout,
        "title": {**base.get("title", {}), "text": esc(title)},
        "xaxis": {**base.get("xaxis", {}), "title": {"text": esc(x_title)}},
        "yaxis": {**base.get("yaxis", {}), "title": {"text": esc(y_title)}}}}


@functools.lru_cache(maxsize=1)
def _base_layout() -> dict[str, Any]:
    layout = figure_dict(new_figure("", "", ""))["layout"]
    return {k: v for k, v in layout.items() if k not in ("shapes", "annotations")}


def _x(series: Series) -> list[str]:
    return [t.isoformat() for t in series.times]


def _band(fig: dict[str, Any], x: list[str], low: np.ndarray, high: np.ndarray, colour: str,
          group: str) -> None:
    """A shaded 95% band: the upper edge, then the lower edge filled up to it."""
    edge = {"type": "scatter", "x": x, "mode": "lines", "line": {"width": 0},
            "hoverinfo": "skip", "showlegend": False, "legendgroup": group}
    fig["data"].append({**edge, "y": high.tolist()})
    fig["data"].append({**edge, "y": low.tolist(), "fill": "tonexty",
                        "fillcolor": _rgba(colour, 0.18)})


def _finding_figure(finding: Finding, several_envs: bool) -> dict[str, Any]:
    title = (f"{finding.previous[:10]}..{finding.commit[:10]}: {len(finding.changes)} case(s) "
             f"{finding.direction}" + (" (drift)" if finding.kind == "drift" else ""))
    fig = _figure(title, "commit time", "level / level before the change", height=380,
                  hovermode="closest")
    members = finding.changes[:FINDING_MEMBERS]
    colours = palette_map([_label(c.series, several_envs) for c in members])
    for change in members:
        s = change.series
        label = _label(s, several_envs)
        before = s.log_level[max(0, change.point.start - change.point.n_before):
                             change.point.start]
        base = float(np.exp(before.mean())) if before.size else float(s.level_ms[0])
        colour = colours[label]
        x = _x(s)
        _band(fig, x, s.low_ms / base, s.high_ms / base, colour, label)
        fig["data"].append({"type": "scatter", "x": x, "y": (s.level_ms / base).tolist(),
                            "mode": "lines+markers", "name": esc(label), "legendgroup": label,
                            "line": {"color": colour, "width": 1.5}, "marker": {"size": 4},
                            "text": _hover(s, several_envs), "hoverinfo": "text"})
    _mark(fig, finding.time.isoformat(), finding.commit, finding.direction)
    return fig


def _case_figure(series: Series, history: History, several_envs: bool) -> dict[str, Any]:
    label = _label(series, several_envs)
    fig = _figure(label, "commit time", "level (ms)", height=320, showlegend=False)
    colour = "#1f77b4"
    x = _x(series)
    _band(fig, x, series.low_ms, series.high_ms, colour, label)
    fig["data"].append({"type": "scatter", "x": x, "y": series.level_ms.tolist(),
                        "mode": "lines+markers", "name": esc(label),
                        "line": {"color": colour, "width": 1.5}, "marker": {"size": 5},
                        "text": _hover(series, several_envs), "hoverinfo": "text"})
    fit = history.fits[series.key]
    xs: list[str | None] = []
    ys: list[float | None] = []
    for (a, b), level in zip(zip(fit.bounds[:-1], fit.bounds[1:], strict=True), fit.levels,
                             strict=True):
        xs += [x[a], x[b - 1], None]
        ys += [float(np.exp(level))] * 2 + [None]
    fig["data"].append({"type": "scatter", "x": xs, "y": ys, "mode": "lines",
                        "hoverinfo": "skip", "name": "fitted level",
                        "line": {"color": "#555", "width": 1, "dash": "dot"}})
    for change in history.changes():
        if change.series.key == series.key:
            _mark(fig, change.time.isoformat(), change.commit, change.direction,
                  change=change)
    return fig


def _overview_figure(history: History, several_envs: bool) -> dict[str, Any]:
    fig = _figure("Every case over the commits", "commit time", "level / case median",
                  height=460, hovermode="closest", showlegend=len(history.series) <= 40)
    changed = {c.series.key for c in history.changes() if not c.accepted}
    for s in history.series:
        median = float(np.median(s.level_ms))
        moved = s.key in changed
        # SVG lines, not WebGL: one path per case draws fast, and opens where WebGL is off.
        fig["data"].append({"type": "scatter", "x": _x(s),
                            "y": (s.level_ms / median).tolist(), "mode": "lines",
                            "name": esc(_label(s, several_envs)),
                            "text": _hover(s, several_envs), "hoverinfo": "text",
                            "opacity": 0.9 if moved else 0.35,
                            "line": {"width": 1.5 if moved else 1}})
    return fig


def _mark(fig: dict[str, Any], when: str, commit: str, direction: str, *,
          change: Change | None = None) -> None:
    """A vertical line at the commit that brought a change in, labelled with it."""
    colour = SLOWER if direction == "slower" else FASTER
    text = commit[:10]
    if change is not None:
        text += f" {change.point.change_pct:+.1f}%"
        if change.accepted:
            text += " (accepted)"
    layout = fig["layout"]
    layout.setdefault("shapes", []).append(
        {"type": "line", "xref": "x", "x0": when, "x1": when, "yref": "paper", "y0": 0,
         "y1": 1, "line": {"color": colour, "width": 1.5, "dash": "dash"}})
    layout.setdefault("annotations", []).append(
        {"xref": "x", "x": when, "yref": "paper", "y": 1, "yanchor": "bottom", "text": esc(text),
         "showarrow": False, "font": {"color": colour, "size": 11}})


def _changed_series(history: History) -> list[Series]:
    """Series with an unaccepted change, the biggest change first."""
    size: dict[tuple[str, str, str], float] = {}
    for c in history.changes():
        if not c.accepted:
            size[c.series.key] = max(size.get(c.series.key, 0.0), abs(c.point.change_pct))
    return sorted((s for s in history.series if s.key in size), key=lambda s: -size[s.key])


def _rgba(colour: str, alpha: float) -> str:
    colour = colour.lstrip("#")
    r, g, b = (int(colour[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
