"""The results table (sortable, filterable, with units) and the cases that did not measure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.decide.metrics import with_derived
from bench.report.chart_data import achieved_flops_s, is_flagged, present
from bench.report.model import Html, ReportInput, Section
from bench.report.style import STATUS_COLOURS, attr, esc, fmt, is_number, si
from bench.results.record import FAILURE_STATUSES
from bench.stats import interval_basis

#: A reason longer than this is cut in the table cell; the full text is in its tooltip.
REASON_CHARS = 160


@dataclass(frozen=True)
class Column:
    """A table column: header (with its unit), the frame column, how to show a value."""

    header: str
    source: str
    show: Callable[[Any], str]
    numeric: bool = True
    #: Shown until the reader picks otherwise: what "which configuration, how fast, how
    #: faithful, how big" needs; the rest waits behind the column picker.
    default: bool = True


def _bytes_mib(value: Any) -> str:
    return fmt(float(value) / 2**20) if is_number(value) else "–"


def _percent(value: Any) -> str:
    return fmt(float(value) * 100, 3) if is_number(value) else "–"


def _text(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and value != value) else str(value)


def _count(value: Any) -> str:
    return f"{int(float(value))}" if is_number(value) else "–"


#: Shown when the frame has them (any value), in this order.
COLUMNS: tuple[Column, ...] = (
    Column("sweep", "sweep", _text, False, default=False),
    Column("model", "model", _text, False),
    Column("depth", "depth", _count),
    Column("width", "width", _count),
    Column("heads", "heads", _count),
    Column("kv heads", "kv_heads", _count),
    Column("vocab", "vocab_size", _count, default=False),
    Column("new tokens", "new_tokens", _count),
    Column("activation", "activation", _text, False, default=False),
    Column("batch", "batch_size", _count),
    Column("precision", "precision", _text, False),
    Column("device", "device", _text, False),
    Column("pruning", "_prune", _text, False),
    Column("compile", "compile", _text, False, default=False),
    Column("mode", "mode", _text, False, default=False),
    Column("median (ms)", "median_ms", fmt),
    Column("CI ± (%)", "ci_rel", _percent),
    Column("interval over", "_interval_over", _text, False),
    Column("IQR (ms)", "iqr_ms", fmt, default=False),
    Column("p99 (ms)", "p99_ms", fmt),
    Column("noise (%)", "noise", _percent, default=False),
    Column("throughput (items/s)", "throughput_items_s", fmt),
    Column("samples", "n_samples", _count, default=False),
    Column("prefill (ms)", "prefill_ms", fmt),
    Column("KV cache (MiB)", "kv_cache_bytes", _bytes_mib),
    Column("instructions/call", "instructions_per_call", si),
    Column("instructions/item", "instructions_per_item", si, default=False),
    Column("count spread (%)", "instructions_spread_pct", fmt),
    Column("first call (ms)", "first_call_ms", fmt, default=False),
    Column("params", "params_total", si),
    Column("non-zero params", "params_nonzero", si, default=False),
    Column("weights (MiB)", "weight_bytes", _bytes_mib, default=False),
    Column("FLOPs/item", "flops_per_item", si, default=False),
    Column("achieved (FLOP/s)", "_achieved_flops_s", si, default=False),
    Column("sparsity (%)", "prune_sparsity", _percent, default=False),
    Column("fidelity rel. L2", "fidelity_rel_l2", fmt),
    Column("top-1 agreement (%)", "fidelity_top1_agreement", _percent),
    Column("next-token top-1 (%)", "fidelity_next_token_top1", _percent),
    Column("above runtime (MiB)", "memory_above_runtime_bytes", _bytes_mib),
    Column("peak RSS (MiB)", "peak_rss_bytes", _bytes_mib),
    Column("peak RSS timed (MiB)", "peak_rss_timed_bytes", _bytes_mib, default=False),
    Column("CUDA max alloc. timed (MiB)", "cuda_max_allocated_timed_bytes", _bytes_mib),
    Column("GPU util. mean (%)", "gpu_util_mean_pct", fmt, default=False),
    Column("power mean (W)", "power_mean_w", fmt, default=False),
    Column("energy/item (J)", "energy_per_item_j", fmt),
    Column("run time (s)", "duration_s", fmt, default=False),
)


def table_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with the derived columns the table shows (pruning label, FLOP/s, memory
    above the runtime)."""
    out = with_derived(frame)
    if "prune_method" in out.columns:
        ratio = out.get("prune_ratio", pd.Series(0.0, index=out.index))
        out["_prune"] = [
            "none" if m in (None, "none") or m != m else f"{m} {float(r) * 100:g}%"
            for m, r in zip(out["prune_method"], ratio.fillna(0.0), strict=True)]
    if "median_ms" in out.columns:
        out["_achieved_flops_s"] = achieved_flops_s(out)
    if "ci_rel" in out.columns:
        workers = pd.to_numeric(out.get("repeats", pd.Series(1, index=out.index)),
                                errors="coerce").fillna(1)
        between = out.get("ci_between_workers", pd.Series(False, index=out.index))
        out["_interval_over"] = [
            interval_basis(int(w), bool(b)) if is_number(c) else None
            for w, b, c in zip(workers, between.fillna(False), out["ci_rel"], strict=True)]
    return out


