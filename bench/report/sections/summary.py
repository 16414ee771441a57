"""Run summary and environment: what ran, where, on what, and how trustworthy the numbers are."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from bench.report.chart_data import numeric, ok_rows, present
from bench.report.model import Html, ReportInput, RunFrame, Section
from bench.report.style import STATUS_COLOURS, attr, esc, fmt, interval, pct
from bench.results.record import STATUSES

#: Cases listed by name in the noise table at most; the rest are counted.
NOISE_ROWS = 25


def status_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Cases per status, in the order of `bench.results.STATUSES`, zeros left out."""
    if "status" not in frame.columns:
        return {}
    counts = frame["status"].value_counts()
    return {s: int(counts[s]) for s in STATUSES if counts.get(s, 0)}


def noisy_cases(frame: pd.DataFrame) -> pd.DataFrame:
    """Measured cases whose numbers deserve doubt: noise warning (IQR/median ≥ 10%) or the CI
    target not met before `max_time_s`; noisiest first."""
    ok = ok_rows(frame)
    if ok.empty:
        return ok
    flagged = pd.Series(False, index=ok.index)
    if "noise_warning" in ok.columns:
        flagged |= ok["noise_warning"].fillna(False).astype(bool)
    if "target_met" in ok.columns:
        flagged |= ~ok["target_met"].fillna(True).astype(bool)
    out = ok[flagged].assign(_noise=numeric(ok[flagged], "noise"))
    return out.sort_values("_noise", ascending=False, na_position="last").drop(columns="_noise")


def collector_problems(frame: pd.DataFrame) -> dict[str, tuple[int, str]]:
    """Collectors that could not measure: name -> (cases affected, the first reason given),
    from the `collectors` column ({name: {"ok": bool, "reason": str | None}} per case)."""
    if "collectors" not in frame.columns:
        return {}
    out: dict[str, tuple[int, str]] = {}
    for value in frame["collectors"]:
        if not isinstance(value, Mapping):
            continue
        for name, state in value.items():
            if isinstance(state, Mapping) and not state.get("ok", True):
                count, reason = out.get(str(name), (0, str(state.get("reason") or "no reason")))
                out[str(name)] = (count + 1, reason)
    return out


def _int(value: Any) -> str:
    return str(int(float(value))) if fmt(value) != "–" else "–"


def _gib(value: Any) -> str:
    return f"{float(value) / 2**30:.1f} GiB" if fmt(value) != "–" else "–"


def _gpus(env: Mapping[str, Any]) -> str:
    if "gpus" not in env:
        return "–"
    gpus = env.get("gpus") or []
    if gpus:
        names = [f"{g.get('name', '?')} (driver {g.get('driver', '?')})" for g in gpus]
        return "; ".join(names)
    return f"none ({env.get('gpu_error')})" if env.get("gpu_error") else "none"


def _git(env: Mapping[str, Any]) -> str:
    commit = env.get("git_commit")
    if not commit:
        return "–"
    dirty = " (uncommitted changes)" if env.get("git_dirty") else ""
    branch = f" on {env['git_branch']}" if env.get("git_branch") else ""
    return f"{str(commit)[:12]}{branch}{dirty}"


def _cores(env: Mapping[str, Any]) -> str:
    physical, logical = env.get("cpu_count_physical"), env.get("cpu_count_logical")
    return f"{physical} physical, {logical} logical" if logical else "–"


def _value(key: str, suffix: str = "") -> Callable[[Mapping[str, Any]], str]:
    def get(env: Mapping[str, Any]) -> str:
        value = env.get(key)
        if value is None or value == "" or value == []:
            return "–"
        if isinstance(value, (list, tuple)):
            return ", ".join(str(v) for v in value)
        return f"{value}{suffix}"
    return get


#: (label, how to read it from a run's env) in the order shown.
ENV_ROWS: tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...] = (
    ("host", _value("hostname")),
    ("platform", _value("platform")),
    ("Python", _value("python")),
    ("torch", _value("torch_version")),
    ("CUDA / cuDNN", lambda e: f"{e.get('cuda_version') or '–'} / {e.get('cudnn_version') or '–'}"),
    ("CPU", _value("cpu_model")),
    ("cores", _cores),
    ("CPU capability (torch)", _value("cpu_capability")),
    ("CPU flags", _value("cpu_flags")),
    ("CPU max clock", _value("cpu_freq_max_mhz", " MHz")),
    ("CPU governor", _value("cpu_governor")),
    ("memory", lambda e: _gib(e.get("memory_total_bytes"))),
    ("GPUs", _gpus),
    ("threads (torch)", _value("threads")),
    ("inter-op threads", _value("interop_threads")),
    ("OMP_NUM_THREADS", _value("omp_num_threads")),
    ("CUDA_VISIBLE_DEVICES", _value("cuda_visible_devices")),
    ("git", _git),
    ("mixed hardware", lambda e: f"yes: {len(e['mixed_hardware'])} nodes, "
     f"{len({json.dumps(v, sort_keys=True) for v in e['mixed_hardware'].values()})} kinds"
     if e.get("mixed_hardware") else "–"),
)


