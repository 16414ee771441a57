"""pytest-benchmark JSON: statistics identical to pytest-benchmark's own, CLI export."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gate_helpers import ENV, lognormal, record, write_run

from bench.cli import main
from bench.results.pytest_benchmark import export, stats

Stats = pytest.importorskip("pytest_benchmark.stats").Stats


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 50, 101])
def test_stats_equal_pytest_benchmarks(n):
    data = list(np.random.default_rng(n).lognormal(-9, 0.3, n))
    theirs = Stats()
    for value in data:
        theirs.update(value)
    ours = stats(data)
    for field in Stats.fields:
        assert ours[field] == pytest.approx(getattr(theirs, field)), field


def test_export_maps_records_machine_and_commit():
    gpu_env = {**ENV, "gpus": [{"name": "NVIDIA H100", "uuid": "GPU-1", "driver": "580.1"}],
               "cuda_version": "12.8", "git_commit": "abc123", "git_dirty": True,
               "git_branch": "feature"}
    records = [record("fast", lognormal(2, 20), metrics={"params_total": 7, "peak_rss_bytes": 9}),
               record("gone", status="oom", reason="out of memory")]
    data = export(records, {"env": gpu_env, "run_id": "r1", "started_at": "2026-01-01T00:00:00",
                            "cwd": "/home/u/myproject"})
    (bench_,) = data["benchmarks"]
    assert bench_["name"] == "fast" and bench_["fullname"] == "s::fast"
    assert bench_["extra_info"]["params_total"] == 7
    assert bench_["extra_info"]["case_id"] == "id-fast"
    assert bench_["stats"]["data"] == pytest.approx([s / 1e3 for s in lognormal(2, 20)])
    assert bench_["stats"]["median"] == pytest.approx(np.median(lognormal(2, 20)) / 1e3)
    machine = data["machine_info"]
    assert machine["gpus"] == [{"name": "NVIDIA H100", "uuid": "GPU-1", "driver": "580.1"}]
    assert (machine["driver_version"], machine["cuda_version"]) == ("580.1", "12.8")
    assert machine["torch_version"] == "2.13.0+cpu"
    assert machine["cpu"]["brand_raw"] == "Test CPU 9000"
    assert data["commit_info"] == {"id": "abc123", "time": None, "author_time": None,
                                   "dirty": True, "project": "myproject", "branch": "feature"}
    assert data["archbench"]["not_measured"] == [{"name": "gone", "status": "oom",
                                                   "reason": "out of memory"}]


def test_cli_export(tmp_path, capsys):
    run = write_run(tmp_path / "run", [record("a", lognormal(1, 10))])
    out = tmp_path / "out" / "bench.json"
    assert main(["export", str(run), "--pytest-benchmark", str(out)]) == 0
    assert "wrote 1 benchmark(s)" in capsys.readouterr().out
    assert [b["name"] for b in json.loads(out.read_text())["benchmarks"]] == ["a"]
    assert main(["export", str(tmp_path / "missing"), "--pytest-benchmark", str(out)]) == 2
