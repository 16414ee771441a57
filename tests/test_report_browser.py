"""The report in a real browser: Debian's Chromium through Playwright, on a real small run.

Skips with the reason where Playwright or a system Chromium is missing; `.ci/run` installs
both, so CI runs it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import FAST_SETTINGS

from bench.cli import main
from bench.report import ReportInput, RunFrame, html_report
from bench.report.browser import find_chromium
from bench.report.synthetic import synthetic_frame

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EVIL = "<script>alert(1)</script>"

if find_chromium() is None:
    pytest.skip("no Chromium found (Debian: apt-get install chromium; or set "
                "ARCHBENCH_CHROMIUM)", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (dev extra)")

from bench.report.browser import open_report  # noqa: E402


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, request) -> Path:
    """A real run of a tiny CPU suite through the runner and the CLI, which also draws
    RUN/report.html at its end."""
    folder = tmp_path_factory.mktemp("browser")
    factories = Path(request.config.rootpath) / "tests" / "fixtures" / "report_factories.py"
    suite = folder / "tiny.toml"
    suite.write_text(f"""
[suite]
name = "tiny"
description = "a tiny sweep for the browser test"
{FAST_SETTINGS.strip()}
profile = true
profile_iters = 2
[[sweep]]
name = "{EVIL}"
model = "mlp"
depth = [1, 2]
width = [8, 16]
batch_size = [4]
device = ["cpu", "cuda"]
[[sweep]]
model = "{factories}:raises_markup"
""")
    run_dir = folder / "run"
    assert main(["run", str(suite), "--out", str(run_dir)]) == 1, "one case fails on purpose"
    return run_dir


def rows_shown(page) -> list[str]:
    return page.eval_on_selector_all(
        "#results-table tbody tr", "rows => rows.filter(r => !r.hidden)"
                                   ".map(r => r.cells[0].textContent)")


def test_real_run_report_in_chromium(real_run, tmp_path):
    report = real_run / "report.html"
    assert report.exists(), "archbench run draws the report at its end"
    with open_report(report) as (page, log):
        charts = page.eval_on_selector_all(
            ".chart", "els => els.map(e => [e.id, e.getAttribute('data-rendered'), "
                      "e.querySelectorAll('svg.main-svg').length, "
                      "e.querySelectorAll('.scatterlayer .trace, .boxlayer .trace, "
                      ".heatmaplayer image, .barlayer .trace').length])")
        assert {c[0] for c in charts} >= {"chart-scaling-latency", "chart-scaling-heatmap",
                                          "chart-scaling-fit", "chart-tradeoff-0",
                                          "chart-distributions", "chart-telemetry",
                                          "chart-profile"}
        for element_id, rendered, svgs, traces in charts:
            assert rendered == "yes" and svgs >= 1 and traces >= 1, element_id
        assert log.console_errors == [] and log.page_errors == [] and log.dialogs == []
        page_url = report.resolve().as_uri()
        assert [u for u in log.requests if u != page_url and not u.startswith(
            ("data:", "blob:"))] == [], "the report fetches nothing"

        # the table: 4 cpu + 4 cuda + 1 failed factory; the filter narrows it
        assert len(rows_shown(page)) == 9
        page.fill("#results-filter", "D2-w16 fp32-cpu")
        assert rows_shown(page) == ["mlp-d2-w16-relu-b4-fp32-cpu"]
        assert page.inner_text("#results-count") == "1 of 9 rows"
        page.fill("#results-filter", "")
        page.select_option("#results-status", "unsupported")
        assert len(rows_shown(page)) == 4 and all(n.endswith("cuda") for n in rows_shown(page))
        page.select_option("#results-status", "")
        # sorting by the median: ascending numbers, cases without one last
        page.click("#results-table thead th:has-text('median (ms)')")
        medians = page.evaluate("""() => {
            const table = document.getElementById('results-table');
            const col = Array.from(table.tHead.rows[0].cells).findIndex(
                th => th.textContent.startsWith('median (ms)'));
            return Array.from(table.tBodies[0].rows).map(r => r.cells[col].dataset.v === undefined
                ? null : parseFloat(r.cells[col].dataset.v));
        }""")
        measured = [m for m in medians if m is not None]
        assert len(measured) == 4 and medians[:4] == sorted(measured)

        # the question's columns show; the others wait behind the column picker
        assert page.is_visible("#results-table th:has-text('median (ms)')")
        assert page.is_visible("#results-table th:has-text('above runtime (MiB)')")
        assert not page.is_visible("#results-table th:has-text('IQR (ms)')")
        page.click(".col-picker summary")
        page.check(".col-picker label:has-text('IQR (ms)') input")
        assert page.is_visible("#results-table th:has-text('IQR (ms)')")
        page.uncheck(".col-picker label:has-text('median (ms)') input")
        assert not page.is_visible("#results-table th:has-text('median (ms)')")
        page.check(".col-picker label:has-text('median (ms)') input")
        page.check(".col-picker label:has-text('sweep') input")  # holds the suite's markup
        page.click(".col-picker summary")

        # markup from the suite and from an error message is shown as text, never run
        # the sweep name of 8 cases and the failed case's reason
        assert page.locator("#results-table").inner_text().count(EVIL) == 9
        assert EVIL in page.inner_text("#failures")
        assert page.eval_on_selector_all("body script", "s => s.length") == 2 + len(charts)

        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000


def test_hover_and_labels_show_markup_as_text(tmp_path):
    frame = synthetic_frame(devices=("cpu",), precisions=("fp32",), fail_rate=0.0, samples=10)
    frame["model"] = EVIL  # the family's name is the trade-off figure's title
    smallest = frame["params_total"].idxmin()
    frame.loc[smallest, "name"] = EVIL  # and one case's name is in its hover text
    path = tmp_path / "evil.html"
    path.write_text(html_report(ReportInput((RunFrame("evil", frame),))))
    with open_report(path) as (page, log):
        title = page.eval_on_selector("#chart-tradeoff-0 .gtitle", "t => t.textContent")
        assert title.startswith(EVIL)
        labels = page.eval_on_selector_all("#chart-tradeoff-0 .textpoint text",
                                           "ts => ts.map(t => t.textContent.trim())")
        assert "d2 w64 fp32" in labels  # the reference's short label, inside the plot
        hover = page.evaluate("""() => {
            const gd = document.getElementById('chart-tradeoff-0');
            const curve = gd.data.findIndex(t => (t.hovertext || []).some(
                s => s.includes('&lt;script')));
            const point = gd.data[curve].hovertext.findIndex(s => s.includes('&lt;script'));
            Plotly.Fx.hover(gd, [{curveNumber: curve, pointNumber: point}]);
            return gd.querySelector('.hoverlayer').textContent;
        }""")
        assert EVIL in hover and re.search(r"median [\d.]+ ms", hover)
        assert log.dialogs == [] and log.console_errors == [] and log.page_errors == []
        assert page.eval_on_selector_all("svg script", "s => s.length") == 0
