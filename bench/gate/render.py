"""A comparison as text: markdown (CI step summaries, pull-request comments) and table rows.

Pure: builds strings and lists from a `Comparison`; printing is the CLI's job.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.gate.compare import Comparison, MetricVerdict
from bench.stats import ONE_WORKER

#: Rows shown first: what a reader has to act on.
ORDER = {"regression": 0, "improvement": 1, "inconclusive": 2, "same": 3}
COLUMNS = ("verdict", "case", "metric", "baseline", "candidate", "change", "95% CI",
           "p adj.", "note")


def headline(comparison: Comparison) -> str:
    """The verdict in a few words. "no regression" only when every timing case was decided:
    when some could not be, the answer is "could not tell", and the headline says so."""
    counts = comparison.counts()
    n = counts["regression"]
    unresolved = len(comparison.unresolved())
    if n:
        verdict = f"{n} regression{'s' if n != 1 else ''}"
    elif unresolved:
        verdict = f"could not tell for {unresolved} timing case{'s' if unresolved != 1 else ''}"
    else:
        verdict = "no regression"
    parts = [f"{counts[v]} {v}" for v in ("improvement", "same", "inconclusive") if counts[v]]
    return f"{verdict}" + (f" ({', '.join(parts)})" if parts else "")


def inconclusive_lines(comparison: Comparison) -> list[str]:
    """How many timing cases the run could not decide, and the smallest change it could
    have caught for them: an inconclusive gate is never a silent green."""
    unresolved = comparison.unresolved()
    if not unresolved:
        return []
    total = len(comparison.timing())
    mde = comparison.detectable_pct()
    seen = (f"the smallest slowdown this run could have detected for them is "
            f"{mde['min']:.1f}% (median {mde['median']:.1f}%, up to {mde['max']:.1f}%)"
            if mde else "the run had too few measurements to say how small a change it "
                        "could detect")
    more = ("add pairs (--max-pairs, --budget)" if any(v.test == "paired" for v in unresolved)
            else "measure more repeats, or use `archbench ab` (both sides in one run)")
    return [f"{len(unresolved)} of {total} timing case(s) could not be resolved: neither a "
            f"change nor the same within the threshold; {seen}. To decide them, {more}."]


def settings_line(comparison: Comparison) -> str:
    correction = {"holm": "Holm", "bh": "Benjamini–Hochberg"}[comparison.correction]
    rules = ", ".join(comparison.thresholds) or ("defaults (timing 5%, memory 10%, exact 0, "
                                                 "counts 0.5%)")
    tests = {v.test for v in comparison.verdicts if v.kind == "timing"}
    quantile = comparison.pair_quantile
    worker = "median" if quantile in (None, 50) else f"p{quantile:g}"
    names = {"paired": "paired test on the log-ratios of side-by-side pairs (A/B run; each "
                       f"worker's {worker} time)",
             "repeats": "Welch t on log per-repeat medians",
             "samples": "one-sided Mann–Whitney U on the samples"}
    # No timing rows (counted cases, or none measured ok): say so rather than name a test.
    used = "; ".join(names[t] for t in sorted(tests) if t in names) or "no timed case compared"
    return (f"timing: {used}; {correction} correction, α = {comparison.alpha:g}; "
            f"thresholds: {rules}")


def drift_lines(comparison: Comparison) -> list[str]:
    """A hint when timing was tested within single workers: drift between runs is then
    invisible to the test, and a noisy machine can make it flag noise."""
    if any(v.kind == "timing" and v.test == "samples" for v in comparison.verdicts):
        return ["Some cases had fewer than 3 workers a side, so their timing was tested on one "
                "worker's samples (" + ONE_WORKER + "): a machine whose speed drifts between "
                "runs can look like a change. Leave `repeats` at its default (\"auto\": 3 or "
                "more workers a case) or set it to 3 or more in the suite's [settings] for a "
                "gate that tests run-to-run variation."]
    return []


def env_lines(comparison: Comparison) -> list[str]:
    lines = [f"{label} ran on more than one kind of node (a mixed cluster): cases are compared "
             "only where both runs measured them on the same hardware."
             for label in comparison.mixed_hardware]
    paired = any(v.test == "paired" for v in comparison.timing())
    lines += [f"{label}: the machine's speed moved ±{sd * 100:.1f}% between the run's rounds; "
              "a machine this unsteady can move a whole run's levels by more than their "
              "intervals" + ("" if paired else " — measure both sides in one run with "
                             "`archbench ab` for a gate drift cannot fool")
              for label, sd in comparison.unsteady]
    return lines + _env_lines(comparison)


def _env_lines(comparison: Comparison) -> list[str]:
    if comparison.env_mismatch:
        diffs = "; ".join(f"{k}: {v['baseline']!r} vs {v['candidate']!r}"
                          for k, v in comparison.env_mismatch.items())
        return [f"Environments differ ({diffs}); compared anyway because it was allowed "
                "(--allow-env-mismatch): timing verdicts may reflect the machine, not the code."]
    if not comparison.env_checked:
        return ["Environments not checked: one side had no run.json environment."]
    return []


def rows(comparison: Comparison, *, everything: bool = False) -> list[MetricVerdict]:
    """Rows to show: all timing and instruction-count rows and every non-`same` row (or all,
    with `everything`), regressions first, then by case order."""
    chosen = [v for v in comparison.verdicts
              if everything or v.kind in ("timing", "counts") or v.verdict != "same"]
    index = {id(v): i for i, v in enumerate(comparison.verdicts)}
    return sorted(chosen, key=lambda v: (ORDER[v.verdict], index[id(v)]))


def cells(row: MetricVerdict) -> list[str]:
    return [row.verdict, row.name, row.metric, value(row.metric, row.baseline),
            value(row.metric, row.candidate), pct(row.delta_pct),
            interval(row.ci_low_pct, row.ci_high_pct), pvalue(row.p_adjusted), row.note]


def value(metric: str, number: float | None) -> str:
    if number is None:
        return ""
    if metric.endswith("_ms"):
        return f"{number:.4g} ms"
    if metric.endswith("_bytes"):
        return human_bytes(number)
    if number == int(number) and abs(number) < 1e15:
        return f"{int(number):,}"
    return f"{number:.4g}"


def human_bytes(number: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(number) < 1024 or unit == "GiB":
            return f"{number:.1f} {unit}" if unit != "B" else f"{int(number)} B"
        number /= 1024
    return f"{number:.1f} GiB"


def pct(number: float | None) -> str:
    """One decimal, two under 1% (instruction counts move by hundredths)."""
    if number is None:
        return ""
    return f"{number:+.2f}%" if abs(number) < 1 else f"{number:+.1f}%"


def interval(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f"[{low:+.1f}%, {high:+.1f}%]"


def pvalue(p: float | None) -> str:
    return "" if p is None else f"{p:.2g}"


def to_markdown(comparison: Comparison, *, everything: bool = False) -> str:
    """A self-contained markdown section: verdict, settings, environment, the rows that
    matter (regressions first), and the cases found on one side only."""
    lines = [f"### archbench compare: {headline(comparison)}", "",
             f"`{_md(comparison.baseline_label)}` (baseline) → "
             f"`{_md(comparison.candidate_label)}` (candidate)  ", settings_line(comparison), ""]
    lines += [f"> **Warning:** {line}" for line in env_lines(comparison)]
    lines += [f"> **Note:** {line}" for line in drift_lines(comparison)]
    lines += [f"> **Undecided:** {line}" for line in inconclusive_lines(comparison)]
    if lines[-1] != "":
        lines.append("")
    shown = rows(comparison, everything=everything)
    if shown:
        lines += _table([[_md(cell) for cell in cells(r)] for r in shown])
        hidden = len(comparison.verdicts) - len(shown)
        if hidden:
            lines += ["", f"{hidden} other metric(s) unchanged (parameters, FLOPs, memory, "
                          "fidelity within tolerance)."]
    else:
        lines.append("No case in common.")
    for title, names in (("Only in the baseline", comparison.only_in_baseline),
                         ("Only in the candidate", comparison.only_in_candidate)):
        if names:
            lines += ["", f"{title} ({len(names)}): " + ", ".join(f"`{n}`" for n in names)]
    return "\n".join(lines) + "\n"


def _table(body: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in body:
        cells_ = list(row)
        cells_[0] = f"**{cells_[0]}**" if cells_[0] == "regression" else cells_[0]
        out.append("| " + " | ".join(cells_) + " |")
    return out


def _md(text: str) -> str:
    """Keep a cell inside its table: pipes escaped, newlines folded."""
    return str(text).replace("|", "\\|").replace("\n", " ")
