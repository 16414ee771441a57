"""`archbench calibrate`: measure this machine's matmul and copy peaks once, for the roofline."""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any

from rich.table import Table

from bench import env
from bench.cli.console import console, say
from bench.collectors import peaks_cache
from bench.engine.process import ProcessBackend
from bench.engine.runner import probe_torch
from bench.errors import BenchError
from bench.measure.entry import measure_peaks

#: A full calibration takes seconds per device; this bounds a stuck one.
CALIBRATE_TIMEOUT_S = 900.0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "calibrate", help="measure this machine's peak FLOP/s and bandwidth (for the roofline)",
        description="Measure a large matmul per dtype and a large copy on the CPU and on every "
                    "visible GPU, and cache the peaks per environment fingerprint, so runs can "
                    "report each case's fraction of the attainable peak.",
        epilog=f"Cache: {peaks_cache.cache_dir()}/calibration/<fingerprint>.json (set "
               "ARCHBENCH_CACHE_DIR to move it). The fingerprint includes the thread count: "
               "calibrate with the threads your suites use.")
    parser.add_argument("--device", action="append", metavar="DEVICE",
                        help="cpu, cuda or cuda:N (repeatable; default: cpu and every GPU)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch threads on the CPU (default: as cases use them, one per CPU "
                             "but the one left to the parent's samplers)")
    parser.add_argument("--force", action="store_true",
                        help="measure again even when a calibration exists")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds in all: checks the command, not the machine "
                             "(shown, never saved)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise BenchError(f"--threads {args.threads}: give a positive thread count")
    backend = ProcessBackend("forkserver")
    torch_side = probe_torch(backend)
    if "torch_probe_error" in torch_side:
        raise BenchError(f"cannot start a worker to calibrate: {torch_side['torch_probe_error']}")
    threads = args.threads or env.auto_threads()
    environment = {**env.host_info(), **torch_side, "threads": threads}
    devices = args.device or ["cpu", *[f"cuda:{d['index']}" for d in
                                       torch_side.get("cuda_devices", [])]]
    for device in devices:
        if device.partition(":")[0] not in ("cpu", "cuda"):
            raise BenchError(f'--device "{device}": use cpu, cuda or cuda:N')
        if device.startswith("cuda") and not torch_side.get("cuda_available"):
            raise BenchError(f"--device {device}: no CUDA device is available here")
    path = peaks_cache.path_for(environment)
    existing, _ = peaks_cache.load(environment)

    if existing is not None and not args.force and _covers(existing, devices):
        say(f"calibration exists for this environment: {path} (--force to redo)")
        show(existing)
        return 0
    say(f"calibrating {', '.join(devices)} at {threads} thread(s)...")
    measure = partial(measure_peaks, devices, args.threads, args.quick)
    try:
        data = backend.call(measure, timeout_s=CALIBRATE_TIMEOUT_S)
    except Exception as exc:
        raise BenchError(f"calibration failed: {type(exc).__name__}: {exc}") from None
    show(data)
    if args.quick:
        say("quick calibration: not saved (its sizes are too small to be peaks)")
        return 0
    if existing is not None and not args.force:
        data["devices"] = {**existing.get("devices", {}), **data["devices"]}
    say(f"saved: {peaks_cache.save(data, environment)}")
    return 0


def _covers(data: dict[str, Any], devices: list[str]) -> bool:
    from bench.collectors.roofline import device_key

    return all(device_key(d) in (data.get("devices") or {}) for d in devices)


def show(data: dict[str, Any]) -> None:
    table = Table(title_justify="left")
    for column in ("device", "name", "dtype", "matmul TFLOP/s", "n", "copy GB/s"):
        table.add_column(column)
    for device, entry in (data.get("devices") or {}).items():
        for index, (dtype, rate) in enumerate(entry.get("matmul_flops_s", {}).items()):
            table.add_row(device if index == 0 else "", entry.get("name", "") if index == 0
                          else "", dtype, f"{rate / 1e12:.3f}",
                          str(entry.get("matmul_n", {}).get(dtype, "")),
                          f"{entry.get('copy_bytes_s', 0) / 1e9:.1f}" if index == 0 else "")
    console().print(table)
