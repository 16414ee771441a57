"""Judging archbench's CUDA claims from what the runs recorded: one row per claim.

Pure functions over records, a pytest report and `archbench compare --json` output, so each
judge is tested with made-up records (tests/test_gpu_check.py) before a GPU ever runs it;
`benchmarks.gpu_check` runs the commands and hands their results here. Each row is `pass`,
`fail` or `n/a` with the measured figure. Without a GPU a CUDA case must have been recorded
`unsupported` (its row is then `n/a` with the record's reason); anything else fails, so the
dry run checks the plumbing too.
"""

from __future__ import annotations

import json
import math
import statistics
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.results.record import Record

Verdict = Literal["pass", "fail", "n/a", "not run"]

#: The roofline goal of the bf16 large MLP (suites/gpu.toml says why).
ROOFLINE_GOAL = 0.6
#: NVML samples in the timed window: at least this share of 1 / telemetry_interval_s.
SAMPLE_RATE_SHARE = 0.5
#: A matmul-bound case keeps the GPU busy (a kernel running) at least this share of the time.
BUSY_PCT = 80.0
#: Energy from the counter and the mean of the sampled power agree within this share.
ENERGY_AGREEMENT = 0.25
#: NVML's view of the worker's memory beyond the allocator's reserve: the CUDA context, the
#: libraries' code and workspaces. More than this is memory the allocator does not account for.
CONTEXT_BYTES_MAX = 2 * 2**30
#: What `compute_dtype` must say for the precisions whose matmul dtype is unambiguous.
EXPECTED_COMPUTE = {"fp32": "float32", "tf32": "tf32", "fp16": "float16", "bf16": "bfloat16",
                    "amp-fp16": "float16", "amp-bf16": "bfloat16"}


@dataclass(frozen=True)
class Row:
    claim: str
    verdict: Verdict
    figure: str = ""
    detail: str = ""

    @classmethod
    def judged(cls, claim: str, figure: str, problems: list[str]) -> Row:
        """A claim that passes when no problem was found, else fails naming them all."""
        return cls(claim, "fail" if problems else "pass", figure, "; ".join(problems))


@dataclass(frozen=True)
class Device:
    """What `benchmarks.gpu_truth` found: `cuda` false (with `why`) where there is no GPU."""

    truth: Mapping[str, Any] = field(default_factory=dict)

    @property
    def gpu(self) -> bool:
        return bool(self.truth.get("cuda"))

    @property
    def no_gpu(self) -> str:
        return str(self.truth.get("why") or "no GPU")


@dataclass(frozen=True)
class Run:
    """A run folder and its records."""

    path: Path
    records: tuple[Record, ...]


# ---- helpers over records ----------------------------------------------------------------------
def param(record: Record, key: str) -> Any:
    if key == "suite":
        return record.suite
    if key == "prune":
        return (record.params.get("prune") or {}).get("method", "none")
    return record.params.get(key)


def pick(records: Iterable[Record], **want: Any) -> Record | None:
    """The record whose parameters (and `suite`) have these values; the last if several."""
    found = [r for r in records if all(param(r, k) == v for k, v in want.items())]
    return found[-1] if found else None


def first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def collector_reason(record: Record, name: str) -> str:
    entry = (record.info.get("collectors") or {}).get(name) or {}
    return str(entry.get("reason") or "")


def gib(value: float) -> str:
    return f"{value / 2**30:.2f} GiB"


def median_ms(record: Record | None) -> float | None:
    return record.median_ms if record is not None and record.status == "ok" else None


def unjudgeable(device: Device, claim: str, record: Record | None, what: str) -> Row | None:
    """The row for a record whose figures cannot decide (missing, no GPU here, a failure);
    None when it ran and its figures decide."""
    if record is None:
        return Row(claim, "fail", "no record", f"{what} is missing from the run")
    if not device.gpu:
        if record.status == "unsupported":
            return Row(claim, "n/a", "no GPU", first_line(record.reason))
        return Row(claim, "fail", record.status,
                   f"without a GPU {what} should be unsupported: {first_line(record.reason)}")
    if record.status != "ok":
        return Row(claim, "fail", record.status, first_line(record.reason))
    return None