def environment_rows(runs: Sequence[RunFrame]) -> list[tuple[str, list[str], bool]]:
    """(label, value per run, differs between runs) for each environment fact any run has."""
    rows = []
    for name, read in ENV_ROWS:
        values = [read(run.env) for run in runs]
        if all(v in ("–", "– / –") for v in values):
            continue
        rows.append((name, values, len(set(values)) > 1))
    return rows


def _when(stamp: Any) -> str:
    """An ISO time stamp to the second, in UTC: 2026-11-23 22:13:54 UTC."""
    if not stamp:
        return "–"
    try:
        moment = datetime.fromisoformat(str(stamp))
    except ValueError:
        return str(stamp)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if moment.tzinfo else "")


def _executor(meta: Mapping[str, Any]) -> str:
    """"ray, 3 nodes (host-a, host-b)" for a cluster run; "–" for a run on one machine."""
    executor = meta.get("executor") or {}
    if executor.get("name") != "ray":
        return "–"
    nodes = meta.get("nodes") or {}
    hosts = sorted({str(n.get("hostname")) for n in nodes.values()})
    return f"ray, {len(nodes)} node(s) ({', '.join(hosts)})"


def run_facts(run: RunFrame) -> list[tuple[str, str]]:
    meta = run.meta
    suites = meta.get("suites") or []
    facts = [
        ("run", run.label),
        ("suite", "; ".join(f"{s.get('name')} ({s.get('path')})" for s in suites) or "–"),
        ("description", "; ".join(s.get("description", "") for s in suites if
                                  s.get("description")) or "–"),
        ("status", str(meta.get("status") or "–")),
        ("started / ended", f"{_when(meta.get('started_at'))} / {_when(meta.get('ended_at'))}"
         if meta.get("started_at") else "–"),
        ("isolation", str(meta.get("isolation") or "–")),
        ("executor", _executor(meta)),
        ("archbench", str(meta.get("archbench_version") or "–")),
        ("command", " ".join(meta.get("command") or []) or "–"),
    ]
    return [(k, v) for k, v in facts if v != "–" or k in ("run", "status")]


def _counts_html(counts: Mapping[str, int]) -> str:
    chips = [f'<span class="chip" style="border-color:{attr(STATUS_COLOURS.get(s, "#777"))}">'
             f"{esc(n)} {esc(s)}</span>" for s, n in counts.items()]
    return " ".join(chips) or "no cases"


def build(report: ReportInput) -> Section | None:
    runs = report.runs
    parts: list[str] = []
    # one column per run: what ran and how many of its cases ended in each status
    header = "".join(f"<th>{esc(r.label)}</th>" for r in runs)
    fact_names = list(dict.fromkeys(k for r in runs for k, _ in run_facts(r)))
    body = []
    for name in fact_names:
        cells = "".join(f"<td>{esc(dict(run_facts(r)).get(name, '–'))}</td>" for r in runs)
        body.append(f"<tr><th>{esc(name)}</th>{cells}</tr>")
    counts = "".join(f"<td>{_counts_html(status_counts(r.frame))}</td>" for r in runs)
    body.append(f"<tr><th>cases</th>{counts}</tr>")
    parts.append(f'<table class="facts"><thead><tr><th></th>{header}</tr></thead>'
                 f"<tbody>{''.join(body)}</tbody></table>")

    env_rows = environment_rows(runs)
    if env_rows:
        lines = []
        for name, values, differs in env_rows:
            cls = ' class="differs"' if differs and len(runs) > 1 else ""
            cells = "".join(f"<td>{esc(v)}</td>" for v in values)
            lines.append(f"<tr{cls}><th>{esc(name)}</th>{cells}</tr>")
        note = ('<p class="warn">Rows marked in amber differ between the runs: compare their '
                "numbers with care.</p>" if any(d for _, _, d in env_rows) and len(runs) > 1
                else "")
        parts.append(f"<h3>Environment</h3>{note}<table class=\"facts\"><thead><tr><th></th>"
                     f"{header}</tr></thead><tbody>{''.join(lines)}</tbody></table>")
    parts.append(_devices_html(report.frame))
    problems = collector_problems(report.frame)
    if problems:
        items = "".join(f"<li><b>{esc(name)}</b> in {count} case(s): {esc(reason)}</li>"
                        for name, (count, reason) in sorted(problems.items()))
        parts.append("<h3>Measurements not taken</h3><p>These collectors could not measure "
                     f"everywhere; their columns are empty there.</p><ul>{items}</ul>")
    parts.append(_noise_html(report.frame))
    return Section("summary", "Run summary and environment", (Html("".join(parts)),))


