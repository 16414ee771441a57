"""One self-contained HTML file: sections, the results table's sort/filter script, plotly.js
inline (no network, opens from disk), and each chart's figure as JSON.

Figures travel in `<script type="application/json">` blocks whose `<`, `>` and `&` are JSON
escapes, so no string inside them can close the block; every other data string on the page
was escaped by the section that made it.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from plotly.io.json import to_json_plotly

from bench._version import __version__
from bench.report.model import Chart, Html, ReportInput, Section
from bench.report.style import attr, esc


@lru_cache(maxsize=1)
def plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().replace("</script", "<\\/script")


def figure_json(figure: object) -> str:
    """JSON safe inside a script element: <, > and & as JSON escapes (same values)."""
    text = to_json_plotly(figure)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _chart_html(chart: Chart, element_id: str) -> str:
    # the figure's title is escaped for plotly; unescape it before escaping as an attribute
    title = html.unescape(chart.figure.get("layout", {}).get("title", {}).get("text", "chart"))
    caption = f"<figcaption>{esc(chart.caption)}</figcaption>" if chart.caption else ""
    return (f'<figure class="chart-block"><div class="chart" id="{attr(element_id)}" '
            f'role="img" aria-label="{attr(title)}"></div>{caption}</figure>'
            f'<script type="application/json" data-chart="{attr(element_id)}">'
            f"{figure_json(chart.figure)}</script>")


def _section_html(section: Section, used_ids: set[str]) -> str:
    parts = [f'<section id="{attr(section.key)}"><h2>{esc(section.title)}</h2>']
    for block in section.blocks:
        if isinstance(block, Html):
            parts.append(block.markup)
        else:
            element_id, n = f"chart-{block.key}", 1
            while element_id in used_ids:
                n += 1
                element_id = f"chart-{block.key}-{n}"
            used_ids.add(element_id)
            parts.append(_chart_html(block, element_id))
    parts.append("</section>")
    return "".join(parts)


def render_html(report: ReportInput, sections: list[Section], *,
                generated_at: str | None = None) -> str:
    """The whole page as one string."""
    when = generated_at or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{attr(s.key)}">{esc(s.title)}</a>' for s in sections)
    used: set[str] = set()
    body = "".join(_section_html(s, used) for s in sections)
    title = f"archbench report: {report.display_title}"
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>{esc(title)}</h1><p class="muted">Generated {esc(when)} by archbench '
        f"{esc(__version__)} from {_source(report)}. Interactive: hover for details, "
        "drag to zoom, double-click to reset; click legend entries to hide lines.</p>"
        f"<nav>{nav}</nav></header><main>{body}</main>"
        f"<script>{plotly_js()}</script><script>{SCRIPT}</script></body></html>\n")


def _source(report: ReportInput) -> str:
    runs = f"{len(report.runs)} run(s)"
    if getattr(report, "history", None) is None:
        return runs
    return f"{runs} and a history store" if report.runs else "a history store"


def write_html(text: str, path: str | Path) -> Path:
    """Write a rendered report to `path` (its folder created if needed); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


#: The page may run only its own inline scripts and load nothing from anywhere: a report that
#: opens offline, and a second wall should any markup ever slip past the escaping.
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:")

