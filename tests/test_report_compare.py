"""Several runs in one report: side by side per case, change with its interval, verdict colour
(the verdicts come from bench.gate.compare)."""

from __future__ import annotations

import json
import re

from gate_helpers import ENV, lognormal, record, write_run

from bench.cli import main
from bench.report import build_sections, html_report, load_report_input
from bench.report.markdown import render_markdown
from bench.report.sections.comparison import timing_rows, verdict_counts
from bench.report.style import VERDICT_COLOURS, esc

EVIL = "<script>alert(1)</script>"


def two_runs(tmp_path, candidate_env=None):
    base = write_run(tmp_path / "base", [
        record("steady", lognormal(1.0, 60, seed=1)),
        record("slower", lognormal(1.0, 60, seed=2)),
        record(EVIL, lognormal(2.0, 60, seed=3)),
        record("gone", lognormal(1.0, 60, seed=4)),
    ])
    cand = write_run(tmp_path / "cand", [
        record("steady", lognormal(1.0, 60, seed=5)),
        record("slower", lognormal(1.3, 60, seed=6)),
        record(EVIL, lognormal(1.5, 60, seed=7)),
        record("new", lognormal(1.0, 60, seed=8)),
    ], env=candidate_env)
    return base, cand


def test_comparison_verdicts_side_by_side(tmp_path):
    report = load_report_input(two_runs(tmp_path))
    (comparison,) = report.comparisons
    assert (comparison.baseline, comparison.candidate) == ("base", "cand")
    rows = timing_rows(comparison.frame).set_index("name")
    assert rows.loc["slower", "verdict"] == "regression"
    assert rows.loc[EVIL, "verdict"] == "improvement"
    assert rows.loc["steady", "verdict"] == "same"
    assert rows.loc["slower", "delta_pct"] > 20
    assert rows.loc["slower", "ci_low_pct"] < rows.loc["slower", "delta_pct"] < \
        rows.loc["slower", "ci_high_pct"]
    assert rows.index[0] == "slower", "regressions first"
    assert verdict_counts(comparison.frame) == {"regression": 1, "improvement": 1, "same": 1}
    assert comparison.only_in_baseline == ("gone",)
    assert comparison.only_in_candidate == ("new",)
    assert comparison.env_mismatch is None

    keys = [s.key for s in build_sections(report)]
    assert keys[:3] == ["summary", "comparison", "results"]
    html = html_report(report)
    assert EVIL not in html and esc(EVIL) in html
    chart = json.loads(re.search(r'data-chart="chart-compare-1">(.*?)</script>', html,
                                 re.S).group(1))
    by_verdict = {t["name"]: t for t in chart["data"]}
    assert by_verdict["regression"]["marker"]["color"] == VERDICT_COLOURS["regression"]
    assert by_verdict["regression"]["y"] == ["slower"]
    assert by_verdict["improvement"]["y"] == [esc(EVIL)]
    hover = by_verdict["regression"]["hovertext"][0]
    assert hover.startswith("<b>slower</b>") and "ms →" in hover and "95% CI" in hover
    assert "1 case(s) only in the baseline: gone" in html


def test_different_environments_are_compared_with_a_warning(tmp_path):
    report = load_report_input(two_runs(tmp_path, {**ENV, "cpu_model": "Other CPU"}))
    (comparison,) = report.comparisons
    assert comparison.env_mismatch and "cpu_model" in comparison.env_mismatch
    html = html_report(report)
    assert "The runs measured different environments (cpu_model)" in html
    assert 'class="differs"' in html, "the environment table marks the differing row"
    text = render_markdown(report)
    assert "Environments differ: cpu\\_model" in text


def test_markdown_lists_regressions_first(tmp_path):
    text = render_markdown(load_report_input(two_runs(tmp_path)))
    assert "### cand against base" in text
    assert "Latency verdicts: 1 regression, 1 improvement, 1 same" in text
    table = [line for line in text.splitlines() if line.startswith("| ") and "%" in line
             and "case" not in line]
    assert table[0].startswith("| slower |") and "🔴 regression" in table[0]
    assert EVIL not in text


def test_report_command_with_two_runs(tmp_path, capsys, monkeypatch):
    base, cand = two_runs(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(base), str(cand)]) == 0
    assert (tmp_path / "reports" / "base-vs-cand.html").exists()
    assert "base-vs-cand.html" in capsys.readouterr().out
