"""benchmarks.gpu_check: the dry run end to end here, and every judge on made-up GPU records,
so the one command is known to work before a GPU runs it."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from bench.results.record import Record
from benchmarks.gpu_claims import (
    Device,
    Run,
    aa_row,
    claim_rows,
    junit_rows,
    ray_row,
    speedup_row,
)

ROOT = Path(__file__).resolve().parent.parent


# ---- the dry run -------------------------------------------------------------------------------
@pytest.mark.slow
def test_dry_run_reports_every_claim_not_applicable_and_writes_its_files(tmp_path):
    """Every claim has its row, each `n/a` with why (a failed row would mean broken plumbing),
    and the files the device tool brings back are written. Ray is left out here: its local
    instance alone takes 15 s on two cores (the Ray executor has tests of its own)."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--dry-run",
                           "--skip", "ray", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads((out / "gpu_check.json").read_text())
    rows = report["rows"]
    assert report["dry_run"] and not report["device"]["cuda"]
    assert {r["verdict"] for r in rows} == {"n/a"}, [r for r in rows if r["verdict"] != "n/a"]
    claims = [r["claim"] for r in rows]
    for expected in ("device:", "calibrate", "roofline_fraction", "NVML utilisation",
                     "energy by the NVML counter", "device memory", "profiler", "2:4 sparsity",
                     "reduce-overhead", "quickstart on CUDA", "gate A/A"):
        assert sum(expected in c for c in claims) == 1, (expected, claims)
    assert not any("Ray" in c for c in claims)
    precisions = [c.split()[1].rstrip(":") for c in claims if c.startswith("precision ")]
    assert precisions == ["fp32", "tf32", "fp16", "bf16", "amp-fp16", "amp-bf16",
                          "int8-weight-only", "fp8"]
    # the CUDA rows say why: the records' reason, not a stock phrase
    assert all("CPU-only" in r["detail"] or "no CUDA" in r["detail"]
               for r in rows if "bf16 large MLP" in r["claim"])
    tests = sorted(c.removeprefix("test ") for c in claims if c.startswith("test "))
    assert len(tests) >= 4 and {t.partition("::")[0] for t in tests} == set(
        report["test_files"])

    table = (out / "gpu_check.md").read_text()
    assert table in done.stdout and f"{len(rows)} n/a" in table
    assert sorted(p.name for p in out.iterdir()) == [
        "gpu_check.json", "gpu_check.log", "gpu_check.md", "gpu_check_runs.tar.gz"]
    with tarfile.open(out / "gpu_check_runs.tar.gz") as tar:
        names = set(tar.getnames())
        claims_results = tar.extractfile("gpu_check_runs/claims/results.jsonl")
        assert claims_results is not None
        assert len(claims_results.read().splitlines()) == 15  # gpu.toml 5 + gpu_check.toml 10
    assert {"gpu_check_runs/cuda_tests.xml", "gpu_check_runs/quickstart/results.jsonl",
            "gpu_check_runs/quickstart-cuda/results.jsonl"} <= names
    labels = [c["label"] for c in report["commands"]]
    assert labels == ["device", "tests", "calibrate", "gpu.toml + gpu_check.toml",
                      "quickstart", "quickstart, CUDA again", "compare"]


def test_the_check_selects_every_cuda_marked_test(request):
    """The check collects only the files that use the `cuda` marker (fast, and free of the
    other tests' dev dependencies on a bare GPU machine); pytest's own selection over this
    session must find no cuda-marked test elsewhere."""
    from benchmarks.gpu_check import cuda_test_files

    items = request.session.items
    if len({item.path for item in items}) < 2:
        pytest.skip("run with the whole tests folder: this session collected one file")
    marked = {str(item.path.relative_to(ROOT)) for item in items
              if item.get_closest_marker("cuda")}
    assert marked and marked <= set(cuda_test_files()), (marked, cuda_test_files())