def error_row(what: str, exc: Exception) -> Row:
    return Row(what, "fail", "check error", f"{type(exc).__name__}: {first_line(str(exc))}")


# ---- the device ------------------------------------------------------------------------------
def device_row(device: Device) -> Row:
    claim = "device: what the GPU really supports (tried directly)"
    if not device.gpu:
        return Row(claim, "n/a", "no GPU", device.no_gpu)
    t = device.truth
    supported = [k for k, v in (t.get("precisions") or {}).items() if v.get("supported")]
    sparse = (t.get("semi_structured") or {}).get("supported")
    figure = (f"{t.get('name')}, sm {'.'.join(map(str, t.get('capability') or []))}, "
              f"{gib(t.get('total_memory_bytes') or 0)}")
    return Row(claim, "pass", figure, f"torch {t.get('torch')} (CUDA {t.get('torch_cuda')}); "
                                      f"runs {', '.join(supported)}"
                                      f"{', 2:4' if sparse else ''}")


# ---- the cuda-marked tests -------------------------------------------------------------------
def junit_rows(device: Device, report: Path) -> list[Row]:
    """One row per test in a pytest JUnit report. Without a GPU each must have been skipped;
    with one, a skip is a failure: the test did not check what it is there to check."""
    rows = []
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        module = (case.get("classname") or "").replace(".", "/")
        claim = f"test {module}.py::{case.get('name')}"
        seconds = float(case.get("time") or 0)
        failure = case.find("failure")
        problem = failure if failure is not None else case.find("error")
        skipped = case.find("skipped")
        if problem is not None:
            rows.append(Row(claim, "fail", f"{seconds:.1f} s",
                            first_line(problem.get("message") or problem.text)))
        elif skipped is not None:
            rows.append(Row(claim, "fail" if device.gpu else "n/a", "skipped",
                            first_line(skipped.get("message"))))
        else:
            rows.append(Row(claim, "pass", f"{seconds:.1f} s"))
    return rows or [Row("cuda-marked tests", "fail", "none selected", str(report))]


# ---- suites/gpu.toml + benchmarks/gpu_check.toml ---------------------------------------------
def large(run: Run, precision: str) -> Record | None:
    return pick(run.records, suite="gpu", width=8192, precision=precision, prune="none")


def large_bf16(device: Device, run: Run, claim: str) -> Record | Row:
    """gpu.toml's bf16 large MLP, or the row saying why it cannot decide `claim`."""
    record = large(run, "bf16")
    early = unjudgeable(device, claim, record, "the bf16 large MLP")
    if early is not None:
        return early
    return record if record is not None else Row(claim, "fail")


def roofline_row(device: Device, run: Run) -> Row:
    claim = f"gpu.toml bf16 large MLP: roofline_fraction >= {ROOFLINE_GOAL}"
    record = large_bf16(device, run, claim)
    if isinstance(record, Row):
        return record
    m = record.metrics
    fraction = m.get("roofline_fraction")
    if fraction is None:
        return Row(claim, "fail", "no fraction", collector_reason(record, "roofline"))
    others = [f"{p} {o.metrics['roofline_fraction']:.2f}" for p in ("tf32", "fp32")
              if (o := large(run, p)) is not None and o.metrics.get("roofline_fraction")]
    figure = (f"{fraction:.2f} ({m.get('achieved_flops_s', 0) / 1e12:.0f} of "
              f"{m.get('roofline_attainable_flops_s', 0) / 1e12:.0f} TFLOP/s)")
    return Row(claim, "pass" if fraction >= ROOFLINE_GOAL else "fail", figure,
               "other precisions: " + "; ".join(others) if others else "")


