"""The report's data preparation on hand-made frames whose answers are known."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from bench.report.chart_data import (
    achieved_flops_s,
    box_stats,
    fit_loglog,
    label,
    latest_per_case,
    pareto_mask,
    scaling_fits,
    varying,
    with_reference,
)
from bench.report.model import ReportInput, RunFrame
from bench.report.sections.distributions import distribution_cases
from bench.report.sections.profile import OTHER, profile_frame
from bench.report.sections.resources import memory_frame, telemetry_series, timed_spans
from bench.report.sections.scaling import heatmap_grids, scaling_series
from bench.report.sections.summary import (
    collector_problems,
    environment_rows,
    noisy_cases,
    status_counts,
)
from bench.report.sections.transforms import method_summary, precision_frame, pruning_frame


def case(name: str, **values) -> dict:
    """A measured row with the identity columns a run has; override anything."""
    row = {"run_id": "r1", "case_id": name, "name": name, "status": "ok", "model": "mlp",
           "depth": 2, "width": 64, "activation": "relu", "batch_size": 1, "device": "cpu",
           "precision": "fp32", "compile": "eager", "mode": "inference",
           "prune_method": "none", "prune_ratio": 0.0, "prune_scope": None,
           "median_ms": 1.0, "ci_low_ms": 0.99, "ci_high_ms": 1.01, "ci_rel": 0.01}
    row.update(values)
    return row


# ---- Pareto frontier ------------------------------------------------------------------------
def test_pareto_mask_keeps_exactly_the_undominated_points():
    x = [1, 2, 3, 4, 2, 5]
    y = [5, 3, 4, 1, 3, 1]
    # (3,4) is beaten by (2,3); (5,1) by (4,1); (2,3) twice: duplicates both stay
    assert pareto_mask(x, y).tolist() == [True, True, False, True, True, False]


def test_pareto_mask_ties_in_x_and_missing_values():
    x = [1, 1, 2, np.nan, 0.5]
    y = [2, 3, 1, 0.1, np.inf]
    assert pareto_mask(x, y).tolist() == [True, False, True, False, False]
    assert pareto_mask([], []).tolist() == []
    with pytest.raises(ValueError):
        pareto_mask([1, 2], [1])


def test_pareto_mask_maximising_by_negation():
    latency = [1.0, 2.0, 3.0]
    accuracy = [0.5, 0.9, 0.8]
    assert pareto_mask(latency, [-a for a in accuracy]).tolist() == [True, True, False]


# ---- scaling --------------------------------------------------------------------------------
def test_fit_loglog_recovers_a_power_law():
    x = np.array([1e6, 2e6, 4e6, 8e6])
    fit = fit_loglog(x, 3e-6 * x ** 0.75)
    assert fit is not None
    assert fit.slope == pytest.approx(0.75) and fit.r2 == pytest.approx(1.0) and fit.n == 4
    assert fit.predict(16e6) == pytest.approx(3e-6 * 16e6 ** 0.75)


def test_fit_loglog_edge_cases():
    two = fit_loglog([1, 10], [2, 20])
    assert two is not None and two.slope == pytest.approx(1.0) and two.r2 is None
    assert fit_loglog([5, 5, 5], [1, 2, 3]) is None, "one distinct x has no slope"
    assert fit_loglog([0, -1, 10], [1, 1, 1]) is None, "non-positive x are ignored"
    noisy = fit_loglog([1, 2, 4, 8], [1, 2.5, 3.5, 9])
    assert noisy is not None and 0 < noisy.r2 < 1


def test_scaling_fits_per_group_with_achieved_flops():
    rows = []
    for device, exponent in (("cpu", 1.0), ("cuda", 0.5)):
        for depth, width, flops in ((2, 64, 1e6), (2, 128, 4e6), (4, 128, 16e6)):
            median = 1e-6 * flops ** exponent
            rows.append(case(f"{device}-{depth}-{width}", device=device, depth=depth,
                             width=width, batch_size=2, flops_per_item=flops / 2,
                             median_ms=median, throughput_items_s=2 / (median / 1e3),
                             flops_method="counted"))
    rows.append(case("crashed", status="crashed", flops_per_item=1e9, median_ms=np.nan))
    fits = scaling_fits(pd.DataFrame(rows)).set_index("group")
    assert fits.loc["cpu", "exponent"] == pytest.approx(1.0)
    assert fits.loc["cuda", "exponent"] == pytest.approx(0.5)
    assert fits.loc["cpu", "n"] == 3 and fits.loc["cpu", "r2"] == pytest.approx(1.0)
    # achieved FLOP/s = FLOPs per call / latency; on cpu latency = 1e-6 * flops ms, so 1e9
    assert fits.loc["cpu", "achieved_flops_s_median"] == pytest.approx(1e9)
    assert fits.loc["cpu", "flops_min"] == 1e6 and fits.loc["cpu", "flops_max"] == 16e6
    assert not fits.loc["cpu", "dense_equivalent"]


def test_achieved_flops_prefers_the_collectors_number():
    frame = pd.DataFrame([case("a", flops_per_item=10.0, throughput_items_s=3.0),
                          case("b", flops_per_item=10.0, throughput_items_s=3.0,
                               achieved_flops_s=7.0)])
    assert achieved_flops_s(frame).tolist() == [30.0, 7.0]


def test_scaling_series_one_line_per_depth_and_single_widths_dropped():
    frame = pd.DataFrame([
        case("d2w64", depth=2, width=64), case("d2w128", depth=2, width=128),
        case("d4w64", depth=4, width=64), case("d4w128", depth=4, width=128),
        case("d8w64", depth=8, width=64),  # only one width: no line
        case("d2w64-cuda", depth=2, width=64, device="cuda"),
        case("d2w128-cuda", depth=2, width=128, device="cuda"),
    ])
    series = scaling_series(frame)
    assert set(series["name"]) == {"d2w64", "d2w128", "d4w64", "d4w128", "d2w64-cuda",
                                   "d2w128-cuda"}
    assert series.groupby("line_key")["name"].count().tolist() == [2, 2, 2]
    assert set(series["series"]) == {"d2", "d4"}
    assert set(series["facet"]) == {"fp32 · cpu", "fp32 · cuda"}


def test_heatmap_grid_places_each_case_in_its_cell():
    frame = pd.DataFrame([
        case("a", depth=2, width=64, median_ms=1.0), case("b", depth=2, width=128, median_ms=2.0),
        case("c", depth=4, width=64, median_ms=3.0),  # (4, 128) missing
        case("other", model="cnn", depth=2, width=64),  # its group has a single cell
    ])
    (grid,) = heatmap_grids(frame)
    assert grid.depths == [2.0, 4.0] and grid.widths == [64.0, 128.0]
    assert grid.median_ms[0].tolist() == [1.0, 2.0]
    assert grid.median_ms[1, 0] == 3.0 and math.isnan(grid.median_ms[1, 1])
    assert grid.names[1][0] == "c" and grid.names[1][1] == ""
    assert grid.label == "mlp"


def test_labels_show_only_what_varies():
    frame = pd.DataFrame([case("a", batch_size=1), case("b", batch_size=32)])
    assert varying(frame, ["model", "batch_size", "depth"]) == ["batch_size"]
    assert label({"depth": 4, "width": 512.0, "prune_method": "structured",
                  "prune_ratio": 0.25, "compile": "eager"},
                 ["depth", "width", "prune_method", "prune_ratio", "compile"]) == \
        "d4 w512 structured 25%"


# ---- speed-ups against the reference case ---------------------------------------------------
def test_pruning_speedup_against_the_unpruned_twin_of_the_same_run():
    frame = pd.DataFrame([
        case("ref", median_ms=4.0, ci_low_ms=3.9, ci_high_ms=4.1),
        case("masked", prune_method="unstructured", prune_ratio=0.5, prune_scope="layer",
             median_ms=4.0, ci_low_ms=3.8, ci_high_ms=4.2, prune_flops_ratio=1.0),
        case("shrunk", prune_method="structured", prune_ratio=0.5, median_ms=2.0,
             ci_low_ms=1.9, ci_high_ms=2.1, prune_flops_ratio=0.25),
        case("other-width", width=128, prune_method="structured", prune_ratio=0.5,
             median_ms=1.0),  # no unpruned w128 case
        case("other-run", run_id="r2", prune_method="structured", prune_ratio=0.5,
             median_ms=1.0),  # the reference is in another run: not compared
    ])
    pruned = pruning_frame(frame).set_index("name")
    assert set(pruned.index) == {"masked", "shrunk"}
    assert pruned.loc["masked", "speedup"] == pytest.approx(1.0)
    assert pruned.loc["shrunk", "speedup"] == pytest.approx(2.0)
    assert pruned.loc["shrunk", "ref_name"] == "ref"
    assert pruned.loc["shrunk", "speedup_low"] == pytest.approx(3.9 / 2.1)
    assert pruned.loc["shrunk", "speedup_high"] == pytest.approx(4.1 / 1.9)
    summary = method_summary(pruning_frame(frame))
    assert summary["unstructured"] == {"n": 1.0, "speedup": 1.0, "flops_ratio": 1.0}
    assert summary["structured"]["speedup"] == pytest.approx(2.0)


def test_precision_speedup_matches_device_and_pruning():
    frame = pd.DataFrame([
        case("fp32-cpu", median_ms=2.0), case("bf16-cpu", precision="bf16", median_ms=4.0),
        case("fp32-cuda", device="cuda", median_ms=1.0),
        case("fp16-cuda", device="cuda", precision="fp16", median_ms=0.25),
        case("fp16-cuda-pruned", device="cuda", precision="fp16", prune_method="structured",
             prune_ratio=0.5, median_ms=0.1),  # no fp32 structured twin
    ])
    rows = precision_frame(frame).set_index("name")
    assert rows["speedup"].to_dict() == {"bf16-cpu": 0.5, "fp16-cuda": 4.0}
    assert with_reference(frame.drop(columns="precision"), ("precision",),
                          {"precision": "fp32"}).empty


def test_latest_per_case_keeps_the_last_run():
    first = pd.DataFrame([case("a", median_ms=1.0), case("b", median_ms=2.0)])
    second = pd.DataFrame([case("a", run_id="r2", median_ms=5.0)])
    merged = latest_per_case([first, second]).set_index("case_id")
    assert merged["median_ms"].to_dict() == {"a": 5.0, "b": 2.0}
    assert latest_per_case([]).empty


# ---- distributions, memory, telemetry -------------------------------------------------------
def test_box_stats_quartiles_whiskers_and_outliers():
    samples = [*range(1, 10), 100]
    box = box_stats(samples, max_outliers=5)
    assert (box.q1, box.median, box.q3) == (3.25, 5.5, 7.75)
    # fences at q1 - 1.5 IQR = -3.5 and q3 + 1.5 IQR = 14.5: whiskers at 1 and 9
    assert (box.lowerfence, box.upperfence) == (1.0, 9.0)
    assert box.outliers == (100.0,) and box.n_outliers == 1 and box.n == 10
    capped = box_stats([1.0] * 20 + [50.0, 60.0, 70.0], max_outliers=2)
    assert capped.outliers == (60.0, 70.0) and capped.n_outliers == 3
    with pytest.raises(ValueError):
        box_stats([])


def test_distribution_cases_keep_the_noisiest_when_over_the_limit():
    frame = pd.DataFrame([case(f"c{i}", samples_ms=[1.0, 1.1, 1.2], noise=i / 10)
                          for i in range(5)] + [case("no-samples", samples_ms=[], noise=9.0)])
    cases, total = distribution_cases(frame, limit=2)
    assert total == 5 and [row["name"] for row, _ in cases] == ["c3", "c4"]
    assert cases[0][1].median == pytest.approx(1.1)


def test_memory_frame_long_form_largest_peak_first():
    frame = pd.DataFrame([
        case("small", peak_rss_timed_bytes=2**20, weight_bytes=2**19),
        case("big", peak_rss_timed_bytes=2**21, cuda_max_allocated_timed_bytes=2**22,
             weight_bytes=2**19),
        case("failed", status="failed", peak_rss_timed_bytes=2**30),
    ])
    memory = memory_frame(frame)
    assert list(dict.fromkeys(memory["name"])) == ["big", "small"]
    big = memory[memory["name"] == "big"].set_index("metric")["mib"].to_dict()
    assert big == {"peak RSS, timed window": 2.0, "model weights, as stored": 0.5,
                   "CUDA max allocated, timed window": 4.0}
    assert memory_frame(pd.DataFrame([case("none")])).empty


def test_telemetry_series_reads_dicts_and_json_and_skips_empty():
    frame = pd.DataFrame([
        case("a", telemetry={"t_s": [0, 1], "power_w": [100, 110], "gpu_util_pct": [None, None]}),
        case("b", telemetry='{"t_s": [0, 1], "gpu_util_pct": [50, 60]}'),
        case("c", telemetry={"t_s": []}), case("d", telemetry=None),
    ])
    series = dict(telemetry_series(frame))
    assert set(series) == {"a", "b"}
    assert series["a"] == {"power_w": ([0.0, 1.0], [100.0, 110.0])}
    assert series["b"]["gpu_util_pct"][1] == [50.0, 60.0]


def test_timed_spans_come_from_the_phase_of_each_sample():
    frame = pd.DataFrame([
        case("a", telemetry={"t_s": [0, 1, 2, 3, 4],
                             "phase": ["build", "warmup", "timed", "timed", "teardown"]}),
        case("b", telemetry='{"t_s": [0, 1], "phase": ["build", "warmup"]}'),
        case("c", telemetry="not json"),
    ])
    assert timed_spans(frame) == {"a": (2.0, 3.0)}


def test_profile_frame_names_the_heaviest_operators_and_folds_the_rest():
    def op(name, cpu, device=None):
        return {"name": name, "self_cpu_ms": cpu, "self_device_ms": device, "calls": 1}

    many = [op(f"aten::op{i}", 0.01 * (i + 1)) for i in range(12)]
    frame = pd.DataFrame([
        case("cpu", profile={"top_ops": many}),
        case("gpu", profile=json.dumps({"top_ops": [op("aten::mm", 5.0, device=2.0)]})),
        case("plain"), case("broken", profile="not json"),
    ])
    ops = profile_frame(frame)
    assert set(ops["name"]) == {"cpu", "gpu"}
    gpu = ops[ops["name"] == "gpu"]
    assert gpu[["operator", "ms"]].values.tolist() == [["aten::mm", 2.0]], "device time on CUDA"
    cpu = ops[ops["name"] == "cpu"].set_index("operator")["ms"]
    assert len(cpu) == 7 + 1  # seven of the eight heaviest overall (aten::mm is one), + other
    assert cpu[OTHER] == pytest.approx(sum(0.01 * (i + 1) for i in range(5)))
    assert cpu.sum() == pytest.approx(sum(0.01 * (i + 1) for i in range(12)))
    assert profile_frame(pd.DataFrame([case("plain")])).empty


# ---- summary --------------------------------------------------------------------------------
def test_status_counts_and_noisy_cases():
    frame = pd.DataFrame([
        case("quiet", noise=0.01, noise_warning=False, target_met=True),
        case("noisy", noise=0.3, noise_warning=True, target_met=True),
        case("unmet", noise=0.05, noise_warning=False, target_met=False),
        case("skipped", status="unsupported", noise=np.nan, noise_warning=None,
             target_met=None),
        case("broken", status="failed"),
    ])
    assert status_counts(frame) == {"ok": 3, "unsupported": 1, "failed": 1}
    assert noisy_cases(frame)["name"].tolist() == ["noisy", "unmet"]


def test_environment_rows_flag_what_differs_between_runs():
    env = {"cpu_model": "X", "torch_version": "2.13.0", "threads": 2}
    runs = [RunFrame("a", pd.DataFrame(), {"env": env}),
            RunFrame("b", pd.DataFrame(), {"env": {**env, "threads": 4}})]
    rows = {name: (values, differs) for name, values, differs in environment_rows(runs)}
    assert rows["CPU"] == (["X", "X"], False)
    assert rows["threads (torch)"] == (["2", "4"], True)
    assert "GPUs" not in rows, "facts no run recorded are left out"
    report = ReportInput(tuple(runs))
    assert report.display_title == "a vs b"


def test_collector_problems_count_cases_and_keep_a_reason():
    frame = pd.DataFrame([
        case("a", collectors={"nvml": {"ok": False, "reason": "no NVML here"},
                              "memory": {"ok": True, "reason": None}}),
        case("b", collectors={"nvml": {"ok": False, "reason": "no NVML here"}}),
        case("c", collectors=None),
    ])
    assert collector_problems(frame) == {"nvml": (2, "no NVML here")}
    assert collector_problems(pd.DataFrame([case("d")])) == {}