def _reason_cell(row: Mapping[str, Any]) -> str:
    text = " ".join(str(row.get(k)) for k in ("reason", "warnings")
                    if row.get(k) is not None and row.get(k) == row.get(k) and row.get(k))
    if not text:
        return "<td></td>"
    short = text if len(text) <= REASON_CHARS else text[:REASON_CHARS] + "…"
    return f'<td class="reason" title="{attr(text)}">{esc(short)}</td>'


def results_table(frame: pd.DataFrame, *, show_run: bool) -> str:
    data = table_frame(frame)
    columns = [c for c in COLUMNS if present(data, c.source)]
    head = ["<th data-type=text>case</th>", "<th data-type=text>status</th>"]
    if show_run:
        head.insert(0, "<th data-type=text>run</th>")
    head += [f"<th data-type={'num' if c.numeric else 'text'}>{esc(c.header)}</th>"
             for c in columns]
    first = len(head) - len(columns) + 1  # nth-child position of the first picked column
    head.append("<th data-type=text>reason / warnings</th>")
    body = []
    for row in data.to_dict("records"):
        status = str(row.get("status") or "")
        noisy = (is_flagged(row.get("noise_warning"))
                 or is_flagged(row.get("target_met"), negate=True))
        cells = [f"<td>{esc(row.get('name'))}</td>",
                 f'<td><span class="status" style="color:{attr(STATUS_COLOURS.get(status, ""))}'
                 f'">{esc(status)}</span></td>']
        if show_run:
            cells.insert(0, f"<td>{esc(row.get('run'))}</td>")
        for column in columns:
            value = row.get(column.source)
            shown = esc(column.show(value))
            if column.numeric:
                sort = f' data-v="{float(value)!r}"' if is_number(value) else ""
                cells.append(f"<td class=num{sort}>{shown}</td>")
            else:
                cells.append(f"<td>{shown}</td>")
        cells.append(_reason_cell(row))
        body.append(f'<tr data-status="{attr(status)}" data-noisy="{int(noisy)}">'
                    f"{''.join(cells)}</tr>")
    statuses = sorted({str(s) for s in data.get("status", pd.Series(dtype=str)).dropna()})
    options = "".join(f'<option value="{attr(s)}">{esc(s)}</option>' for s in statuses)
    tools = (
        '<div class="table-tools">'
        '<input type="search" id="results-filter" placeholder="filter: any text in a row '
        '(name, model, reason…)" aria-label="filter the results table">'
        f'<select id="results-status" aria-label="status"><option value="">every status'
        f"</option>{options}</select>"
        '<label><input type="checkbox" id="results-noisy"> noisy only</label>'
        '<span id="results-count" class="muted"></span>'
        f"{_column_picker(columns, first)}</div>")
    return (f'{tools}<div class="table-wrap"><table id="results-table" class="results">'
            f"<thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            "</div>")


def _column_picker(columns: list[Column], first: int) -> str:
    """A checkbox per column; unchecked ones are hidden (by the page's script)."""
    boxes = "".join(
        f'<label><input type="checkbox" data-pos="{first + i}"'
        f'{" checked" if c.default else ""}> {esc(c.header)}</label>'
        for i, c in enumerate(columns))
    shown = sum(c.default for c in columns)
    return (f'<details class="col-picker"><summary>columns ({shown} of {len(columns)} shown)'
            f'</summary><div class="col-boxes">{boxes}</div></details>')


def build(report: ReportInput) -> Section | None:
    rows = report.all_rows
    if rows.empty:
        return None
    intro = ("<p>One row per case. Click a header to sort; type to filter (every word must "
             "appear in the row). Latencies are medians of the raw samples; CI ± is the half-"
             "width of the median's 95% confidence interval. For generate cases the median "
             "and throughput are per decoded token (tokens/s).</p>")
    return Section("results", "Results",
                   (Html(intro + results_table(rows, show_run=len(report.runs) > 1)),))


def build_failures(report: ReportInput) -> Section | None:
    """Cases that did not measure, grouped by status, each with its full reason."""
    rows = report.all_rows
    if rows.empty or "status" not in rows.columns:
        return None
    bad = rows[rows["status"] != "ok"]
    if bad.empty:
        return None
    parts = []
    for status in ("unsupported", *FAILURE_STATUSES):
        group = bad[bad["status"] == status]
        if group.empty:
            continue
        what = ("could not run on this machine (recorded with the reason, not a failure)"
                if status == "unsupported" else "ended without a measurement")
        items = []
        for row in group.to_dict("records"):
            reason = row.get("reason")
            reason_text = str(reason) if reason is not None and reason == reason else "–"
            body = (f"<pre>{esc(reason_text)}</pre>" if "\n" in reason_text
                    else f"<span>{esc(reason_text)}</span>")
            items.append(f"<li><b>{esc(row.get('name'))}</b> {body}</li>")
        colour = attr(STATUS_COLOURS.get(status, "#777"))
        parts.append(f'<h3 style="color:{colour}">{esc(status)}: {len(group)} case(s)</h3>'
                     f"<p>{esc(what)}</p><ul class=\"reasons\">{''.join(items)}</ul>")
    return Section("failures", "Failed, timed-out and unsupported cases",
                   (Html("".join(parts)),))