def timed_samples(record: Record, series: str) -> int:
    """Points of the record's timeline inside the timed window that hold a sample."""
    telemetry = record.info.get("telemetry") or {}
    return sum(1 for phase, value in zip(telemetry.get("phase") or [],
                                         telemetry.get(series) or [], strict=False)
               if phase == "timed" and value is not None)


def nvml_row(device: Device, run: Run) -> Row:
    claim = "NVML utilisation, power, clock samples: present and plausible (bf16 large MLP)"
    record = large_bf16(device, run, claim)
    if isinstance(record, Row):
        return record
    m, facts = record.metrics, device.truth.get("nvml") or {}
    timed_s = float((record.timing or {}).get("measure_ns") or 0) / 1e9
    interval = float(record.settings.get("telemetry_interval_s") or 0.02)
    rate = timed_samples(record, "gpu_util_pct") / timed_s if timed_s else 0.0
    limit_w = facts.get("power_limit_w") or 2000.0
    max_clock = facts.get("max_sm_clock_mhz") or 5000.0
    problems = []
    if rate < SAMPLE_RATE_SHARE / interval:
        problems.append(f"{rate:.1f} samples/s in the timed window, expected ~{1 / interval:.0f}")
    for key in ("gpu_util_mean_pct", "power_mean_w", "sm_clock_mean_mhz", "temperature_max_c"):
        if m.get(key) is None:
            problems.append(f"{key} missing ({collector_reason(record, 'nvml')})")
    util, power = m.get("gpu_util_mean_pct"), m.get("power_mean_w")
    clock, temperature = m.get("sm_clock_mean_mhz"), m.get("temperature_max_c")
    if util is not None and not BUSY_PCT <= util <= 100:
        problems.append(f"utilisation {util:.0f}% for a matmul-bound case")
    if power is not None and not 0 < power <= 1.1 * limit_w:
        problems.append(f"power {power:.0f} W against a {limit_w:.0f} W limit")
    if clock is not None and not 0 < clock <= 1.02 * max_clock:
        problems.append(f"SM clock {clock:.0f} MHz against a {max_clock:.0f} MHz maximum")
    if temperature is not None and not 0 < temperature < 110:
        problems.append(f"temperature {temperature:.0f} C")
    figure = (f"{rate:.0f} samples/s; util {util or 0:.0f}%, {power or 0:.0f} W "
              f"(limit {limit_w:.0f}), SM {clock or 0:.0f} MHz (max {max_clock:.0f}), "
              f"{temperature or 0:.0f} C, throttle {m.get('throttle_reasons', '?')}")
    return Row.judged(claim, figure, problems)


def energy_row(device: Device, run: Run) -> Row:
    claim = "energy by the NVML counter, agreeing with sampled power (bf16 large MLP)"
    record = large_bf16(device, run, claim)
    if isinstance(record, Row):
        return record
    m = record.metrics
    if not m.get("energy_j") or not m.get("energy_window_s"):
        return Row(claim, "fail", "no energy", collector_reason(record, "energy"))
    mean_w = m["energy_j"] / m["energy_window_s"]
    sampled = m.get("power_mean_w")
    per_item = m.get("energy_per_item_j")
    figure = (f"{m['energy_j']:.0f} J over {m['energy_window_s']:.2f} s = {mean_w:.0f} W "
              f"(sampled {sampled or 0:.0f} W); {(per_item or 0) * 1e3:.4f} mJ/item")
    problems = []
    if m.get("energy_method") != "counter":
        problems.append(f"method {m.get('energy_method')}: {collector_reason(record, 'energy')}")
    if sampled and abs(mean_w - sampled) > ENERGY_AGREEMENT * sampled:
        problems.append("the counter's mean power and the sampled power disagree")
    if not per_item:
        problems.append("no energy per item")
    return Row.judged(claim, figure, problems)


def _largest(metrics: Mapping[str, Any], prefix: str) -> float | None:
    values = [v for k, v in metrics.items() if k.startswith(prefix) and
              isinstance(v, (int, float))]
    return max(values) if values else None


