"""Collectors in real runs: memory peaks, FLOPs and the roofline, the profiler, isolation."""

from __future__ import annotations

import itertools
import json
import os
import threading

import psutil
import pytest

import bench
from bench import env
from bench.cli import main
from bench.collectors import peaks_cache
from bench.engine.backends import backend_for
from bench.engine.runner import RunOptions, run, run_case
from bench.measure import torch_env
from bench.suite import loader as suite_file
from bench.suite.spec import Case, Settings

pytestmark = pytest.mark.slow
MIB = 2**20


def run_suite(path, out, **options):
    suite = suite_file.load(path)
    return run([suite], list(suite.cases), RunOptions(out=out, **options))


def test_fresh_pages_in_the_timed_window_show_as_faults_per_call(write_suite, tmp_path,
                                                                fixtures_dir):
    path = write_suite(f'[[sweep]]\nmodel = "{fixtures_dir / "factories.py"}:touches_fresh_memory"'
                       '\nsettings = { max_time_s = 0.3, min_samples = 5 }\n')
    (record,) = run_suite(path, tmp_path / "run").records
    assert record.status == "ok", record.message
    assert 0.9 * 16384 <= record.metrics["minor_faults_per_call"] <= 1.5 * 16384
    assert record.metrics["major_faults_per_call"] < 1


def test_a_known_allocation_raises_the_host_peaks(write_suite, tmp_path, fixtures_dir):
    factories = fixtures_dir / "factories.py"
    path = write_suite(f'[[sweep]]\nmodel = ["{factories}:allocates_nothing", '
                       f'"{factories}:allocates"]\n')
    records = {r.name.split("-")[0]: r for r in run_suite(path, tmp_path / "run").records}
    tiny, big = records["allocates_nothing"].metrics, records["allocates"].metrics
    # Two workers' own footprints differ by a few hundred KiB (allocator arenas, thread
    # stacks), so the 256 MiB buffer is asked to show up to within 1%.
    for key in ("peak_rss_bytes", "peak_rss_timed_bytes", "ru_maxrss_bytes"):
        assert big[key] - tiny[key] >= 0.99 * 256 * MIB, (key, big[key], tiny[key])
    # the buffer is made by the factory: before the build both workers look alike
    assert abs(big["rss_before_build_bytes"] - tiny["rss_before_build_bytes"]) < 64 * MIB
    assert big["peak_rss_bytes"] >= 0.9 * big["ru_maxrss_bytes"], "the sampler saw the peak"
    # nothing allocates in the timed window of these two: no page faults there
    assert tiny["minor_faults_per_call"] < 1 and big["minor_faults_per_call"] < 1
    status = records["allocates"].info["collectors"]
    assert status["rss"]["ok"] and status["host_memory"]["ok"]
    assert status["cuda_memory"] == {"ok": False, "reason": "not a CUDA case"}
    assert status["nvml"] == {"ok": False, "reason": "not a CUDA case"}
    timeline = records["allocates"].info["telemetry"]
    assert set(timeline) == {"t_s", "phase", "rss_bytes"}
    assert {"build", "timed"} <= set(timeline["phase"])
    assert max(v for v in timeline["rss_bytes"] if v) == big["peak_rss_bytes"]


