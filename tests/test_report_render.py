"""Rendering the report: sections present only with their data, escaping, chart quality, the
markdown and table outputs, and the `archbench report` command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.report import ReportInput, RunFrame, build_sections, html_report, load_report_input
from bench.report.export import flat_table
from bench.report.markdown import render_markdown
from bench.report.style import PRECISION_COLOURS, PRUNE_COLOURS, esc
from bench.report.synthetic import synthetic_frame
from bench.results import Record, ResultsStore

EVIL = "<script>alert(1)</script>"
EVIL_IMG = '<img src=x onerror="alert(2)">'


def report_of(frame: pd.DataFrame, meta: dict | None = None) -> ReportInput:
    return ReportInput((RunFrame("run-1", frame, meta or {}),))


@pytest.fixture(scope="module")
def full_report() -> ReportInput:
    """Every column of the core, transform and collector stages (made-up numbers)."""
    return report_of(synthetic_frame(fail_rate=0.1, samples=20, telemetry_points=8))


@pytest.fixture(scope="module")
def full_html(full_report) -> str:
    return html_report(full_report)


def figures(html: str) -> dict[str, dict]:
    blocks = re.findall(r'<script type="application/json" data-chart="([^"]+)">(.*?)</script>',
                        html, flags=re.S)
    return {key.removeprefix("chart-"): json.loads(text) for key, text in blocks}


# ---- which sections appear ------------------------------------------------------------------
def test_every_section_appears_when_the_data_supports_it(full_report):
    keys = [s.key for s in build_sections(full_report)]
    assert keys == ["summary", "results", "scaling", "pruning", "precision", "tradeoffs",
                    "resources", "distributions", "failures"]
    charts = {c.key for s in build_sections(full_report) for c in s.charts}
    assert charts == {"scaling-latency", "scaling-throughput", "scaling-heatmap", "scaling-fit",
                      "pruning-speedup", "pruning-fidelity", "precision-speedup",
                      "precision-error", "tradeoff-0", "tradeoff-1", "memory",
                      "telemetry", "energy", "distributions"}


def test_a_plain_core_run_has_fewer_sections():
    frame = synthetic_frame(devices=("cpu",), precisions=("fp32",), prunes=(("none", 0.0),),
                            fail_rate=0.0)
    core_only = [c for c in frame.columns if not c.startswith(("peak_rss", "fidelity"))]
    keys = [s.key for s in build_sections(report_of(frame[core_only]))]
    assert keys == ["summary", "results", "scaling", "distributions"]


def test_a_run_where_nothing_measured_shows_summary_table_and_reasons():
    frame = pd.DataFrame([{"run_id": "r", "case_id": "a", "name": "a", "status": "unsupported",
                           "reason": "no CUDA here", "device": "cuda"}])
    keys = [s.key for s in build_sections(report_of(frame))]
    assert keys == ["summary", "results", "failures"]
    html = html_report(report_of(frame))
    assert "no CUDA here" in html and "could not run on this machine" in html


# ---- escaping -------------------------------------------------------------------------------
def evil_frame() -> pd.DataFrame:
    frame = synthetic_frame(devices=("cpu",), precisions=("fp32", "bf16"), fail_rate=0.0,
                            samples=10)
    frame.loc[0, "name"] = EVIL
    frame.loc[1, "model"] = EVIL_IMG
    frame["sweep"] = EVIL
    frame.loc[2, ["status", "reason"]] = ["failed", f"ValueError: {EVIL}\n</script><b>x</b>"]
    return frame


def test_strings_from_suites_models_and_errors_are_escaped_everywhere():
    report = ReportInput((RunFrame(EVIL, evil_frame(), {"env": {"hostname": EVIL}}),),
                         title=EVIL_IMG)
    html = html_report(report)
    scripts = re.findall(r"<script\b[^>]*>", html)
    charts = figures(html)
    assert len(scripts) == 2 + len(charts), "only plotly.js, our script and chart data"
    assert EVIL not in html and "<img" not in html and "</script><b>" not in html
    assert esc(EVIL) in html  # shown as text in the table, summary and reasons
    assert f"<td>{esc(EVIL)}</td>" in html
    hover_texts = [t for fig in charts.values() for trace in fig["data"]
                   for t in (trace.get("hovertext") or []) if isinstance(t, str)]
    names = [trace.get("name", "") for fig in charts.values() for trace in fig["data"]]
    assert any(esc(EVIL) in t for t in hover_texts), "the case name is in the hover text"
    assert not any(EVIL in t or "<img" in t for t in [*hover_texts, *names])
    # plotly draws `text` labels (frontier names) and category ticks from data, too
    texts = [t for fig in charts.values() for trace in fig["data"]
             for t in (trace.get("text") or []) if isinstance(t, str)]
    assert not any("<script" in t for t in texts)


def test_markdown_escapes_html_pipes_and_newlines():
    frame = evil_frame()
    frame.loc[3, "name"] = "a|b"
    text = render_markdown(report_of(frame))
    assert EVIL not in text and "<img" not in text and "a\\|b" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    reasons = [line for line in text.splitlines() if "ValueError" in line]
    assert len(reasons) == 1, "a multi-line reason stays on one line"


# ---- chart quality --------------------------------------------------------------------------
def test_every_chart_has_a_title_axis_titles_and_hover_with_the_case(full_html):
    html = full_html
    for key, fig in figures(html).items():
        layout = fig["layout"]
        assert layout["title"]["text"], key
        axes = [name for name in layout if re.fullmatch(r"[xy]axis\d*", name)]
        assert axes, key
        for axis in axes:
            text = (layout[axis].get("title") or {}).get("text")
            # shared axes of stacked subplots are titled once, on the outer axis
            if not text:
                assert key in ("memory", "telemetry"), (key, axis)
                continue
            if "latency" in text or "memory" in text or "energy" in text:
                assert re.search(r"\((ms|MiB|J)\b", text), (key, axis, text)
        hovers = [t for trace in fig["data"] for t in (trace.get("hovertext") or [])
                  if isinstance(t, str) and t]
        if key not in ("scaling-heatmap", "distributions"):
            assert hovers and all(t.startswith("<b>") for t in hovers), key


def test_colours_follow_precision_and_method_in_every_chart(full_html):
    html = full_html
    seen: dict[str, set[str]] = {}
    for key, fig in figures(html).items():
        for trace in fig["data"]:
            name = trace.get("name") or ""
            colour = (trace.get("marker") or {}).get("color") or (trace.get("line") or {}).get(
                "color")
            if key.startswith(("precision", "energy", "distributions")) and name in \
                    PRECISION_COLOURS:
                seen.setdefault(name, set()).add(colour)
            if key.startswith("pruning") and name in PRUNE_COLOURS:
                seen.setdefault(f"prune:{name}", set()).add(colour)
    assert seen["bf16"] == {PRECISION_COLOURS["bf16"]}
    assert seen["fp32"] == {PRECISION_COLOURS["fp32"]}
    assert seen["prune:structured"] == {PRUNE_COLOURS["structured"]}


def test_pruning_section_says_masked_pruning_does_not_speed_dense_kernels(full_html):
    html = full_html
    assert "Masked (unstructured) pruning does not make dense kernels faster" in html
    assert re.search(r"unstructured: median speed-up ×[\d.]+ over \d+ case", html)
    notes = [a["text"] for a in figures(html)["pruning-speedup"]["layout"]["annotations"]]
    assert notes == ["1× = no faster than unpruned"]


def test_the_page_is_self_contained(full_html):
    html = full_html
    assert html.count("plotly.js v") == 1, "plotly.js is inlined once"
    assert not re.search(r'<(script|link|img|iframe)[^>]+(src|href)=["\']?(https?:)?//', html)
    assert "<link" not in html
    assert "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';" in html


# ---- markdown and tables --------------------------------------------------------------------
def test_markdown_summary_is_compact(full_report):
    text = render_markdown(full_report)
    assert text.startswith("## archbench: run-1")
    assert "| case | median (ms) | CI ± | noise |" in text
    assert "…and" in text, "long tables are cut with a count"
    assert "<details><summary>" in text and "failed" in text
    assert len(text) < 12_000


def test_flat_table_keeps_lists_for_parquet_and_json_for_csv(full_report):
    frame = full_report.all_rows
    for_csv = flat_table(frame, keep_lists=False)
    sample_json = for_csv["samples_ms"].dropna().iloc[0]
    assert json.loads(sample_json) == frame["samples_ms"].dropna().iloc[0]
    assert json.loads(for_csv["telemetry"].dropna().iloc[0])["t_s"][0] == 0.0
    for_parquet = flat_table(frame, keep_lists=True)
    assert isinstance(for_parquet["samples_ms"].dropna().iloc[0], list)
    assert isinstance(for_parquet["telemetry"].dropna().iloc[0], str)


# ---- the command ----------------------------------------------------------------------------
def write_run(folder: Path, name: str = EVIL, run_id: str = "run-a") -> Path:
    store = ResultsStore(folder)
    params = {"model": "mlp", "depth": 2, "width": 8, "activation": "relu", "batch_size": 4,
              "device": "cpu", "precision": "fp32", "prune": {"method": "none"},
              "compile": "eager", "mode": "inference", "model_args": {}}
    timing = {"samples_ns": [1e6, 1.1e6, 1.2e6, 0.9e6, 1e6, 1.05e6], "block_size": 1,
              "first_call_ns": 5e6, "warmup_iters": 3, "warmup_ns": 1e7, "measure_ns": 6e6,
              "ci_rel": 0.1, "target_met": False, "stop_reason": "max_time", "clock": "fake"}
    store.write_run({"run_id": run_id, "status": "complete", "suites": [{"name": "s"}],
                     "env": {"cpu_model": "Test CPU", "torch_version": "2.13.0"}})
    store.append(Record(run_id=run_id, case_id="c1", name=name, suite="s", params=params,
                        settings={"confidence": 0.95}, status="ok", timing=timing,
                        metrics={"params_total": 100, "flops_per_item": 1e3}))
    store.append(Record(run_id=run_id, case_id="c2", name="skipped", suite="s",
                        params={**params, "device": "cuda"}, settings={},
                        status="unsupported", reason="no CUDA here"))
    return folder


def test_report_command_writes_each_format(tmp_path, capsys, monkeypatch):
    run = write_run(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    written = tmp_path / "reports" / "run-a.html"
    assert f"report: {Path('reports') / 'run-a.html'}" in out and written.exists()
    assert esc(EVIL) in written.read_text() and EVIL not in written.read_text()

    assert main(["report", str(run), "--format", "markdown"]) == 0
    assert "## archbench: run-a" in capsys.readouterr().out

    assert main(["report", str(run / "results.jsonl"), "-f", "csv", "-o", "t.csv"]) == 0
    table = pd.read_csv(tmp_path / "t.csv")
    assert table["name"].tolist() == [EVIL, "skipped"] and table["median_ms"][0] == 1.025

    assert main(["report", str(run), "-f", "parquet", "-o", "t.parquet"]) == 0
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert list(back["samples_ms"][0]) == [1.0, 1.1, 1.2, 0.9, 1.0, 1.05]

    assert main(["report", str(run), "-f", "parquet", "-o", "-"]) == 2
    assert "Parquet is binary" in capsys.readouterr().err


def test_report_command_bad_folder_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_several_runs_in_one_table(tmp_path):
    first = write_run(tmp_path / "a", name="case-x", run_id="run-a")
    second = write_run(tmp_path / "b", name="case-x", run_id="run-b")
    report = load_report_input([first, second])
    assert report.display_title == "run-a vs run-b"
    assert report.all_rows["run"].tolist() == ["run-a", "run-a", "run-b", "run-b"]
    assert len(report.frame) == 2, "single-run sections read one row per case"
    html = html_report(report)
    assert "<th data-type=text>run</th>" in html


def test_run_draws_its_report_unless_told_not_to(write_suite, tmp_path, capsys):
    path = write_suite('[[sweep]]\nmodel = "mlp"\nwidth = [8]\n')
    assert main(["run", str(path), "--out", str(tmp_path / "a"), "--isolation", "inline",
                 "--no-report"]) == 0
    assert not (tmp_path / "a" / "report.html").exists()
    assert main(["run", str(path), "--out", str(tmp_path / "b"), "--isolation", "inline"]) == 0
    assert "mlp-d2-w8-relu-b1-fp32-cpu" in (tmp_path / "b" / "report.html").read_text()
    assert f"report: {tmp_path / 'b' / 'report.html'}" in capsys.readouterr().out


def test_a_report_that_cannot_be_drawn_never_fails_the_run(tmp_path, capsys):
    from bench.cli.report_cmd import report_after_run

    run = write_run(tmp_path / "run")
    (run / "results.jsonl").write_text("{damaged\n{}\n")
    report_after_run(run)
    err = capsys.readouterr().err
    assert "no report drawn" in err and f"archbench report {run}" in err
    assert not (run / "report.html").exists()


def test_fidelity_charts_show_each_transform_alone():
    """Fidelity is measured against the unpruned fp32 model, so the pruning error chart keeps
    fp32 cases and the precision error chart keeps unpruned ones."""
    from bench.report.sections import transforms

    frame = synthetic_frame(devices=("cpu",), widths=(64, 256), precisions=("fp32", "bf16"),
                            fail_rate=0.0, samples=10)
    report = report_of(frame)
    pruning = {c.key: c for c in transforms.build_pruning(report).charts}
    fidelity_hover = [t for trace in pruning["pruning-fidelity"].figure["data"]
                      for t in trace["hovertext"] if t]
    assert fidelity_hover and all("-fp32-" in t for t in fidelity_hover)
    speed_hover = [t for trace in pruning["pruning-speedup"].figure["data"]
                   for t in trace["hovertext"] if t]
    assert any("-bf16-" in t for t in speed_hover), "speed-ups keep every precision"
    precision = {c.key: c for c in transforms.build_precision(report).charts}
    error_hover = [t for trace in precision["precision-error"].figure["data"]
                   for t in trace["hovertext"]]
    assert error_hover and not any("structured" in t for t in error_hover)