def memory_row(device: Device, run: Run) -> Row:
    claim = "device memory: NVML peak vs torch.cuda.max_memory_allocated (bf16 large MLP)"
    record = large_bf16(device, run, claim)
    if isinstance(record, Row):
        return record
    m = record.metrics
    allocated = _largest(m, "cuda_max_allocated_")
    reserved = _largest(m, "cuda_max_reserved_")
    nvml = m.get("nvml_process_used_bytes") or m.get("nvml_device_used_bytes")
    which = "process" if m.get("nvml_process_used_bytes") else "device"
    weights = m.get("weight_bytes")
    if allocated is None or reserved is None or nvml is None:
        return Row(claim, "fail", "missing",
                   f"allocated {allocated}, reserved {reserved}, NVML {nvml}: "
                   f"{collector_reason(record, 'cuda_memory')} {collector_reason(record, 'nvml')}")
    problems = []
    if weights and allocated < weights:
        problems.append(f"allocated {gib(allocated)} is under the weights' {gib(weights)}")
    if nvml < reserved:
        problems.append(f"NVML's {gib(nvml)} is under the allocator's reserve {gib(reserved)}")
    elif nvml - reserved > CONTEXT_BYTES_MAX:
        problems.append(f"NVML sees {gib(nvml - reserved)} beyond the allocator's reserve")
    figure = (f"torch max allocated {gib(allocated)} (weights {gib(weights or 0)}), reserved "
              f"{gib(reserved)}; NVML {which} {gib(nvml)}")
    return Row.judged(claim, figure, problems)


def profile_row(device: Device, run: Run) -> Row:
    claim = "profiler: a Chrome trace and device time per operator (bf16 large MLP)"
    record = large_bf16(device, run, claim)
    if isinstance(record, Row):
        return record
    profile = record.info.get("profile") or {}
    trace = run.path / str(profile.get("trace") or "-")
    top = max(profile.get("top_ops") or [{}], key=lambda op: op.get("self_device_ms") or 0)
    device_ms = float(top.get("self_device_ms") or 0)
    ok = trace.is_file() and device_ms > 0
    figure = (f"trace {trace.stat().st_size / 2**20:.1f} MiB; " if trace.is_file() else
              "no trace; ") + f"top op {top.get('name')} {device_ms:.2f} ms on the device"
    return Row(claim, "pass" if ok else "fail", figure,
               "" if ok else collector_reason(record, "profile"))


def precision_rows(device: Device, run: Run) -> list[Row]:
    """Each precision's verdict (ok, or unsupported with the reason) against what the device
    really did with that precision; a case that ran must compute in the dtype it claims."""
    truths = device.truth.get("precisions") or {}
    rows = []
    for record in (r for r in run.records if r.sweep == "precisions"):
        precision = str(param(record, "precision"))
        claim = f"precision {precision}: archbench's verdict matches the device"
        if not device.gpu:
            rows.append(unjudgeable(device, claim, record, f"the {precision} case")
                        or Row(claim, "fail"))
            continue
        truth = truths.get(precision) or {}
        really = bool(truth.get("supported"))
        device_says = "runs it" if really else f"does not ({truth.get('why') or truth})"
        if record.status not in ("ok", "unsupported"):
            rows.append(Row(claim, "fail", record.status, first_line(record.reason)))
        elif (record.status == "ok") != really:
            rows.append(Row(claim, "fail", record.status,
                            f"archbench: {record.status} {first_line(record.reason)}; "
                            f"the device {device_says}"))
        elif record.status == "unsupported":
            rows.append(Row(claim, "pass", "unsupported", first_line(record.reason)))
        else:
            compute = record.metrics.get("compute_dtype")
            expected = EXPECTED_COMPUTE.get(precision)
            wrong = expected is not None and compute != expected
            rows.append(Row(claim, "fail" if wrong else "pass",
                            f"ok, computes in {compute}, {record.median_ms or 0:.3f} ms",
                            f"expected {expected}" if wrong else ""))
    return rows or [Row("precisions", "fail", "no record", "the precisions sweep is missing")]


