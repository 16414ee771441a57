"""The Ray executor's must-show numbers: agreement with the local engine, overhead per case,
driver memory, fault handling, scheduling with declared GPUs, and scaling.

Every section starts its own small Ray (a local instance, or several nodes on this machine
with `ray.cluster_utils.Cluster`) and stops it. Sections, each a few minutes at most:

    agreement  a 40-case CPU suite: local engine and a 2-node cluster interleaved (L R R L);
               same cases, statuses and parameters; per-case median ratios vs local/local
    overhead   tiny cases one at a time, local forkserver vs Ray (blocks interleaved): the
               wall time per case beyond the case's own duration
    memory     2,000 instant stand-in cases through the runner: the driver's RSS and rate
    faults     a node removed mid-run (retried, then lost); Ctrl-C then --resume; Ray
               missing; unreachable addresses
    gpus       a node declaring 4 (fake) GPUs: distinct devices, one case per GPU at a time,
               the CPU slot rule with --cpu-slots 1 and 2
    scaling    stand-in cases of known durations over 1, 2, 4, 8 and 32 slots (measured),
               and a simulation up to 1024 workers from the measured driver costs

Usage: python -m benchmarks.ray_executor [SECTION ...] [--out DIR]
Stand-in cases come from tests/ray_fakes.py (they sleep; nothing is measured).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import psutil

from bench.engine.executor import RunContext
from bench.engine.ray_executor import SLOT_RESOURCE, RayExecutor, RayOptions
from bench.engine.runner import RunOptions, run
from bench.results.record import Record
from bench.results.store import read_records, read_run
from bench.suite import loader
from bench.suite.spec import Case, Suite

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import ray_fakes  # noqa: E402

NODE = {"object_store_memory": 80 * 2**20}
SECTIONS = ("agreement", "overhead", "memory", "faults", "gpus", "scaling")

AGREE_SUITE = """
[suite]
name = "agree40"
[settings]
warmup_iters = 2
warmup_time_s = 0.02
min_samples = 10
min_time_s = 0.1
max_time_s = 0.3
threads = 1
timeout_s = 120
[[sweep]]
model = "mlp"
depth = [1, 2]
width = [16, 64, 128, 256, 512]
batch_size = [1, 8, 32, 128]
"""

TINY_SUITE = """
[suite]
name = "tiny"
[settings]
warmup_iters = 1
warmup_time_s = 0.0
min_samples = 2
min_time_s = 0.0
max_time_s = 0.001
threads = 1
[[sweep]]
model = "mlp"
depth = 1
width = [8, 9, 10, 11, 12, 13, 14, 15, 16, 17]
"""


# ---- helpers ------------------------------------------------------------------------------------
def ray_module() -> Any:
    import ray

    ray.cloudpickle.register_pickle_by_value(ray_fakes)
    return ray


def cluster(*workers: dict[str, Any], head: dict[str, Any] | None = None) -> Any:
    ray_module()
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {SLOT_RESOURCE: 1}, "include_dashboard": False, **NODE,
        **(head or {})})
    for w in workers:
        c.add_node(**{**NODE, **w})
    c.connect()
    return c


def stop(c: Any) -> None:
    ray_module().shutdown()
    c.shutdown()


def suite_file(folder: Path, text: str, name: str) -> Suite:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return loader.load(path)


class Times:
    """Observer: when the run started and each record arrived (driver clock)."""

    def __init__(self) -> None:
        self.start = 0.0
        self.ends: list[float] = []

    def run_started(self, run_dir: Path, total: int, skipped: int) -> None:
        self.start = time.perf_counter()

    def case_started(self, index: int, total: int, case: Case) -> None:
        pass

    def case_finished(self, index: int, total: int, record: Record) -> None:
        self.ends.append(time.perf_counter())

    def case_decided(self, record: Any) -> None:
        pass


def median_ms(record: Record) -> float:
    return statistics.median(record.samples_ns) / 1e6


def spread(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=10)
    return {"median": statistics.median(values), "p10": q[0], "p90": q[-1],
            "geomean": statistics.geometric_mean(values), "n": len(values)}


# ---- agreement ----------------------------------------------------------------------------------
def agreement(out: Path) -> dict[str, Any]:
    suite = suite_file(out, AGREE_SUITE, "agree40")
    cases = list(suite.cases)
    assert len(cases) == 40
    c = cluster({"num_cpus": 1, "resources": {SLOT_RESOURCE: 1}})
    try:
        executor = RayExecutor(RayOptions())
        runs: dict[str, list[Record]] = {}
        walls: dict[str, float] = {}
        for label in ("local1", "ray1", "ray2", "local2"):  # L R R L: drift cancels in pairs
            times = Times()
            options = RunOptions(out=out / label)
            if label.startswith("ray"):
                options = RunOptions(out=out / label, executor="ray")
                result = run([suite], cases, options, times, executor=executor)
            else:
                result = run([suite], cases, options, times)
            runs[label], walls[label] = result.records, times.ends[-1] - times.start
            print(f"  {label}: {len(result.records)} records in {walls[label]:.1f} s", flush=True)
        nodes = read_run(out / "ray1")["nodes"]
    finally:
        stop(c)

    def keyed(records: list[Record]) -> dict[str, Record]:
        return {r.case_id: r for r in records}

    local1, local2, ray1, ray2 = (keyed(runs[k]) for k in ("local1", "local2", "ray1", "ray2"))
    same_cases = set(local1) == set(ray1) == set(ray2) == set(local2)
    same_status = all(local1[k].status == ray1[k].status == ray2[k].status == local2[k].status
                      for k in local1)
    same_params = all(local1[k].params == ray1[k].params == ray2[k].params for k in local1)
    ok = [k for k in local1 if all(r[k].status == "ok" for r in (local1, local2, ray1, ray2))]
    ray_vs_local = [((median_ms(ray1[k]) * median_ms(ray2[k])) /
                     (median_ms(local1[k]) * median_ms(local2[k]))) ** 0.5 for k in ok]
    local_vs_local = [median_ms(local2[k]) / median_ms(local1[k]) for k in ok]
    ray_vs_ray = [median_ms(ray2[k]) / median_ms(ray1[k]) for k in ok]
    per_node = Counter(r.info["node"]["node_id"][:8] for r in runs["ray1"] + runs["ray2"])
    spread_repeats = sum(ray1[k].info["node"]["node_id"] != ray2[k].info["node"]["node_id"]
                         for k in ok)
    return {"cases": len(cases), "same_cases": same_cases, "same_statuses": same_status,
            "same_params": same_params, "statuses": dict(Counter(r.status for r in runs["ray1"])),
            "nodes": len(nodes), "records_per_node": dict(per_node),
            "ray_over_local": spread(ray_vs_local), "local2_over_local1": spread(local_vs_local),
            "ray2_over_ray1": spread(ray_vs_ray), "walls_s": walls,
            "cases_on_another_node_in_ray2": spread_repeats}


# ---- overhead -----------------------------------------------------------------------------------
def overhead(out: Path, blocks: int = 3) -> dict[str, Any]:
    suite = suite_file(out, TINY_SUITE, "tiny")
    cases = list(suite.cases)
    ray_module()
    executor = RayExecutor(RayOptions(local_num_cpus=2))  # a local instance, one CPU slot
    per_case: dict[str, list[float]] = {"local": [], "ray": []}
    try:
        for label, options in (("warm-local", RunOptions(out=out / "warm-local")),
                               ("warm-ray", RunOptions(out=out / "warm-ray", executor="ray"))):
            run([suite], cases[:2], options, executor=executor if "ray" in label else None)
        for block in range(blocks):
            order = ("local", "ray") if block % 2 == 0 else ("ray", "local")
            for kind in order:
                times = Times()
                options = RunOptions(out=out / f"{kind}{block}", executor=kind)
                result = run([suite], cases, options, times,
                             executor=executor if kind == "ray" else None)
                wall = times.ends[-1] - times.start
                inside = sum(r.duration_s or 0.0 for r in result.records)
                per_case[kind].append((wall - inside) / len(cases) * 1e3)
                print(f"  {kind} block {block}: {wall:.2f} s wall, {inside:.2f} s in cases",
                      flush=True)
    finally:
        executor.close()
    local, remote = statistics.median(per_case["local"]), statistics.median(per_case["ray"])
    return {"cases_per_block": len(cases), "blocks": blocks,
            "outside_case_ms_local": per_case["local"], "outside_case_ms_ray": per_case["ray"],
            "median_local_ms": local, "median_ray_ms": remote, "extra_ms": remote - local}


# ---- memory -------------------------------------------------------------------------------------
def fake_suite(out: Path, cases: list[Case]) -> Suite:
    return Suite(name="fake", path=str(out / "fake.toml"), content_sha256="",
                 cases=tuple(cases))


def memory(out: Path, count: int = 2000) -> dict[str, Any]:
    ray_module()
    executor = RayExecutor(RayOptions(case_runner=ray_fakes.sleep_case, cpu_slots=8,
                                      local_num_cpus=8))
    cases = [ray_fakes.fake_case(f"m{i}") for i in range(count)]
    me = psutil.Process()
    peak = [0]
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.is_set():
            peak[0] = max(peak[0], me.memory_info().rss)
            time.sleep(0.02)

    try:
        run([fake_suite(out, cases[:16])], cases[:16], RunOptions(out=out / "warm",
                                                                  executor="ray"),
            executor=executor)
        before = me.memory_info().rss
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        times = Times()
        result = run([fake_suite(out, cases)], cases, RunOptions(out=out / "m", executor="ray"),
                     times, executor=executor)
        stop_sampling.set()
        sampler.join()
        after = me.memory_info().rss
    finally:
        executor.close()
    wall = times.ends[-1] - times.start
    return {"cases": count, "records": len(result.records), "slots": 8,
            "driver_rss_before_mb": before / 2**20, "driver_rss_peak_mb": peak[0] / 2**20,
            "driver_rss_after_mb": after / 2**20,
            "growth_mb": (peak[0] - before) / 2**20,
            "growth_per_case_kb": (peak[0] - before) / count / 1024,
            "wall_s": wall, "records_per_s": count / wall,
            "driver_ms_per_record": wall / count * 1e3,
            "results_jsonl_mb": (out / "m" / "results.jsonl").stat().st_size / 2**20}


# ---- faults -------------------------------------------------------------------------------------
class KillAfter(Times):
    """Starts `killer` when the `count`-th record arrives (other nodes are mid-case then)."""

    def __init__(self, count: int, killer: threading.Timer) -> None:
        super().__init__()
        self.count, self.killer = count, killer

    def case_finished(self, index: int, total: int, record: Record) -> None:
        super().case_finished(index, total, record)
        if len(self.ends) == self.count:
            self.killer.start()


def archbench(*argv: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bench", "run", *argv, "--no-report"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def faults(out: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    suite = suite_file(out, AGREE_SUITE.replace('width = [16, 64, 128, 256, 512]',
                                                'width = [16, 64, 128]')
                       .replace("batch_size = [1, 8, 32, 128]", "batch_size = [1, 8]")
                       .replace("max_time_s = 0.3", "max_time_s = 1.0")
                       .replace("min_time_s = 0.1", "min_time_s = 1.0"), "faults")
    cases = list(suite.cases)

    # A node removed while it runs a case: with retries, moved; without, recorded as lost.
    for retries in (1, 0):
        c = cluster({"num_cpus": 1, "resources": {SLOT_RESOURCE: 1}})
        try:
            doomed = next(iter(c.worker_nodes))
            executor = RayExecutor(RayOptions(max_retries=retries))
            killer = threading.Timer(0.0, c.remove_node, args=(doomed,))
            times = KillAfter(2, killer)
            run_result = run([suite], cases, RunOptions(out=out / f"lost{retries}",
                                                        executor="ray"), times, executor=executor)
            killer.join()
        finally:
            stop(c)
        records = list(read_records(out / f"lost{retries}" / "results.jsonl"))
        keys = [(r.case_id, r.repeat) for r in records]
        moved = [r for r in records if r.info.get("executor", {}).get("preferred_node")
                 == doomed.node_id and r.info.get("node")
                 and r.info["node"]["node_id"] != doomed.node_id]
        result[f"node_lost_max_retries_{retries}"] = {
            "cases": len(cases), "records": len(records), "unique": len(set(keys)),
            "statuses": dict(Counter(r.status for r in records)),
            "sent_to_lost_node_recorded_from_another": len(moved),
            "lost_reasons": [r.reason for r in records if r.status != "ok"],
            "run_records": len(run_result.records)}
        print(f"  node lost (max_retries={retries}): {result[f'node_lost_max_retries_{retries}']}",
              flush=True)

    # Ctrl-C (SIGINT to the process group, as a terminal sends it), then --resume.
    run_dir = out / "interrupted"
    # A shell starts background jobs with SIGINT ignored, and a child inherits that (Python
    # then installs no KeyboardInterrupt handler): give the run the default disposition.
    process = archbench(suite.path, "--executor", "ray", "--out", str(run_dir),
                        start_new_session=True,
                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    jsonl = run_dir / "results.jsonl"
    while time.time() < deadline and (not jsonl.exists() or
                                      len(jsonl.read_text().splitlines()) < 3):
        time.sleep(0.2)
    sent = time.time()
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    stopped_s = time.time() - sent
    partial = list(read_records(jsonl))
    status_after = read_run(run_dir)["status"]
    resumed = archbench(suite.path, "--executor", "ray", "--out", str(run_dir), "--resume")
    resumed.communicate(timeout=600)
    final = list(read_records(jsonl))
    keys = [(r.case_id, r.repeat) for r in final]
    result["interrupt_then_resume"] = {
        "exit_code": process.returncode, "stopped_after_sigint_s": stopped_s,
        "run_status_after_interrupt": status_after,
        "records_after_interrupt": len(partial), "resume_exit_code": resumed.returncode,
        "records_after_resume": len(final), "unique": len(set(keys)), "cases": len(cases),
        "run_status": read_run(run_dir)["status"],
        "interrupt_message": [line for line in (stdout + stderr).splitlines()
                              if "interrupted" in line][-1:]}
    print(f"  Ctrl-C + resume: {result['interrupt_then_resume']}", flush=True)

    # Ray not installed (hidden from the import system) and unreachable addresses.
    code = ("import sys; sys.modules['ray'] = None; from bench.cli import main; "
            f"raise SystemExit(main(['run', {suite.path!r}, '--executor', 'ray', "
            f"'--out', {str(out / 'noray')!r}]))")
    started = time.time()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    result["ray_missing"] = {"exit_code": done.returncode, "seconds": time.time() - started,
                             "message": done.stderr.strip().splitlines()[-1:],
                             "run_folder_made": (out / "noray").exists()}
    for name, address in (("refused", "127.0.0.1:9"), ("unroutable", "10.255.255.1:6379"),
                          ("malformed", "headnode")):
        started = time.time()
        done = subprocess.run([sys.executable, "-m", "bench", "run", suite.path, "--executor",
                               "ray", "--ray-address", address, "--out",
                               str(out / f"bad-{name}")], capture_output=True, text=True)
        result[f"address_{name}"] = {"exit_code": done.returncode,
                                     "seconds": time.time() - started,
                                     "message": done.stderr.strip().splitlines()[-1:],
                                     "traceback": "Traceback" in done.stderr}
    return result


# ---- gpus ---------------------------------------------------------------------------------------
def overlaps(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def gpus(out: Path) -> dict[str, Any]:
    # CPU cases last long enough for a node's second Ray worker process to start (seconds on
    # this loaded machine), so that --cpu-slots 2 can show two at once.
    c = cluster({"num_cpus": 4, "num_gpus": 4, "resources": {SLOT_RESOURCE: 1}},
                head={"num_cpus": 2})
    result: dict[str, Any] = {}
    try:
        for slots in (1, 2):
            executor = RayExecutor(RayOptions(case_runner=ray_fakes.sleep_case, cpu_slots=slots))
            executor.probe()
            plan = ([(ray_fakes.fake_case(f"g{i}", 0.5, device="cuda"), 0) for i in range(16)]
                    + [(ray_fakes.fake_case(f"c{i}", 4.0), 0) for i in range(8)])
            records: list[Record] = []
            executor.execute(plan, RunContext("g", out), lambda c, r: None,
                             lambda r, f, into=records: into.append(r))
            per_gpu: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
            per_node: dict[str, list[tuple[float, float]]] = defaultdict(list)
            all_gpu: list[tuple[float, float]] = []
            for r in records:
                fake = r.info["fake"]
                span = (fake["start"], fake["end"])
                if r.params["device"] == "cuda":
                    for g in fake["gpus"]:
                        per_gpu[(r.info["node"]["node_id"], g)].append(span)
                    all_gpu.append(span)
                    assert len(fake["gpus"]) == 1
                    assert fake["cuda_visible_devices"] == fake["gpus"][0]
                else:
                    per_node[r.info["node"]["node_id"]].append(span)
            result[f"cpu_slots_{slots}"] = {
                "gpu_cases": 16, "cpu_cases": 8, "distinct_gpus_used": len(per_gpu),
                "max_cases_at_once_on_one_gpu": max(overlaps(s) for s in per_gpu.values()),
                "max_gpu_cases_at_once": overlaps(all_gpu),
                "max_cpu_cases_at_once_per_node": {k[:8]: overlaps(s)
                                                   for k, s in per_node.items()},
                "cases_per_gpu": {f"{k[0][:6]}:{k[1]}": len(s) for k, s in per_gpu.items()}}
            print(f"  cpu_slots={slots}: {result[f'cpu_slots_{slots}']}", flush=True)
    finally:
        stop(c)
    return result


# ---- scaling ------------------------------------------------------------------------------------
def durations(count: int, mean_s: float, seed: int = 0) -> list[float]:
    """Case durations of a sweep: log-normal (a few slow cases, many quick ones)."""
    rng = random.Random(seed)
    raw = [rng.lognormvariate(0.0, 0.8) for _ in range(count)]
    scale = mean_s / statistics.mean(raw)
    return [d * scale for d in raw]


def simulate(times: list[float], workers: int, driver_s: float, dispatch_s: float) -> float:
    """Wall time of a sweep on `workers` slots when the driver handles each finished case in
    `driver_s` (one at a time) and a sent case starts `dispatch_s` later. Cases go out in
    plan order as slots free, as the executor sends them."""
    pending = list(reversed(times))
    events: list[tuple[float, int]] = []  # (case end, slot)
    driver_free = 0.0
    for slot in range(min(workers, len(pending))):
        driver_free += driver_s  # submitting costs the driver too
        heapq.heappush(events, (driver_free + dispatch_s + pending.pop(), slot))
    end = 0.0
    while events:
        finished, slot = heapq.heappop(events)
        driver_free = max(driver_free, finished) + driver_s  # record stored, next one sent
        end = max(end, driver_free)
        if pending:
            heapq.heappush(events, (driver_free + dispatch_s + pending.pop(), slot))
    return end


def scaling(out: Path, measured: dict[str, Any] | None = None) -> dict[str, Any]:
    ray_module()
    times = durations(64, 0.2)
    result: dict[str, Any] = {"measured": {}, "cases": len(times),
                              "mean_case_s": statistics.mean(times), "max_case_s": max(times)}
    executor = RayExecutor(RayOptions(case_runner=ray_fakes.sleep_case, cpu_slots=32,
                                      local_num_cpus=32))
    try:
        warm = [(ray_fakes.fake_case(f"w{i}", 1.0), 0) for i in range(32)]
        executor.execute(warm, RunContext("w", out), lambda c, r: None, lambda r, f: None)
        for workers in (1, 2, 4, 8, 32):
            executor.options = RayOptions(case_runner=ray_fakes.sleep_case, cpu_slots=workers)
            cases = [ray_fakes.fake_case(f"s{workers}-{i}", d) for i, d in enumerate(times)]
            clock = Times()
            run([fake_suite(out, cases)], cases, RunOptions(out=out / f"w{workers}",
                                                            executor="ray"),
                clock, executor=executor)
            wall = clock.ends[-1] - clock.start
            ideal = max(sum(times) / workers, max(times))
            result["measured"][workers] = {"wall_s": wall, "ideal_s": ideal,
                                           "efficiency": ideal / wall}
            print(f"  {workers:>2} slots: wall {wall:.2f} s, ideal {ideal:.2f} s", flush=True)
    finally:
        executor.close()
    driver_s = (measured or {}).get("memory", {}).get("driver_ms_per_record", 2.0) / 1e3
    dispatch_s = max((measured or {}).get("overhead", {}).get("extra_ms", 20.0), 0.0) / 1e3
    result["model"] = {"driver_s_per_record": driver_s, "dispatch_s": dispatch_s}
    for workers, row in result["measured"].items():  # the model against the measurement
        row["model_s"] = simulate(times, workers, driver_s, dispatch_s)
    result["simulated"] = {}
    for label, count, mean_s in (("short cases (mean 0.2 s)", 2000, 0.2),
                                 ("typical sweep (mean 20 s)", 2000, 20.0)):
        sweep = durations(count, mean_s, seed=1)
        rows = {}
        for workers in (1, 2, 4, 8, 32, 128, 1024):
            wall = simulate(sweep, workers, driver_s, dispatch_s)
            ideal = max(sum(sweep) / workers, max(sweep))
            rows[workers] = {"wall_s": wall, "ideal_s": ideal, "efficiency": ideal / wall,
                             "driver_busy": min(1.0, count * driver_s / wall)}
        result["simulated"][label] = {"cases": count, "rows": rows,
                                      "driver_bound_above_workers": mean_s / driver_s}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", metavar="SECTION",
                        help=f"any of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for run folders and results.json (default: a temp dir)")
    args = parser.parse_args()
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; use {', '.join(SECTIONS)}")
    out = args.out or Path(tempfile.mkdtemp(prefix="archbench-ray-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    path = out / "results.json"
    if path.exists():
        results = json.loads(path.read_text())
    for name in args.sections or SECTIONS:
        print(f"== {name}", flush=True)
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)  # a section starts from empty run folders
        folder.mkdir()
        started = time.time()
        fn = globals()[name]
        results[name] = fn(folder, results) if name == "scaling" else fn(folder)
        results[name]["section_s"] = time.time() - started
        path.write_text(json.dumps(results, indent=2, default=str))
        print(json.dumps(results[name], indent=2, default=str), flush=True)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
