"""History as text: table rows for the terminal and markdown for a CI step summary.

Pure: builds strings and lists from a `History` / `CheckResult`; printing is the CLI's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.gate.thresholds import TIMING_METRIC
from bench.history.analyse import Change, CheckResult, Finding, History, latest_levels


def short(commit: str) -> str:
    return commit[:10]


def commit_range(change: Change | Finding) -> str:
    """`previous..commit`: the commits that may have brought the change in."""
    return f"{short(change.previous)}..{short(change.commit)}"


def pct_text(value: float) -> str:
    return f"{value:+.1f}%"


def interval_text(change: Change) -> str:
    p = change.point
    if p.ratio_low is None or p.ratio_high is None:
        return "[interval needs 2 points a side]"
    return f"[{(p.ratio_low - 1) * 100:+.1f}%, {(p.ratio_high - 1) * 100:+.1f}%]"


def what(finding: Finding) -> str:
    """"step", "drift over 3f2a..9c1e" or "accepted"."""
    if finding.kind == "drift":
        return f"drift from {short(finding.first)}"
    return finding.kind


def finding_line(finding: Finding) -> str:
    low, high = finding.pct_range()
    size = pct_text(low) if abs(high - low) < 0.05 else f"{pct_text(low)} to {pct_text(high)}"
    n = len(finding.changes)
    metric = "" if finding.metric == TIMING_METRIC else f" {finding.metric}"
    return (f"{finding.time:%Y-%m-%d} {commit_range(finding)}: {n} case{'s' * (n != 1)}"
            f"{metric} {finding.direction} ({size}), {what(finding)}")


def level_rows(history: History) -> list[dict[str, Any]]:
    """One row per series for `history show`: newest level, band, noise, newest change."""
    out = []
    for row in sorted(latest_levels(history), key=lambda r: (r["series"].name,
                                                            r["series"].fingerprint)):
        s = row["series"]
        change: Change | None = row["last_change"]
        out.append({
            "case": s.label, "environment": s.fingerprint[:8], "points": row["points"],
            "latest_ms": row["level_ms"], "band_ms": (row["low_ms"], row["high_ms"]),
            "noise_pct": row["noise_pct"], "changes": row["changes"],
            "last_change": (f"{pct_text(change.point.change_pct)} {interval_text(change)} "
                            f"at {commit_range(change)}"
                            f"{' (accepted)' if change.accepted else ''}"
                            f"{' (drift)' if change.point.kind == 'drift' else ''}")
            if change else "",
        })
    return out


def environments(history: History) -> dict[str, str]:
    """Fingerprint prefix -> the environment it stands for, for a legend under tables."""
    return {s.fingerprint[:8]: s.environment for s in history.series}


def check_markdown(result: CheckResult, history: History) -> str:
    """The check for `$GITHUB_STEP_SUMMARY`: verdict first, then the changes it judged."""
    n = len(result.regressions)
    head = (f"**{n} regression{'s' * (n != 1)}** in the newest {len(result.newest)} commit(s)"
            if n else f"no regression in the newest {len(result.newest)} commit(s)")
    lines = ["### archbench history check", "", head, "",
             f"{len(history.series)} series, {len(history.commits)} commits; thresholds: "
             f"{', '.join(result.thresholds) or 'default (timing 5%)'}", ""]
    if result.verdicts:
        lines += ["| verdict | case | env | change [95% CI] | commits | kind |",
                  "|---|---|---|---|---|---|"]
        for v in result.verdicts:
            c = v.change
            lines.append(f"| {v.verdict} | {_md(c.series.label)} | {c.series.fingerprint[:8]} | "
                         f"{pct_text(c.point.change_pct)} {interval_text(c)} | "
                         f"`{commit_range(c)}` | {c.point.kind} |")
        lines.append("")
    if n:
        lines.append("Accept a change that is intended with `archbench history accept COMMIT "
                     "[--case PATTERN]`.")
        lines.append("")
    return "\n".join(lines)


def show_markdown(history: History, *, limit: int = 30) -> str:
    lines = ["### archbench history", "",
             f"{len(history.series)} series over {len(history.commits)} commits", ""]
    findings = [f for f in history.findings if not f.accepted][:limit]
    if findings:
        lines += ["**Changes, newest first**", ""]
        lines += [f"- {_md(finding_line(f))}: " + ", ".join(
            f"{_md(c.series.label)} {pct_text(c.point.change_pct)}" for c in f.changes[:8]) +
            (f" and {len(f.changes) - 8} more" if len(f.changes) > 8 else "")
            for f in findings]
        lines.append("")
    lines += ["| case | env | points | latest (ms) | noise | changes | newest change |",
              "|---|---|---|---|---|---|---|"]
    for row in level_rows(history)[:200]:
        lines.append(f"| {_md(row['case'])} | {row['environment']} | {row['points']} | "
                     f"{row['latest_ms']:.4g} | {row['noise_pct']:.1f}% | {row['changes']} | "
                     f"{_md(row['last_change'])} |")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def finding_dicts(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """Findings as plain data for --json."""
    return [{"commit": f.commit, "previous": f.previous, "first": f.first, "metric": f.metric,
             "time": f.time.isoformat(), "kind": f.kind, "direction": f.direction,
             "accepted": f.accepted,
             "changes": [change_dict(c) for c in f.changes]} for f in findings]


def change_dict(c: Change) -> dict[str, Any]:
    p = c.point
    return {"case": c.series.name, "case_id": c.series.case_id, "metric": c.series.metric,
            "fingerprint": c.series.fingerprint, "change_pct": p.change_pct,
            "ci_low_pct": None if p.ratio_low is None else (p.ratio_low - 1) * 100,
            "ci_high_pct": None if p.ratio_high is None else (p.ratio_high - 1) * 100,
            "p_value": p.p_value, "kind": p.kind, "commit": c.commit, "previous": c.previous,
            "first": c.first, "accepted": c.accepted, "points_before": p.n_before,
            "points_after": p.n_after}