def sparsity_row(device: Device, run: Run) -> Row:
    claim = "2:4 sparsity is faster than dense (bf16 large MLP)"
    sparse = pick(run.records, width=8192, precision="bf16", prune="semi-structured-2:4")
    if not device.gpu or sparse is None:
        return unjudgeable(device, claim, sparse, "the 2:4 case") or Row(claim, "fail")
    truth = device.truth.get("semi_structured") or {}
    if sparse.status == "unsupported":
        agrees = not truth.get("supported")
        return Row(claim, "n/a" if agrees else "fail", "unsupported",
                   f"{first_line(sparse.reason)}; the device: {truth}")
    if sparse.status != "ok":
        return Row(claim, "fail", sparse.status, first_line(sparse.reason))
    dense_ms, sparse_ms = median_ms(large(run, "bf16")), median_ms(sparse)
    if dense_ms is None or sparse_ms is None:
        return Row(claim, "fail", "no dense baseline", "the dense bf16 large MLP did not run")
    applied = sparse.info.get("prune") or {}
    converted = applied.get("layers_converted") or []
    speedup = dense_ms / sparse_ms
    figure = (f"{speedup:.2f}x ({dense_ms:.2f} -> {sparse_ms:.2f} ms), "
              f"{len(converted)} layers converted ({applied.get('backend')})")
    return Row(claim, "pass" if converted and speedup > 1 else "fail", figure,
               "" if converted else "no layer was converted")


def graphs_row(device: Device, run: Run) -> Row:
    claim = "compile = reduce-overhead (CUDA graphs) beats eager on a launch-bound MLP"
    graphs = pick(run.records, width=256, precision="fp32", compile="reduce-overhead")
    early = unjudgeable(device, claim, graphs, "the reduce-overhead case")
    if early or graphs is None:
        return early or Row(claim, "fail")
    eager = pick(run.records, suite="gpu", width=256, precision="fp32", compile="eager")
    eager_ms, graphs_ms = median_ms(eager), median_ms(graphs)
    if eager_ms is None or graphs_ms is None:
        return Row(claim, "fail", "no eager baseline", "the eager small MLP did not run")
    recompiles = graphs.metrics.get("recompiles")
    speedup = eager_ms / graphs_ms
    figure = (f"{speedup:.2f}x ({eager_ms * 1e3:.0f} -> {graphs_ms * 1e3:.0f} us), compile "
              f"{graphs.metrics.get('compile_s') or 0:.0f} s, recompiles {recompiles}")
    return Row(claim, "pass" if speedup > 1 and not recompiles else "fail", figure)


#: The claims judged on the run of suites/gpu.toml with benchmarks/gpu_check.toml.
CLAIM_JUDGES: tuple[Callable[[Device, Run], Row], ...] = (
    roofline_row, nvml_row, energy_row, memory_row, profile_row, sparsity_row, graphs_row)


def claim_rows(device: Device, run: Run) -> list[Row]:
    """Every claim of the claims run; a bug in judging one costs that row, not the others."""
    rows = []
    for judge in CLAIM_JUDGES:
        try:
            rows.append(judge(device, run))
        except Exception as exc:
            rows.append(error_row(judge.__name__, exc))
    try:
        rows[5:5] = precision_rows(device, run)
    except Exception as exc:
        rows.insert(5, error_row("precision_rows", exc))
    return rows


# ---- the quickstart and the gate -------------------------------------------------------------
def twin_key(record: Record) -> str:
    """The parameters that make a quickstart case on the CPU the twin of one on CUDA."""
    return json.dumps({k: v for k, v in record.params.items() if k != "device"},
                      sort_keys=True, default=str)


