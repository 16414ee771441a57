"""The report's answer to the question: the Recommendation section and the trade-off view."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.decide import Question
from bench.report import ReportInput, RunFrame
from bench.report.sections import recommendation, tradeoffs
from bench.report.synthetic import synthetic_frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    out = synthetic_frame(devices=("cpu",), fail_rate=0.0)
    out["rss_before_build_bytes"] = 300 * 2 ** 20
    return out


def test_points_have_families_twins_and_frontiers(frame: pd.DataFrame) -> None:
    points = tradeoffs.tradeoff_points(frame)
    assert set(points["family"]) == {"mlp cpu"}  # batch is drawn inside, not split out
    refs = points[points["reference"]]
    assert set(refs["precision"]) == {"fp32"} and set(refs["prune_method"]) == {"none"}
    assert (points["memory_mib"] == (points["peak_rss_bytes"] / 2 ** 20 - 300)).all()
    assert set(points["tag"]) >= {"d2 w64 fp32", "d4 w1024 bf16 s50%"}
    # nothing on a frontier is beaten on both axes by a case of its batch
    for _, row in points[points["front_memory"]].iterrows():
        better = points[(points["batch"] == row["batch"]) &
                        (points["median_ms"] < row["median_ms"]) &
                        (points["memory_mib"] < row["memory_mib"])]
        assert better.empty
    assert points["front_memory"].any() and points["front_fidelity"].any()


def test_log_ticks_are_few_and_round() -> None:
    values, labels = tradeoffs.log_ticks([0.31, 4.2, 18.0])
    assert values == pytest.approx([0.5, 1.0, 2.0, 5.0, 10.0, 20.0])
    assert labels[:3] == ["0.500", "1.00", "2.00"]
    wide, _ = tradeoffs.log_ticks([0.001, 50.0])
    assert wide == pytest.approx([0.001, 0.01, 0.1, 1.0, 10.0])


def test_section_draws_one_figure_per_family_with_the_reference(frame: pd.DataFrame) -> None:
    two = pd.concat([frame, frame.assign(model="cnn", case_id=frame["case_id"] + "c")])
    section = tradeoffs.build(ReportInput((RunFrame("r", two),)))
    assert section is not None
    titles = [c.figure["layout"]["title"]["text"] for c in section.charts]
    assert titles == ["cnn cpu: latency against fidelity and memory",
                      "mlp cpu: latency against fidelity and memory"]
    figure = section.charts[0].figure
    symbols = [s for t in figure["data"] if t.get("mode") == "markers"
               for s in np.atleast_1d(t["marker"]["symbol"])]
    assert "star" in symbols and "diamond" in symbols and "x" in symbols
    assert figure["layout"]["yaxis"]["type"] == "log" and figure["layout"]["yaxis"]["tickvals"]
    text = " ".join(b.markup for b in section.blocks if hasattr(b, "markup"))
    assert "RSS just before the model was built" in text


def test_recommendation_section_answers_and_escapes(frame: pd.DataFrame) -> None:
    evil = frame.copy()
    evil.loc[evil.index[0], "name"] = "<script>alert(1)</script>"
    report = ReportInput((RunFrame("r", evil),))
    assert recommendation.build_for(report, Question("median_ms")) is None  # no constraint
    section = recommendation.build_for(
        report, Question("median_ms", ("median_ms<=1", "fidelity_top1_agreement>=0.99")))
    assert section is not None
    markup = section.blocks[0].markup  # type: ignore[union-attr]
    assert "<script>alert" not in markup
    assert "Best: " in markup and "Why not" in markup
    bad = recommendation.build_for(report, Question("median_ms", ("energy_per_item_j<=1",)))
    assert bad is not None and "did not collect" in bad.blocks[0].markup  # type: ignore


def test_tradeoff_figures_are_json(frame: pd.DataFrame) -> None:
    section = tradeoffs.build(ReportInput((RunFrame("r", frame),)))
    assert section is not None
    from bench.report.html import figure_json

    for chart in section.charts:
        json.loads(figure_json(chart.figure))


def test_precision_is_on_the_axis_and_pruning_lines_split_by_precision(
        frame: pd.DataFrame) -> None:
    from bench.report.sections import transforms

    report = ReportInput((RunFrame("r", frame),))
    precision = transforms.build_precision(report)
    assert precision is not None
    speedup = precision.charts[0].figure
    assert {x for t in speedup["data"] for x in t["x"]} == {"bf16"}  # one device: precision
    assert speedup["layout"]["xaxis"]["title"]["text"] == "precision"
    pruning = transforms.build_pruning(report)
    assert pruning is not None
    names = {t["name"] for t in pruning.charts[0].figure["data"]}
    assert {"structured · fp32", "structured · bf16", "unstructured · fp32"} <= names
