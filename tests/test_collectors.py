"""Collector building blocks: the sampler thread, RSS sampling, timelines, the roofline and
the calibration store, and the record columns they produce."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psutil
import pytest

from bench import env
from bench.collectors import peaks_cache, roofline
from bench.collectors.base import CaseFacts, Series, Target, Window
from bench.collectors.rss import RssCollector, check_against_ru_maxrss
from bench.collectors.sampler import PeriodicSampler, StopSampling
from bench.collectors.timeline import resample
from bench.errors import SpecError
from bench.measure.probes.registry import known
from bench.results import Record, flatten


def archbench_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("archbench-")]


# ---- sampler --------------------------------------------------------------------------------
def test_sampler_keeps_its_schedule_and_leaves_no_thread():
    ticks = iter(range(10**6))
    sampler = PeriodicSampler(lambda: next(ticks), 0.005, name="t-sampler")
    sampler.start()
    assert sampler.running
    time.sleep(0.2)
    sampler.stop()
    assert not sampler.running and not archbench_threads()
    times = [t for t, _ in sampler.samples]
    assert 10 <= len(times) <= 45  # 40 ticks in 0.2 s; fewer on a loaded machine, never more
    assert [v for _, v in sampler.samples] == list(range(len(times)))
    sampler.stop()  # twice is fine


def test_sampler_ends_quietly_on_stop_sampling_and_keeps_other_errors():
    def gone() -> int:
        raise StopSampling

    def broken() -> int:
        raise OSError("permission denied")

    quiet = PeriodicSampler(gone, 0.001, name="t-gone")
    loud = PeriodicSampler(broken, 0.001, name="t-broken")
    for sampler in (quiet, loud):
        sampler.start()
        time.sleep(0.05)
        assert not sampler.running, "the thread ended by itself"
        sampler.stop()
    assert quiet.error is None and not quiet.samples
    assert loud.error == "OSError: permission denied"
    with pytest.raises(ValueError, match="positive"):
        PeriodicSampler(int, 0.0, name="t-bad")


def test_rss_collector_follows_a_process_until_it_exits():
    code = ("import time; b = bytearray(200 * 2**20); print('ready', flush=True); "
            "time.sleep(0.4)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        collector = RssCollector(0.005)
        begin = time.time()
        collector.start(Target(pid=child.pid, started_unix=begin))
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        # the timed window opens once the buffer exists (a loaded machine starts slowly)
        ready = time.time()
        child.wait(10)
        time.sleep(0.05)
        phases = (("build", begin), ("timed", ready), ("teardown", ready + 0.1))
        (result,) = collector.results(CaseFacts(batch_size=1, median_s=0.1,
                                                window=Window(phases, time.time())))
    finally:
        collector.stop()
        child.kill()
        child.wait()
    assert result.ok and result.reason is None
    assert result.metrics["peak_rss_bytes"] >= 200 * 2**20
    assert result.metrics["peak_rss_timed_bytes"] >= 200 * 2**20
    assert not archbench_threads()
    (series,) = result.series
    assert series.name == "rss_bytes" and all(v > 0 for _, v in series.points)


def test_rss_of_a_vanished_process_is_a_reason_not_a_crash():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    collector = RssCollector(0.005)
    collector.start(Target(pid=dead.pid, started_unix=time.time()))
    collector.stop()
    (result,) = collector.results(CaseFacts(1, None, Window((), time.time())))
    assert not result.ok and result.reason


def test_inline_rss_says_it_sampled_the_runner():
    collector = RssCollector(0.005)
    collector.start(Target(pid=psutil.Process().pid, started_unix=time.time(), inline=True))
    time.sleep(0.03)
    collector.stop()
    (result,) = collector.results(CaseFacts(1, None, Window((), time.time())))
    assert result.ok and "inline" in result.reason and "inline isolation" in result.warnings[0]


def test_missed_peak_warning():
    assert check_against_ru_maxrss({"peak_rss_bytes": 500, "ru_maxrss_bytes": 520}) is None
    assert "spike" in check_against_ru_maxrss({"peak_rss_bytes": 300, "ru_maxrss_bytes": 520})


# ---- timeline -------------------------------------------------------------------------------
def test_resample_puts_series_of_different_rates_on_one_grid():
    t0 = 1000.0
    rss = Series("rss_bytes", tuple((t0 + i * 0.005, float(i)) for i in range(40)), "max")
    power = Series("power_w", tuple((t0 + i * 0.02, 100.0 + i) for i in range(10)), "mean")
    window = Window((("build", t0), ("timed", t0 + 0.1)), t0 + 0.2)
    grid = resample([rss, power], window, t0_unix=t0, interval_s=0.02)
    assert grid["t_s"][:3] == [0.0, 0.02, 0.04] and len(grid["t_s"]) == 10
    assert grid["rss_bytes"][0] == 3.0  # max of the four 5 ms samples in the first bin
    assert grid["power_w"][:2] == [100.0, 101.0]
    assert grid["phase"][0] == "build" and grid["phase"][-1] == "timed"
    long = Window((("build", t0),), t0 + 100.0)
    assert len(resample([power], long, t0_unix=t0, interval_s=0.02, max_points=50)["t_s"]) == 50


# ---- roofline -------------------------------------------------------------------------------
CALIBRATION = {"devices": {"cpu": {"matmul_flops_s": {"float32": 100e9, "bfloat16": 400e9},
                                   "copy_bytes_s": 10e9}}}


def evaluate(flops=1e6, moved=1e5, median_s=1e-3, precision="fp32", calibration=CALIBRATION,
             device="cpu"):
    return roofline.evaluate(device=device, precision=precision, batch_size=10,
                             median_s=median_s,
                             metrics={"flops_per_item": flops, "bytes_moved_per_item": moved},
                             calibration=calibration, missing_reason="no calibration here")


def test_roofline_memory_bound_case():
    result = evaluate()  # intensity 10 flop/byte: 10 * 10 GB/s = 100 GFLOP/s attainable
    m = result.metrics
    assert result.ok
    assert m["achieved_flops_s"] == pytest.approx(1e6 * 10 / 1e-3)
    assert m["arithmetic_intensity_flop_per_byte"] == pytest.approx(10.0)
    assert m["roofline_attainable_flops_s"] == pytest.approx(100e9)
    assert m["roofline_fraction"] == pytest.approx(0.1)
    assert m["peak_flops_s"] == 100e9 and m["peak_bandwidth_bytes_s"] == 10e9


def test_roofline_compute_bound_case_uses_the_dtype_peak():
    m = evaluate(flops=1e9, moved=1e6, median_s=0.5, precision="bf16").metrics
    assert m["roofline_attainable_flops_s"] == pytest.approx(400e9)
    assert m["roofline_fraction"] == pytest.approx(1e9 * 10 / 0.5 / 400e9)


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"calibration": None}, "no calibration here"),
    ({"device": "cuda:1"}, "archbench calibrate --device cuda:1"),
    ({"precision": "int8-dynamic"}, "has no calibrated matmul peak"),
    ({"precision": "fp16"}, "no float16 matmul peak calibrated for cpu"),
])
def test_roofline_without_a_peak_says_why_and_keeps_the_achieved_rate(kwargs, reason):
    result = evaluate(**kwargs)
    assert not result.ok and reason in result.reason
    assert "roofline_fraction" not in result.metrics
    assert result.metrics["achieved_flops_s"] == pytest.approx(1e10)


def test_roofline_peak_follows_the_observed_compute_dtype():
    assert roofline.peak_dtype("fp32", "bfloat16") == "bfloat16"
    assert roofline.peak_dtype("amp-bf16", "mixed") == "bfloat16"
    assert roofline.peak_dtype("fp32", "unknown") == "float32"
    assert roofline.peak_dtype("int8-dynamic", "int8") is None
    assert roofline.peak_dtype("fp8", "float8_e4m3fn") is None


def test_roofline_is_not_drawn_for_training_steps():
    result = roofline.evaluate(device="cpu", precision="fp32", batch_size=2, median_s=1.0,
                               metrics={"flops_per_item": 1.0}, calibration=CALIBRATION,
                               missing_reason=None, mode="train")
    assert not result.ok and "forward pass" in result.reason and not result.metrics


def test_roofline_needs_timing():
    assert not evaluate(median_s=None).ok


# ---- calibration store ----------------------------------------------------------------------
ENVIRONMENT = {"cpu_model": "Test CPU", "gpus": [], "torch_version": "2.13.0",
               "cuda_version": None, "threads": 2, "default_threads": 2}


def test_calibration_is_cached_per_fingerprint(tmp_path, monkeypatch):
    assert peaks_cache.load(ENVIRONMENT, tmp_path)[0] is None
    missing = peaks_cache.load(ENVIRONMENT, tmp_path)[1]
    assert "archbench calibrate --threads 2" in missing
    assert env.fingerprint_hash(ENVIRONMENT) in missing
    path = peaks_cache.save(CALIBRATION, ENVIRONMENT, tmp_path)
    assert path == tmp_path / "calibration" / f"{env.fingerprint_hash(ENVIRONMENT)}.json"
    data, reason = peaks_cache.load(ENVIRONMENT, tmp_path)
    assert reason is None and data["devices"] == CALIBRATION["devices"]
    monkeypatch.setattr(env, "auto_threads", lambda: 2)
    index = peaks_cache.Index(ENVIRONMENT, tmp_path)
    assert index.for_threads(None)[0] is not None, "unset threads: the cases' count, 2 here"
    assert index.for_threads(1)[0] is None and "--threads 1" in index.for_threads(1)[1]
    monkeypatch.setattr(env, "auto_threads", lambda: 1)
    assert peaks_cache.Index(ENVIRONMENT, tmp_path).for_threads(None)[0] is None
    path.write_text("{broken")
    assert "unreadable" in peaks_cache.load(ENVIRONMENT, tmp_path)[1]


def test_cache_dir_honours_the_environment(tmp_path):
    assert peaks_cache.cache_dir({"ARCHBENCH_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert peaks_cache.cache_dir({"XDG_CACHE_HOME": "/x"}).as_posix() == "/x/archbench"


# ---- registry, settings and record columns --------------------------------------------------
def test_registry_lists_the_builtin_collectors():
    assert set(known()) >= {"rss", "nvml", "cuda_memory", "host_memory"}


@pytest.mark.parametrize(("setting", "value"), [
    ("rss_interval_s", 0.0), ("telemetry_interval_s", 0.001), ("profile", "yes"),
    ("profile_iters", 0), ("telemetry", 1)])
def test_collector_settings_are_validated(write_suite, setting, value):
    from bench.suite import loader as suite_file

    value_text = f'"{value}"' if isinstance(value, str) else str(value)
    path = write_suite(f'[settings]\n{setting} = {value_text}\n[[sweep]]\nmodel = "mlp"\n',
                       fast=False)
    with pytest.raises(SpecError, match=setting):
        suite_file.load(path)


def test_flatten_turns_collector_info_into_columns():
    base = dict(run_id="r", case_id="c", name="n", suite="s", params={"batch_size": 2},
                settings={})
    info = {"telemetry": {"t_s": [0.0], "rss_bytes": [1.0]}, "collectors": {
        "rss": {"ok": True, "reason": None}}, "profile": {"top_ops": [], "trace": None}}
    row = flatten(Record(status="ok", info=info, **base))
    assert row["telemetry"] == info["telemetry"] and row["collectors"]["rss"]["ok"]
    assert row["profile"] == {"top_ops": [], "trace": None}
    empty = flatten(Record(status="failed", **base))
    assert empty["telemetry"] is None and empty["profile"] is None
