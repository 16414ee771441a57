"""Generation: prefill latency, per-token decode latency, tokens/s and KV-cache size of the
`mode = "generate"` cases, one table per family (model, prompt and new tokens, batch,
device), with a chart of decode tokens/s against key/value heads where a family sweeps them
— the curve that says what grouped-query attention buys at decode time.

A generate case's median and throughput are per decoded token (`bench.measure.generation`);
its prefill statistics are metrics of the record.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.report.model import Chart, Html, ReportInput, Section
from bench.report.style import esc, fmt, is_number, pct, si

#: What makes a generation family: the workload. The knobs are what varies inside it.
FAMILY = ("model", "seq_len", "new_tokens", "batch_size", "device")
KNOBS = ("depth", "width", "heads", "kv_heads", "vocab_size", "precision", "prune_method",
         "prune_ratio")


def generate_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The measured generate cases of a frame."""
    if frame.empty or "mode" not in frame.columns or "status" not in frame.columns:
        return frame.iloc[0:0]
    return frame[(frame["mode"] == "generate") & (frame["status"] == "ok")]


def family_label(row: Any) -> str:
    return (f"{row.get('model')} · prompt {_int(row.get('seq_len'))} + "
            f"{_int(row.get('new_tokens'))} new tokens · batch {_int(row.get('batch_size'))}"
            f" · {row.get('device')}")


def knobs_label(row: Any) -> str:
    parts = [f"{tag}{_int(row.get(col))}" for col, tag in
             (("depth", "d"), ("width", "w"), ("heads", "h"), ("kv_heads", "kv"))
             if is_number(row.get(col))]
    parts.append(str(row.get("precision") or "fp32"))
    method = row.get("prune_method")
    if method not in (None, "none") and method == method:
        parts.append(f"{method} {float(row.get('prune_ratio') or 0) * 100:g}%")
    return " ".join(parts)


def build(report: ReportInput) -> Section | None:
    rows = generate_rows(report.frame)
    if rows.empty:
        return None
    blocks: list[Html | Chart] = [Html(
        "<p>Decoder-only models generating: <b>prefill</b> is the prompt in one call (building "
        "the KV cache); <b>decode</b> is one token per call through the cache, timed over "
        "the case's new tokens and reported per token. Both are medians of the raw samples "
        "with their 95% confidence intervals. Tokens/s counts every sequence of the batch. "
        "KV cache is its size after the prompt and every new token. Next-token top-1 is how "
        "often the transformed model picks the fp32 model's next token along the fp32 "
        "model's own continuation.</p>")]
    keys = [c for c in FAMILY if c in rows.columns]
    for index, (_, group) in enumerate(rows.groupby(keys, dropna=False, sort=True)):
        first = group.iloc[0].to_dict()
        blocks.append(Html(f"<h3>{esc(family_label(first))}</h3>" + _table(group)))
        chart = _kv_chart(group, index, family_label(first))
        if chart is not None:
            blocks.append(chart)
    return Section("generation", "Generation", tuple(blocks))


def _table(group: pd.DataFrame) -> str:
    head = ("<tr><th>configuration</th><th>prefill (ms)</th><th>decode (ms/token)</th>"
            "<th>tokens/s</th><th>KV cache</th><th>next-token top-1</th><th>params</th></tr>")
    body = []
    order = group.sort_values("median_ms") if "median_ms" in group.columns else group
    for row in order.to_dict("records"):
        prefill = _with_ci(row, "prefill_ms", "prefill_ci_low_ms", "prefill_ci_high_ms")
        body.append(
            f"<tr><td>{esc(knobs_label(row))}</td>"
            f"<td class=num>{prefill}</td>"
            f"<td class=num>{_with_ci(row, 'median_ms', 'ci_low_ms', 'ci_high_ms')}</td>"
            f"<td class=num>{esc(fmt(row.get('throughput_items_s')))}</td>"
            f"<td class=num>{esc(si(row.get('kv_cache_bytes'), 'B'))}</td>"
            f"<td class=num>{esc(pct(row.get('fidelity_next_token_top1')))}</td>"
            f"<td class=num>{esc(si(row.get('params_total')))}</td></tr>")
    return f'<table class="results">{head}{"".join(body)}</table>'


def _with_ci(row: dict[str, Any], median: str, low: str, high: str) -> str:
    value = row.get(median)
    if not is_number(value):
        return "–"
    text = fmt(value)
    if is_number(row.get(low)) and is_number(row.get(high)):
        text += f" [{fmt(row[low])}, {fmt(row[high])}]"
    return esc(text)


def _kv_chart(group: pd.DataFrame, index: int, title: str) -> Chart | None:
    """Decode tokens/s against kv_heads, one line per other configuration, where a family
    sweeps kv_heads over at least two values."""
    if "kv_heads" not in group.columns or group["kv_heads"].dropna().nunique() < 2:
        return None
    others = [c for c in KNOBS if c in group.columns and c != "kv_heads"]
    traces = []
    for _, line in group.groupby(others, dropna=False, sort=True):
        line = line.dropna(subset=["kv_heads"]).sort_values("kv_heads")
        if len(line) < 2:
            continue
        label = knobs_label({**line.iloc[0].to_dict(), "kv_heads": None})
        traces.append({"type": "scatter", "mode": "lines+markers", "name": label,
                       "x": [int(v) for v in line["kv_heads"]],
                       "y": [float(v) for v in line["throughput_items_s"]]})
    if not traces:
        return None
    figure = {"data": traces, "layout": {
        "title": {"text": f"decode tokens/s vs key/value heads — {title}"},
        "xaxis": {"title": {"text": "kv_heads"}, "type": "log", "dtick": 0.30103},
        "yaxis": {"title": {"text": "decode tokens/s"}}, "height": 360}}
    return Chart(f"generation-kv-{index}", figure,
                 "Fewer key/value heads shrink the KV cache each decode step reads.")


def _int(value: Any) -> str:
    return f"{int(float(value))}" if is_number(value) else "–"
