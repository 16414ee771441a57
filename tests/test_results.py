"""Records on disk: durable appends, damaged files, schema versions, the DataFrame."""

from __future__ import annotations

import json
import warnings

import pytest

from bench.errors import BenchWarning, ResultsError
from bench.results import RESULTS_FILE, Record, ResultsStore, load, load_records, read_records


def record(case_id: str = "c1", status: str = "ok", samples=(1e6, 2e6, 3e6), **extra) -> Record:
    timing = {"samples_ns": list(samples), "block_size": 1, "first_call_ns": 5e6,
              "warmup_iters": 3, "warmup_ns": 1e7, "measure_ns": 6e6, "ci_rel": 0.5,
              "target_met": False, "stop_reason": "max_time", "clock": "fake"} if samples else None
    return Record(run_id="r", case_id=case_id, name=f"mlp-{case_id}", suite="s",
                  params={"model": "mlp", "depth": 2, "width": 64, "batch_size": 4,
                          "prune": {"method": "unstructured", "ratio": 0.5, "scope": "layer"},
                          "model_args": {}, "device": "cpu"},
                  settings={"confidence": 0.95, "target_ci": 0.01}, status=status,
                  timing=timing, **extra)


def test_round_trip_and_dataframe(tmp_path):
    store = ResultsStore(tmp_path)
    store.append(record("a", metrics={"threads": 2, "params_total": 123}))
    store.append(record("b", status="failed", samples=(), reason="ValueError: no"))
    assert [r.case_id for r in store.records()] == ["a", "b"]
    frame = load(tmp_path)
    assert list(frame["case_id"]) == ["a", "b"]
    ok = frame.iloc[0]
    assert ok["median_ms"] == 2.0 and ok["n_samples"] == 3 and ok["samples_ms"] == [1, 2, 3]
    assert ok["throughput_items_s"] == pytest.approx(4 / 0.002)
    assert ok["prune_method"] == "unstructured" and ok["prune_ratio"] == 0.5
    assert ok["params_total"] == 123 and ok["first_call_ms"] == 5.0
    assert str(frame["n_samples"].dtype) == "Int64", "integers stay integers beside missing"
    failed = frame.iloc[1]
    assert failed["status"] == "failed" and failed["reason"] == "ValueError: no"


def test_non_finite_numbers_are_stored_as_null(tmp_path):
    store = ResultsStore(tmp_path)
    store.append(record(metrics={"ratio": float("inf"), "nan": float("nan")}))
    line = (tmp_path / RESULTS_FILE).read_text()
    assert "Infinity" not in line and "NaN" not in line
    assert json.loads(line)["metrics"] == {"ratio": None, "nan": None}


def test_truncated_last_line_is_skipped_with_a_warning(tmp_path):
    store = ResultsStore(tmp_path)
    store.append(record("a"))
    store.append(record("b"))
    path = tmp_path / RESULTS_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # cut the last record mid-way
    with pytest.warns(BenchWarning, match="truncated last record"):
        assert [r.case_id for r in read_records(path)] == ["a"]


def test_damage_in_the_middle_is_an_error_naming_the_line(tmp_path):
    store = ResultsStore(tmp_path)
    store.append(record("a"))
    path = tmp_path / RESULTS_FILE
    path.write_text(path.read_text() + "{not json}\n" + json.dumps(record("c").to_dict()) + "\n")
    with pytest.raises(ResultsError, match=r"results.jsonl:2: damaged record"):
        load_records(tmp_path)


def test_reopening_a_store_drops_a_torn_tail_so_appends_stay_readable(tmp_path):
    store = ResultsStore(tmp_path)
    store.append(record("a"))
    path = tmp_path / RESULTS_FILE
    path.write_bytes(path.read_bytes() + b'{"run_id": "r", "case')
    with pytest.warns(BenchWarning, match="dropped a truncated last record"):
        again = ResultsStore(tmp_path)
    again.append(record("b"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r.case_id for r in load_records(tmp_path)] == ["a", "b"]


def test_newer_schema_is_refused_with_the_fix(tmp_path):
    data = record().to_dict()
    data["schema_version"] = 99
    (tmp_path / RESULTS_FILE).write_text(json.dumps(data) + "\n")
    with pytest.raises(ResultsError, match="upgrade archbench"):
        load_records(tmp_path)


def test_unknown_status_is_rejected():
    with pytest.raises(ValueError, match="unknown status"):
        record(status="weird")


def test_missing_run_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ResultsError, match="no results file"):
        load(tmp_path / "nowhere")


def test_worker_payloads_become_plain_python():
    import numpy as np
    import torch

    from bench.plain import plain

    payload = {"v": torch.__version__, "d": torch.float16, "n": np.float64(1.5),
               "t": torch.tensor(3), "nested": [(np.bool_(True), 2)]}
    out = plain(payload)
    assert out == {"v": str(torch.__version__), "d": "torch.float16", "n": 1.5, "t": 3,
                   "nested": [[True, 2]]}
    assert type(out["v"]) is str and type(out["n"]) is float and type(out["t"]) is int