@pytest.mark.cuda
def test_a_known_allocation_raises_the_cuda_peaks(write_suite, tmp_path, fixtures_dir):
    factories = fixtures_dir / "factories.py"
    path = write_suite(f'[[sweep]]\nmodel = ["{factories}:allocates_nothing", '
                       f'"{factories}:allocates"]\ndevice = ["cuda"]\n'
                       "settings = { min_time_s = 0.5, max_time_s = 1.0 }\n")
    records = {r.name.split("-")[0]: r for r in run_suite(path, tmp_path / "run").records}
    tiny, big = records["allocates_nothing"].metrics, records["allocates"].metrics
    for phase in ("build", "warmup", "timed"):
        for kind in ("allocated", "reserved"):
            key = f"cuda_max_{kind}_{phase}_bytes"
            assert big[key] - tiny[key] >= 256 * MIB, (key, big[key], tiny[key])
    # nothing allocates in the timed window of these two: no page faults there
    assert tiny["minor_faults_per_call"] < 1 and big["minor_faults_per_call"] < 1
    status = records["allocates"].info["collectors"]
    assert status["nvml"]["ok"], status["nvml"]
    assert big["nvml_device_used_bytes"] > 256 * MIB
    if "nvml_process_used_bytes" in big:  # absent when NVML sees another PID namespace
        assert big["nvml_process_used_bytes"] - tiny["nvml_process_used_bytes"] >= 256 * MIB
    assert status["energy"]["ok"], status["energy"]
    assert big["energy_j"] > 0 and big["energy_per_item_j"] > 0
    telemetry = records["allocates"].info["telemetry"]
    assert {"gpu_util_pct", "power_w", "sm_clock_mhz", "temperature_c"} <= set(telemetry)


def test_mlp_flops_and_the_roofline_through_the_record(write_suite, tmp_path, monkeypatch):
    batch, dims = 5, [12, 16, 16, 7]
    path = write_suite(f'[[sweep]]\nmodel = "mlp"\ndepth = [2]\nwidth = [16]\nfeatures = [12]\n'
                       f'classes = [7]\nbatch_size = [{batch}]\n')
    # a calibration for exactly this environment, so the run finds its peaks
    monkeypatch.setenv("ARCHBENCH_CACHE_DIR", str(tmp_path / "cache"))
    torch_side = torch_env.torch_info()
    environment = {**env.host_info(), **torch_side, "threads": env.auto_threads()}
    peaks = {"devices": {"cpu": {"matmul_flops_s": {"float32": 50e9}, "copy_bytes_s": 5e9}}}
    peaks_cache.save(peaks, environment)

    run_suite(path, tmp_path / "run")
    row = bench.load(tmp_path / "run").iloc[0]
    expected = 2 * batch * sum(a * b for a, b in itertools.pairwise(dims))
    assert row.flops_per_item * batch == expected
    assert row.achieved_flops_s == pytest.approx(expected / (row.median_ms / 1e3))
    moved = row.bytes_moved_per_item
    weights = sum((a + 1) * b for a, b in itertools.pairwise(dims)) * 4
    assert moved * batch >= weights + batch * 12 * 4, "weights and input at least"
    assert row.arithmetic_intensity_flop_per_byte == pytest.approx(row.flops_per_item / moved)
    attainable = min(50e9, row.arithmetic_intensity_flop_per_byte * 5e9)
    assert row.roofline_attainable_flops_s == pytest.approx(attainable)
    assert row.roofline_fraction == pytest.approx(row.achieved_flops_s / attainable)
    assert row.collectors["roofline"] == {"ok": True, "reason": None}

    monkeypatch.setenv("ARCHBENCH_CACHE_DIR", str(tmp_path / "empty"))
    (again,) = run_suite(path, tmp_path / "run2").records
    assert "roofline_fraction" not in again.metrics
    assert "archbench calibrate" in again.info["collectors"]["roofline"]["reason"]


def test_profile_keeps_the_matmuls_and_a_trace(write_suite, tmp_path, capsys):
    path = write_suite('[[sweep]]\nmodel = "mlp"\ndepth = [2]\nwidth = [32]\n')
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--profile"]) == 0
    row = bench.load(out).iloc[0]
    names = [op["name"] for op in row.profile["top_ops"]]
    assert "aten::addmm" in names, names
    addmm = next(op for op in row.profile["top_ops"] if op["name"] == "aten::addmm")
    assert addmm["calls"] == 3 and addmm["self_cpu_ms"] > 0 and addmm["self_device_ms"] is None
    trace = out / row.profile["trace"]
    assert row.profile["trace"] == f"traces/{row.case_id}.json"
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("name") == "aten::addmm" for e in events)
    # profiling happened after the timed window, in a phase of its own
    (record,) = bench.results.load_records(out)
    phases = [name for name, _ in record.info["phases"]]
    assert phases[-3:] == ["timed", "profile", "teardown"]