CSS = """
:root { --fg:#1d1d1f; --muted:#666; --line:#ddd; --bg:#fff; --accent:#1f77b4; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  color:var(--fg); background:var(--bg); }
header { padding:18px 28px 8px; border-bottom:1px solid var(--line); }
h1 { font-size:20px; margin:0 0 4px; word-break:break-word; }
h2 { font-size:18px; margin:28px 0 10px; border-bottom:2px solid var(--accent);
  padding-bottom:4px; }
h3 { font-size:15px; margin:18px 0 8px; }
nav a { margin-right:14px; color:var(--accent); text-decoration:none; white-space:nowrap; }
nav a:hover { text-decoration:underline; }
main { padding:0 28px 40px; max-width:1500px; }
.muted { color:var(--muted); }
.warn { background:#fff6e0; border-left:4px solid #e7a33e; padding:6px 10px; }
.good { background:#eef8ee; border-left:4px solid #2ca02c; padding:6px 10px; }
.callout { background:#f3f6fb; border-left:4px solid var(--accent); padding:8px 12px;
  margin:8px 0 12px; }
.chip { display:inline-block; border:2px solid; border-radius:10px; padding:0 8px;
  margin:1px 2px; font-size:12px; }
table { border-collapse:collapse; margin:6px 0 12px; }
th, td { border-bottom:1px solid var(--line); padding:3px 8px; text-align:left;
  vertical-align:top; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
table.facts th { background:#f7f7f7; white-space:nowrap; }
table.facts td { word-break:break-word; max-width:520px; }
tr.differs td, tr.differs th { background:#fff1d6; }
table.small { font-size:13px; }
.table-tools { display:flex; gap:12px; align-items:center; margin:8px 0; flex-wrap:wrap; }
.table-tools input[type=search] { width:380px; padding:5px 8px; font-size:14px; }
.table-wrap { max-height:70vh; overflow:auto; border:1px solid var(--line); }
table.results { font-size:12.5px; margin:0; }
table.results thead th { position:sticky; top:0; background:#f2f2f2; cursor:pointer;
  white-space:nowrap; user-select:none; }
table.results thead th[aria-sort=ascending]::after { content:" \\25B2"; }
table.results thead th[aria-sort=descending]::after { content:" \\25BC"; }
table.results tbody tr:hover { background:#f5f9ff; }
td.reason { max-width:420px; color:#8a2b2b; }
.status { font-weight:600; }
ul.reasons li { margin:4px 0; }
ul.reasons pre { white-space:pre-wrap; font-size:12px; background:#faf5f5; padding:6px;
  margin:4px 0; max-height:240px; overflow:auto; }
figure.chart-block { margin:10px 0 22px; }
figcaption { color:var(--muted); font-size:12.5px; margin-top:4px; }
.chart { width:100%; min-height:300px; }
.verdict { font-weight:600; }
details.col-picker { position:relative; }
details.col-picker summary { cursor:pointer; color:var(--accent); }
.col-boxes { position:absolute; z-index:5; background:#fff; border:1px solid var(--line);
  padding:8px 10px; columns:3; column-gap:18px; width:640px; box-shadow:0 4px 12px #0002; }
.col-boxes label { display:block; white-space:nowrap; font-size:12.5px; }
tr.best td { font-weight:600; background:#eef8ee; }
p.answer { font-size:15px; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  var config = {displaylogo: false, responsive: true,
                toImageButtonOptions: {format: "png", scale: 2}};

  function renderCharts() {
    var specs = document.querySelectorAll('script[type="application/json"][data-chart]');
    var jobs = [];
    specs.forEach(function (node) {
      var div = document.getElementById(node.getAttribute("data-chart"));
      var spec;
      try {
        spec = JSON.parse(node.textContent);
      } catch (err) {
        div.setAttribute("data-rendered", "error");
        console.error("chart " + div.id + " could not be read: " + err);
        return;
      }
      jobs.push(Plotly.newPlot(div, spec.data, spec.layout, config).then(function () {
        div.setAttribute("data-rendered", "yes");
      }, function (err) {
        div.setAttribute("data-rendered", "error");
        console.error("chart " + div.id + " failed: " + err);
      }));
    });
    Promise.all(jobs).then(function () {
      document.body.setAttribute("data-charts-rendered", String(jobs.length));
    });
  }

  function setupTable() {
    var table = document.getElementById("results-table");
    if (!table) { return; }
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var texts = rows.map(function (row) { return row.textContent.toLowerCase(); });
    var filter = document.getElementById("results-filter");
    var status = document.getElementById("results-status");
    var noisy = document.getElementById("results-noisy");
    var count = document.getElementById("results-count");

    function apply() {
      var words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      var wanted = status.value;
      var shown = 0;
      rows.forEach(function (row, i) {
        var keep = words.every(function (w) { return texts[i].indexOf(w) >= 0; }) &&
          (!wanted || row.getAttribute("data-status") === wanted) &&
          (!noisy.checked || row.getAttribute("data-noisy") === "1");
        row.hidden = !keep;
        if (keep) { shown += 1; }
      });
      count.textContent = shown + " of " + rows.length + " rows";
    }
    var boxes = Array.prototype.slice.call(
      document.querySelectorAll('.col-picker input[type="checkbox"]'));
    var hiddenStyle = document.createElement("style");
    document.head.appendChild(hiddenStyle);
    function applyColumns() {
      hiddenStyle.textContent = boxes.filter(function (b) { return !b.checked; })
        .map(function (b) {
          return "#results-table tr > :nth-child(" + b.getAttribute("data-pos") +
            ") { display: none; }";
        }).join("\n");
    }
    boxes.forEach(function (b) { b.addEventListener("change", applyColumns); });
    applyColumns();
    filter.addEventListener("input", apply);
    status.addEventListener("change", apply);
    noisy.addEventListener("change", apply);
    apply();

    var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
    headers.forEach(function (th, col) {
      th.tabIndex = 0;
      th.title = "sort by this column";
      function sort() {
        var numeric = th.getAttribute("data-type") === "num";
        var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
        var keyed = rows.map(function (row, i) {
          var cell = row.cells[col];
          var key = null;
          if (numeric) {
            var v = cell.getAttribute("data-v");
            key = v === null ? null : parseFloat(v);
          } else {
            key = cell.textContent.toLowerCase();
          }
          return {row: row, key: key, i: i};
        });
        keyed.sort(function (a, b) {
          if (a.key === null || b.key === null) {
            return a.key === b.key ? a.i - b.i : (a.key === null ? 1 : -1);
          }
          if (a.key < b.key) { return -dir; }
          if (a.key > b.key) { return dir; }
          return a.i - b.i;
        });
        keyed.forEach(function (k) { body.appendChild(k.row); });
        th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sort(); } });
    });
  }

  setupTable();
  renderCharts();
})();
"""