def speedup_row(device: Device, run: Run) -> Row:
    claim = "quickstart on CUDA: every case runs; GPU vs CPU speed-up"
    cuda = [r for r in run.records if str(param(r, "device")).startswith("cuda")]
    cpu = {twin_key(r): r for r in run.records if param(r, "device") == "cpu"}
    if not cuda:
        return Row(claim, "fail", "no CUDA case", "the quickstart run has no CUDA case")
    if not device.gpu:
        wrong = [r.name for r in cuda if r.status != "unsupported"]
        return Row(claim, "fail" if wrong else "n/a", "no GPU",
                   f"not unsupported: {wrong}" if wrong else first_line(cuda[0].reason))
    failed = [f"{r.name}: {r.status}" for r in cuda if r.status != "ok"]
    ratios = {}
    for record in cuda:
        gpu_ms, cpu_ms = median_ms(record), median_ms(cpu.get(twin_key(record)))
        if gpu_ms and cpu_ms:
            ratios[record.name] = cpu_ms / gpu_ms
    if not ratios:
        return Row(claim, "fail", "no pair", "; ".join(failed) or "no CPU twin measured")
    values = list(ratios.values())
    geomean = math.exp(statistics.fmean(math.log(v) for v in values))
    slowest = min(ratios, key=ratios.__getitem__)
    figure = (f"{len(cuda) - len(failed)}/{len(cuda)} ok; speed-up geomean {geomean:.1f}x "
              f"(min {min(values):.2f}x {slowest}, max {max(values):.1f}x)")
    return Row(claim, "fail" if failed else "pass", figure, "; ".join(failed))


def aa_row(device: Device, result: Mapping[str, Any], rc: int | None) -> Row:
    """`archbench compare --json` between two runs of the same cases: any regression or
    improvement is a false alarm."""
    claim = "gate A/A: compare two runs of the quickstart's CUDA cases finds no change"
    verdicts = result.get("verdicts") or []
    timing = [v for v in verdicts if v.get("kind") == "timing"]
    if not device.gpu:
        return Row(claim, "fail" if timing else "n/a", "no GPU",
                   f"{result.get('cases_compared')} cases compared on status only (rc {rc})"
                   + (": timing verdicts without a GPU" if timing else ""))
    alarms = [f"{v.get('name')} {v.get('metric')} {v.get('verdict')} "
              f"({v.get('delta_pct') or 0:+.1f}%)"
              for v in verdicts if v.get("verdict") in ("regression", "improvement")]
    timing_counts = {name: sum(v.get("verdict") == name for v in timing)
                     for name in ("same", "inconclusive")}
    moves = [abs(v["delta_pct"]) for v in timing if v.get("delta_pct") is not None]
    figure = (f"{len(timing)} timed cases: {timing_counts['same']} same, "
              f"{timing_counts['inconclusive']} inconclusive, {len(alarms)} false alarms; "
              f"largest move {max(moves, default=0):.1f}%")
    ok = rc == 0 and not alarms and bool(timing)
    return Row(claim, "pass" if ok else "fail", figure, "; ".join(alarms[:5]))


# ---- Ray ---------------------------------------------------------------------------------------
def ray_row(device: Device, run: Run, ray_version: str) -> Row:
    claim = "Ray sweep: each GPU case holds the one GPU (num_gpus=1)"
    if not run.records:
        return Row(claim, "fail", "no record", f"{run.path} holds no record")
    if not device.gpu:
        wrong = [r.name for r in run.records if r.status != "unsupported"]
        return Row(claim, "fail" if wrong else "n/a", "no GPU",
                   f"not unsupported: {wrong}" if wrong else
                   f"Ray {ray_version} ran {len(run.records)} case(s): "
                   f"{first_line(run.records[0].reason)}")
    problems, held = [], []
    for record in run.records:
        visible = (record.info.get("node") or {}).get("cuda_visible_devices")
        held.append(str(visible))
        if record.status != "ok":
            problems.append(f"{record.name}: {record.status} {first_line(record.reason)}")
        elif not visible:
            problems.append(f"{record.name}: Ray assigned no GPU")
    figure = f"Ray {ray_version}: {len(run.records)} cases, CUDA_VISIBLE_DEVICES {', '.join(held)}"
    return Row.judged(claim, figure, problems)