def test_no_sampler_thread_or_process_outlives_a_case():
    case = Case(model="mlp", batch_size=1, depth=1, width=8, activation="relu", features=8,
                classes=2, settings=Settings(
        warmup_iters=1, warmup_time_s=0.0, min_samples=5, min_time_s=0.0, max_time_s=0.05))
    backend = backend_for("forkserver")
    run_case(case, backend, "warm")  # the forkserver now exists
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    threads = {t.ident for t in threading.enumerate()}
    record = run_case(case, backend, "check")
    assert record.status == "ok" and record.metrics["peak_rss_bytes"] > 0
    assert {t.ident for t in threading.enumerate()} <= threads
    # The worker that reported is reaped when the next starts (or the backend closes): on a
    # busy machine it may still be tearing its address space down right after the case.
    backend.close()
    alive = {p.pid for p in psutil.Process().children(recursive=True)
             if p.status() != psutil.STATUS_ZOMBIE}
    assert alive <= children, "the worker is gone"


def test_inline_runs_sample_this_process_and_say_so(write_suite, tmp_path):
    path = write_suite('[[sweep]]\nmodel = "mlp"\nwidth = [8]\n')
    (record,) = run_suite(path, tmp_path / "run", isolation="inline").records
    assert record.metrics["peak_rss_bytes"] > 0
    assert record.metrics["ru_maxrss_bytes"] is None
    assert "inline" in record.info["collectors"]["rss"]["reason"]
    assert any("inline isolation" in w for w in record.warnings)
    assert not [t for t in threading.enumerate() if t.name.startswith("archbench-")]


def test_telemetry_off_records_why(write_suite, tmp_path):
    path = write_suite('[[sweep]]\nmodel = "mlp"\nwidth = [8]\nsettings = { telemetry = false }\n')
    (record,) = run_suite(path, tmp_path / "run").records
    assert record.status == "ok"
    assert "peak_rss_bytes" not in record.metrics and "telemetry" not in record.info
    assert "settings.telemetry" in record.info["collectors"]["telemetry"]["reason"]
    assert record.metrics["achieved_flops_s"] > 0


def test_a_crashed_case_keeps_its_memory_curve(write_suite, tmp_path, fixtures_dir):
    path = write_suite(f'[[sweep]]\nmodel = "{fixtures_dir}/factories.py:aborts"\n')
    (record,) = run_suite(path, tmp_path / "run").records
    assert record.status == "crashed"
    assert record.metrics["peak_rss_bytes"] > 0 and "rss_bytes" in record.info["telemetry"]


def test_calibrate_quick_measures_and_does_not_save(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARCHBENCH_CACHE_DIR", str(tmp_path))
    assert main(["calibrate", "--quick", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "float32" in out and "bfloat16" in out and "not saved" in out
    assert not (tmp_path / "calibration").exists()
    assert main(["calibrate", "--device", "tpu"]) == 2


def test_measured_peaks_are_positive_and_saved_by_the_store(tmp_path):
    from bench.measure.peaks import measure_peaks

    data = measure_peaks(["cpu"], threads=1, quick=True)
    cpu = data["devices"]["cpu"]
    assert data["threads"] == 1 and set(cpu["matmul_flops_s"]) == {"float32", "bfloat16",
                                                                     "float16"}
    assert all(rate > 0 for rate in cpu["matmul_flops_s"].values())
    assert cpu["copy_bytes_s"] > 0 and cpu["name"]
    assert os.path.exists(peaks_cache.save(data, {"threads": 1}, tmp_path))