def _devices_html(frame: pd.DataFrame) -> str:
    """Devices measured on, with the clock and throttling the collectors saw, when they did."""
    if not present(frame, "device"):
        return ""
    items = []
    for device, rows in frame.groupby(frame["device"].astype(str), sort=True):
        ok = ok_rows(rows)
        bits = [f"{len(rows)} case(s), {len(ok)} measured"]
        if present(ok, "threads"):
            threads = sorted({int(t) for t in numeric(ok, "threads").dropna()})
            bits.append("threads " + ", ".join(str(t) for t in threads))
        if "cpu_affinity" in ok.columns:
            bits += _placement(ok["cpu_affinity"])
        if present(ok, "sm_clock_mean_mhz"):
            clocks = numeric(ok, "sm_clock_mean_mhz").dropna()
            bits.append(f"SM clock {fmt(clocks.min())}–{fmt(clocks.max())} MHz")
        if present(ok, "temperature_max_c"):
            bits.append(f"max temperature {fmt(numeric(ok, 'temperature_max_c').max())} °C")
        if present(ok, "throttle_reasons"):
            reasons = sorted({str(v) for v in ok["throttle_reasons"].dropna() if str(v)
                              and str(v) not in ("0", "none", "[]")})
            if reasons:
                bits.append("throttled: " + "; ".join(reasons[:5]))
        items.append(f"<li><b>{esc(device)}</b>: {esc(', '.join(bits))}</li>")
    return f"<h3>Devices and clocks</h3><ul>{''.join(items)}</ul>"


def _drift_html(ok: pd.DataFrame) -> str:
    """How the machine's speed moved between the rounds of each run (`bench.stats.Drift`)."""
    from bench.stats import STEADY_DRIFT, round_drift

    if not {"repeat_ids", "repeat_medians_ms", "run_id"} <= set(ok.columns):
        return ""
    lines = []
    for run_id, rows in ok.groupby("run_id", sort=False):
        cases = [(ids, medians) for ids, medians in zip(rows["repeat_ids"],
                                                        rows["repeat_medians_ms"], strict=True)
                 if isinstance(ids, (list, tuple)) and isinstance(medians, (list, tuple))]
        drift = round_drift(cases)
        if drift is None:
            continue
        steady = drift.sd <= STEADY_DRIFT
        verdict = ("steady" if steady else "unsteady: levels from another run may differ by "
                   "more than their intervals; compare within this run or with archbench ab")
        lines.append(f"<p class=\"{'good' if steady else 'warn'}\">Run {esc(run_id)}: "
                     f"{esc(drift.describe())} — {esc(verdict)}.</p>")
    return "".join(lines)


def _placement(column: pd.Series) -> list[str]:
    """Where the workers ran: pinned CPUs and the samplers' CPU, or why not pinned."""
    states = [v for v in column if isinstance(v, Mapping)]
    pinned = sorted({(tuple(v.get("cpus") or ()), v.get("sampler_cpu")) for v in states
                     if v.get("pinned")}, key=str)
    why = sorted({str(v.get("why")) for v in states if not v.get("pinned") and v.get("why")})
    out = [f"workers pinned to CPU {','.join(map(str, cpus))} (the parent's samplers on "
           f"{spare})" for cpus, spare in pinned]
    return out + [f"not pinned: {reason}" for reason in why]


def _noise_html(frame: pd.DataFrame) -> str:
    ok = ok_rows(frame)
    if ok.empty:
        return ""
    noisy = noisy_cases(frame)
    intro = _drift_html(ok) + (
        "<p>Each latency is the case's level: the geometric mean of its workers' medians, "
        "with the 95% t-interval over the workers (± is its larger half-width), so it "
        "includes what varies between the workers of a run. A case measured by one worker "
        "shows that worker's median and the distribution-free interval of its samples, which "
        "does not, and says so. Noise is IQR / median of the samples; at 10% or more a case "
        "is flagged.</p>")
    if noisy.empty:
        return f"<h3>Noise</h3>{intro}<p class=\"good\">All {len(ok)} measured case(s) are " \
               "within the noise limit and met their confidence target.</p>"
    rows = []
    for _, row in noisy.head(NOISE_ROWS).iterrows():
        met = row.get("target_met")
        rows.append(f"<tr><td>{esc(row.get('name'))}</td><td class=num>{pct(row.get('noise'))}"
                    f"</td><td class=num>{esc(interval(row))}</td>"
                    f"<td class=num>{esc(_int(row.get('n_samples')))}</td>"
                    f"<td>{'no' if met is False or met == 0 else 'yes'}</td>"
                    f"<td>{esc(row.get('stop_reason') or '–')}</td></tr>")
    more = (f"<p>…and {len(noisy) - NOISE_ROWS} more (filter the results table by "
            "noise).</p>" if len(noisy) > NOISE_ROWS else "")
    return (f"<h3>Noise</h3>{intro}<p class=\"warn\">{len(noisy)} of {len(ok)} measured case(s) "
            "are noisy or missed their confidence target: treat their differences below "
            "with care.</p><table class=\"small\"><thead><tr><th>case</th><th>noise "
            "(IQR/median)</th><th>interval of the level</th><th>samples</th><th>target met</th>"
            f"<th>stopped by</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{more}")
