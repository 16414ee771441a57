"""Does the HTML report scale? A synthetic 1,000-case result set (every section's columns,
raw samples, telemetry) rendered to one file: time and size against the goals (<= 10 s,
<= 20 MB).

Times the whole path from DataFrame to file on disk (section data preparation, figures,
JSON, the page), a few rounds; optionally also how long Chromium takes to draw every chart.

Usage: python -m benchmarks.report_scale [--cases 1000] [--rounds 3] [--browser]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.report import ReportInput, RunFrame, build_sections, render_html, write_html
from bench.report.synthetic import synthetic_frame

GOAL_S, GOAL_MB = 10.0, 20.0


def make_frame(cases: int, samples: int):
    return synthetic_frame(models=("mlp", "cnn", "transformer"), depths=(2, 4, 8),
                           widths=(64, 128, 256, 512, 1024), batches=(32,),
                           devices=("cpu", "cuda"),
                           precisions=("fp32", "bf16", "fp16", "int8-dynamic"),
                           n_cases=cases, samples=samples, telemetry_points=60)


def render_once(report: ReportInput, path: Path) -> tuple[float, int, int]:
    start = time.perf_counter()
    sections = build_sections(report)
    write_html(render_html(report, sections), path)
    elapsed = time.perf_counter() - start
    return elapsed, path.stat().st_size, sum(len(s.charts) for s in sections)


def browser_draw_s(path: Path) -> float:
    from bench.report.browser import open_report

    start = time.perf_counter()
    with open_report(path, timeout_s=120) as (page, log):
        drawn = time.perf_counter() - start
        assert not log.console_errors and not log.page_errors, log
        rendered = page.eval_on_selector_all(".chart", "els => els.map(e => e.dataset.rendered)")
        assert set(rendered) == {"yes"}, rendered
    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=200, help="raw samples per case")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--browser", action="store_true",
                        help="also time Chromium drawing the page (needs Playwright)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/report_scale.json"))
    args = parser.parse_args()
    frame = make_frame(args.cases, args.samples)
    report = ReportInput((RunFrame("synthetic-1000", frame),))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "report.html"
        rounds = [render_once(report, path) for _ in range(args.rounds)]
        drawn_s = browser_draw_s(path) if args.browser else None
    times = [r[0] for r in rounds]
    size_mb = rounds[-1][1] / 1e6
    result = {"cases": len(frame), "statuses": frame["status"].value_counts().to_dict(),
              "samples_per_case": args.samples, "charts": rounds[-1][2],
              "render_s": times, "render_s_median": statistics.median(times),
              "size_mb": size_mb, "browser_draw_s": drawn_s,
              "goal_s": GOAL_S, "goal_mb": GOAL_MB}
    print(f"{len(frame)} cases, {rounds[-1][2]} charts: render {statistics.median(times):.2f} s "
          f"median of {args.rounds} (max {max(times):.2f} s; goal <= {GOAL_S:g} s), "
          f"file {size_mb:.2f} MB (goal <= {GOAL_MB:g} MB)"
          + (f"; Chromium draws it in {drawn_s:.1f} s" if drawn_s is not None else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