def test_without_a_gpu_and_without_dry_run_it_refuses(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "no GPU here" in done.stderr and "--dry-run" in done.stderr


def test_the_device_probes_tell_real_arithmetic_from_a_switch_that_did_nothing():
    """On the CPU the TF32 switch changes nothing, so the probe must say "no TF32" from the
    numbers alone; float32, fp16 and bf16 land within their rounding; autocast to CUDA does
    nothing here. The same code answers for the GPU in the check."""
    import torch

    from benchmarks.gpu_truth import precisions

    found = precisions(torch, torch.device("cpu"))
    assert found["fp32"]["supported"] and found["fp32"]["rel_error"] < 2e-5
    assert not found["tf32"]["supported"] and "no TF32" in found["tf32"]["why"]
    assert found["fp16"]["supported"] and 1e-5 < found["fp16"]["rel_error"] < 5e-3
    assert found["bf16"]["supported"] and found["bf16"]["rel_error"] > found["fp16"]["rel_error"]
    assert not found["amp-bf16"]["supported"]
    assert set(found) == {"fp32", "tf32", "fp16", "bf16", "amp-fp16", "amp-bf16",
                          "int8-weight-only", "fp8"}


# ---- judges on made-up GPU records ---------------------------------------------------------------
H100 = {
    "cuda": True, "name": "NVIDIA H100 80GB HBM3", "capability": [9, 0],
    "total_memory_bytes": 85 * 10**9, "torch": "2.11.0+cu130", "torch_cuda": "13.0",
    "precisions": {p: {"supported": True} for p in
                   ("fp32", "tf32", "fp16", "bf16", "amp-fp16", "amp-bf16",
                    "int8-weight-only", "fp8")},
    "semi_structured": {"supported": True},
    "nvml": {"available": True, "power_limit_w": 700.0, "max_sm_clock_mhz": 1980.0},
}
NO_GPU = Device({"cuda": False, "why": "no GPU: torch is a CPU-only build"})
SETTINGS = {"telemetry_interval_s": 0.02, "confidence": 0.95}


def record(name: str, *, suite: str = "gpu-claims", sweep: str = "", status: str = "ok",
           median_ms: float = 1.0, metrics: dict[str, Any] | None = None,
           info: dict[str, Any] | None = None, reason: str | None = None,
           **params: Any) -> Record:
    prune = params.pop("prune", "none")
    full = {"model": "mlp", "device": "cuda", "precision": "fp32", "compile": "eager",
            "batch_size": 1, "prune": {"method": prune}, **params}
    timing = None
    if status == "ok":
        samples = [median_ms * 1e6 * (1 + 0.001 * (i % 5 - 2)) for i in range(50)]
        timing = {"samples_ns": samples, "measure_ns": 2e9}
    return Record(run_id="r", case_id=name, name=name, suite=suite, params=full,
                  settings=SETTINGS, status=status, reason=reason, timing=timing,  # type: ignore[arg-type]
                  metrics=metrics or {}, info=info or {}, sweep=sweep)


def large(precision: str, **metrics: Any) -> Record:
    return record(f"large-{precision}", suite="gpu", sweep="large mlp", precision=precision,
                  width=8192, batch_size=8192, median_ms=8.0, metrics=metrics)


def bf16_large(**changes: Any) -> Record:
    """What the bf16 large MLP's record should look like on an H100."""
    timed = 100  # 2 s timed window at 20 ms, one sample per timeline point
    metrics = {
        "roofline_fraction": 0.72, "achieved_flops_s": 560e12,
        "roofline_attainable_flops_s": 780e12, "gpu_util_mean_pct": 99.0,
        "power_mean_w": 640.0, "sm_clock_mean_mhz": 1755.0, "temperature_max_c": 61.0,
        "throttle_reasons": "sw_power_cap", "energy_j": 1290.0, "energy_window_s": 2.02,
        "energy_method": "counter", "energy_per_item_j": 6.2e-4,
        "cuda_max_allocated_timed_bytes": 3 * 2**30, "cuda_max_reserved_timed_bytes": 3.5 * 2**30,
        "nvml_process_used_bytes": 4.1 * 2**30, "weight_bytes": int(0.5 * 2**30),
        **changes.pop("metrics", {}),
    }
    info = {"telemetry": {"phase": ["warmup"] * 10 + ["timed"] * timed,
                          "gpu_util_pct": [99.0] * (10 + timed)},
            "profile": {"trace": "traces/bf16.json",
                        "top_ops": [{"name": "aten::mm", "self_device_ms": 7.1}]},
            "collectors": {"energy": {"ok": True, "reason": None}}}
    return record("large-bf16", suite="gpu", sweep="large mlp", precision="bf16", width=8192,
                  batch_size=8192, median_ms=8.0, metrics=metrics, info=info, **changes)


def claims_run(tmp_path: Path, *, bf16: Record | None = None, sparse_ms: float = 6.5,
               fp8_status: str = "ok", bf16_compute: str = "bfloat16") -> Run:
    (tmp_path / "traces").mkdir(exist_ok=True)
    (tmp_path / "traces" / "bf16.json").write_text("{}")
    compute = {"fp32": "float32", "tf32": "tf32", "fp16": "float16", "bf16": bf16_compute,
               "amp-fp16": "float16", "amp-bf16": "bfloat16", "int8-weight-only": "bfloat16",
               "fp8": "float8_e4m3fn"}
    precisions = [record(f"p-{p}", sweep="precisions", precision=p, median_ms=0.05,
                         status=fp8_status if p == "fp8" else "ok",
                         reason="needs torchao" if p == "fp8" and fp8_status != "ok" else None,
                         metrics={"compute_dtype": compute[p]}) for p in compute]
    sparse = record("sparse", sweep="2:4 sparsity", precision="bf16", width=8192,
                    prune="semi-structured-2:4", median_ms=sparse_ms,
                    info={"prune": {"layers_converted": ["0", "2", "4", "6"],
                                    "backend": "SparseSemiStructuredTensorCUSPARSELT"}})
    small = [record("small-eager", suite="gpu", width=256, median_ms=0.060),
             record("small-graphs", width=256, compile="reduce-overhead", median_ms=0.020,
                    metrics={"recompiles": 0, "compile_s": 21.0})]
    records = [bf16 or bf16_large(), large("tf32", roofline_fraction=0.55),
               large("fp32", roofline_fraction=0.9), *precisions, sparse, *small]
    return Run(tmp_path, tuple(records))


def verdict(rows, claim_start: str) -> str:
    """The verdict of the one row whose claim starts so."""
    (row,) = [r for r in rows if r.claim.startswith(claim_start)]
    return row.verdict


def test_a_healthy_gpu_run_passes_every_claim(tmp_path):
    rows = claim_rows(Device(H100), claims_run(tmp_path))
    assert [r.verdict for r in rows] == ["pass"] * len(rows), [r for r in rows
                                                              if r.verdict != "pass"]
    assert len(rows) == 5 + 8 + 2
    by_claim = {r.claim: r for r in rows}
    roofline = next(r for c, r in by_claim.items() if "roofline_fraction" in c)
    assert roofline.figure.startswith("0.72") and "tf32 0.55" in roofline.detail
    nvml = next(r for c, r in by_claim.items() if c.startswith("NVML"))
    assert nvml.figure.startswith("50 samples/s")
    sparsity = next(r for c, r in by_claim.items() if c.startswith("2:4"))
    assert sparsity.figure.startswith("1.23x")
    graphs = next(r for c, r in by_claim.items() if "reduce-overhead" in c)
    assert graphs.figure.startswith("3.00x (60 -> 20 us)")


@pytest.mark.parametrize(("change", "claim", "why"), [
    ({"metrics": {"roofline_fraction": 0.41}}, "gpu.toml bf16 large MLP", "0.41"),
    ({"metrics": {"energy_method": "power-integral"}}, "energy by the NVML counter",
     "power-integral"),
    ({"metrics": {"energy_j": 600.0}}, "energy by the NVML counter", "disagree"),
    ({"metrics": {"gpu_util_mean_pct": 35.0}}, "NVML utilisation, power, clock samples",
     "utilisation 35%"),
    ({"metrics": {"power_mean_w": 900.0}}, "NVML utilisation, power, clock samples",
     "700 W limit"),
    ({"metrics": {"nvml_process_used_bytes": 2 * 2**30}}, "device memory",
     "under the allocator's reserve"),
    ({"metrics": {"nvml_process_used_bytes": 9 * 2**30}}, "device memory",
     "beyond the allocator's reserve"),
    ({"metrics": {"cuda_max_allocated_timed_bytes": 2**28}}, "device memory",
     "under the weights"),
    ({"status": "failed", "reason": "CUDA error: out of memory"}, "gpu.toml bf16 large MLP",
     "out of memory"),
])
def test_each_bf16_large_claim_fails_on_its_own_evidence(tmp_path, change, claim, why):
    rows = claim_rows(Device(H100), claims_run(tmp_path, bf16=bf16_large(**change)))
    (row,) = [r for r in rows if r.claim.startswith(claim)]
    assert row.verdict == "fail"
    assert why in row.figure + row.detail, row


def test_too_few_nvml_samples_fail(tmp_path):
    gappy = bf16_large()
    series = gappy.info["telemetry"]["gpu_util_pct"]
    gappy.info["telemetry"]["gpu_util_pct"] = [v if i % 3 == 0 else None
                                               for i, v in enumerate(series)]
    rows = claim_rows(Device(H100), claims_run(tmp_path, bf16=gappy))
    assert verdict(rows, "NVML utilisation") == "fail"


def test_precision_verdicts_must_match_the_device(tmp_path):
    # archbench says fp8 cannot run, the device ran it: a wrong verdict
    rows = claim_rows(Device(H100), claims_run(tmp_path, fp8_status="unsupported"))
    assert verdict(rows, "precision fp8") == "fail"
    # both say no: right
    truth = {**H100, "precisions": {**H100["precisions"],
                                    "fp8": {"supported": False, "why": "no torchao"}}}
    rows = claim_rows(Device(truth), claims_run(tmp_path, fp8_status="unsupported"))
    assert verdict(rows, "precision fp8") == "pass"
    # it ran, but not in the dtype it is named for
    rows = claim_rows(Device(H100), claims_run(tmp_path, bf16_compute="float32"))
    assert verdict(rows, "precision bf16") == "fail"


def test_slower_sparsity_and_missing_records_fail(tmp_path):
    rows = claim_rows(Device(H100), claims_run(tmp_path, sparse_ms=9.0))
    assert verdict(rows, "2:4 sparsity") == "fail"
    assert {r.verdict for r in claim_rows(Device(H100), Run(tmp_path, ()))} == {"fail"}


def test_without_a_gpu_unsupported_is_not_applicable_and_anything_else_fails(tmp_path):
    unsupported = record("large-bf16", suite="gpu", precision="bf16", width=8192,
                         status="unsupported", reason="no CUDA here")
    rows = claim_rows(NO_GPU, Run(tmp_path, (unsupported,)))
    assert rows[0].verdict == "n/a" and rows[0].detail == "no CUDA here"
    crashed = record("large-bf16", suite="gpu", precision="bf16", width=8192,
                     status="crashed", reason="worker died")
    assert claim_rows(NO_GPU, Run(tmp_path, (crashed,)))[0].verdict == "fail"


def test_a_broken_judge_costs_its_row_only(tmp_path):
    broken = bf16_large(metrics={"energy_window_s": "two seconds"})
    rows = claim_rows(Device(H100), claims_run(tmp_path, bf16=broken))
    errors = [r for r in rows if r.figure == "check error"]
    assert [r.claim for r in errors] == ["energy_row"]
    assert sum(r.verdict == "pass" for r in rows) == len(rows) - 1


JUNIT = """<testsuites><testsuite>
<testcase classname="tests.test_a" name="test_ok" time="1.5"/>
<testcase classname="tests.test_a" name="test_bad" time="0.2"><failure message="assert 1 == 2"/>
</testcase>
<testcase classname="tests.test_b" name="test_skip" time="0"><skipped message="no CUDA"/>
</testcase></testsuite></testsuites>"""


def test_test_rows_from_the_junit_report(tmp_path):
    report = tmp_path / "junit.xml"
    report.write_text(JUNIT)
    gpu = {r.claim: r.verdict for r in junit_rows(Device(H100), report)}
    assert gpu == {"test tests/test_a.py::test_ok": "pass",
                   "test tests/test_a.py::test_bad": "fail",
                   "test tests/test_b.py::test_skip": "fail"}  # a skip on a GPU checked nothing
    assert junit_rows(NO_GPU, report)[2].verdict == "n/a"


def test_quickstart_speedup_pairs_cpu_and_cuda_twins(tmp_path):
    records = [record("a-cpu", device="cpu", width=256, median_ms=1.0),
               record("a-cuda", width=256, median_ms=0.1),
               record("b-cpu", device="cpu", width=1024, median_ms=4.0),
               record("b-cuda", width=1024, median_ms=0.1)]
    row = speedup_row(Device(H100), Run(tmp_path, tuple(records)))
    assert row.verdict == "pass" and "geomean 20.0x" in row.figure, row
    failed = [*records[:3], record("b-cuda", width=1024, status="oom", reason="OOM")]
    assert speedup_row(Device(H100), Run(tmp_path, tuple(failed))).verdict == "fail"


def test_aa_gate_any_change_is_a_false_alarm():
    same = [{"kind": "timing", "verdict": "same", "delta_pct": 1.2, "name": "a",
             "metric": "median_ms"},
            {"kind": "timing", "verdict": "inconclusive", "delta_pct": -3.0, "name": "b",
             "metric": "median_ms"}]
    row = aa_row(Device(H100), {"verdicts": same}, 0)
    assert row.verdict == "pass" and "largest move 3.0%" in row.figure
    alarm = [*same, {"kind": "timing", "verdict": "improvement", "delta_pct": -8.0,
                     "name": "c", "metric": "median_ms"}]
    row = aa_row(Device(H100), {"verdicts": alarm}, 0)
    assert row.verdict == "fail" and "c median_ms improvement" in row.detail


def test_ray_row_needs_a_gpu_assigned_to_every_case(tmp_path):
    held = record("a", info={"node": {"cuda_visible_devices": "0"}})
    unheld = record("b", info={"node": {}})
    assert ray_row(Device(H100), Run(tmp_path, (held,)), "2.60.0").verdict == "pass"
    row = ray_row(Device(H100), Run(tmp_path, (held, unheld)), "2.60.0")
    assert row.verdict == "fail" and "Ray assigned no GPU" in row.detail


# ---- the wheels carried to a GPU machine without internet --------------------------------------
def fake_wheel(path: Path, requires: list[str]) -> Path:
    import zipfile

    info = "ray-2.60.0.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{info}/METADATA", "Name: ray\n" + "".join(
            f"Requires-Dist: {r}\n" for r in requires))
        wheel.writestr(f"{info}/RECORD", "ray/__init__.py,sha256=x,1\n"
                                         "ray/jars/ray_dist.jar,sha256=y,9\n")
        wheel.writestr("ray/__init__.py", "")
        wheel.writestr("ray/jars/ray_dist.jar", b"\0" * 100_000)
    return path


def test_ray_loses_only_its_java_jar_and_requirements_are_checked_for_the_machine(tmp_path):
    import zipfile

    from benchmarks.gpu_wheels import missing, strip_jars

    wheel = fake_wheel(tmp_path / "ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl", [
        "click>=7.0", 'async-timeout<6; python_version < "3.11"', 'pytest; extra == "dev"',
        'colorama; sys_platform == "win32"', "jsonschema"])
    assert strip_jars(wheel) > 0
    with zipfile.ZipFile(wheel) as stripped:
        assert stripped.namelist() == ["ray-2.60.0.dist-info/METADATA",
                                       "ray-2.60.0.dist-info/RECORD", "ray/__init__.py"]
        assert b"jars" not in stripped.read("ray-2.60.0.dist-info/RECORD")
    # click is on the machine; the markers rule out async-timeout, pytest and colorama there
    assert [p.split(" needs ")[1] for p in missing([wheel])] == [
        "jsonschema, neither carried nor there"]
