"""The environment a run measured in: everything that moves the numbers, recorded with them.

Two halves: `host_info()` runs in the parent and never imports torch (so the parent never
initialises CUDA before workers fork); `torch_info()` runs inside a worker. `fingerprint()`
picks the keys that must match for two runs to be comparable.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

#: Keys whose values must agree for two runs to be compared (see bench.gate.compare).
#: `counter`: what counted instructions ("callgrind 3.19.0 isa=sse4.2"), on counted runs.
FINGERPRINT_KEYS = ("cpu_model", "gpus", "torch_version", "cuda_version", "threads", "counter")


def host_info(cwd: str | Path | None = None) -> dict[str, Any]:
    """Machine, OS, Python, CPU, GPUs (through NVML, never CUDA) and the git state."""
    cpu_freq = safe(psutil.cpu_freq)
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "user": safe(getpass.getuser),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "cpu_model": cpu_model(),
        "cpu_count_logical": psutil.cpu_count(logical=True),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "cpu_freq_max_mhz": getattr(cpu_freq, "max", None) or None,
        "cpu_governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "cpu_flags": sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "avx512_fp16",
                                           "amx_bf16", "amx_int8", "amx_tile", "f16c", "fma"}),
        "memory_total_bytes": psutil.virtual_memory().total,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    info["gpus"], info["gpu_error"] = nvml_gpus()
    info.update(git_state(cwd))
    return info


def measuring_cpus() -> tuple[tuple[int, ...], int | None]:
    """The CPUs a case's worker measures on, and the one left to the parent's samplers.

    All the CPUs this process may use but the last, which the parent's sampler threads get:
    a worker whose threads fill every CPU has one of them preempted whenever the parent
    samples, and a thread pool waits for its slowest thread (on two CPUs, two threads
    scattered 12% between workers where one thread pinned away from the samplers did not).
    With one CPU there is nothing to leave: the worker gets it and the samplers share it.
    Where the OS gives no affinity (macOS), the CPUs are counted and nothing can be pinned.
    """
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = list(range(os.cpu_count() or 1))
    if len(allowed) < 2:
        return tuple(allowed), None
    return tuple(allowed[:-1]), allowed[-1]


def auto_threads() -> int:
    """The thread count of a case whose `threads` is not set: one per physical core of the
    measuring CPUs — torch's own default counts physical cores, since two threads on the
    siblings of one core share it — less the core the parent's samplers take."""
    cpus, spare = measuring_cpus()
    logical, physical = psutil.cpu_count(logical=True), psutil.cpu_count(logical=False)
    siblings = max(1, (logical or 1) // (physical or logical or 1))
    cores = (len(cpus) + (spare is not None)) // siblings - (spare is not None)
    return max(1, min(len(cpus), cores))


def pin_current_thread(cpus: tuple[int, ...] | list[int]) -> str | None:
    """Pin the calling thread (Linux: sched_setaffinity of pid 0 is the calling thread) to
    `cpus`; None when done, else why not."""
    if not hasattr(os, "sched_setaffinity"):
        return "this OS does not let a process choose its CPUs"
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:
        return f"sched_setaffinity failed: {exc}"
    return None


def fingerprint(env: Mapping[str, Any]) -> dict[str, Any]:
    """The comparable subset; `gpus` reduced to names so serial numbers do not differ."""
    out = {key: env.get(key) for key in FINGERPRINT_KEYS}
    if out["counter"] is None:  # timed runs: the same fingerprint (and hash) as before counting
        del out["counter"]
    out["gpus"] = sorted(g.get("name", "") for g in env.get("gpus") or [])
    return out


def hardware_hash(env: Mapping[str, Any]) -> str:
    """The fingerprint without the thread count: two nodes (or a node and a machine) with
    the same value are the same hardware and software, whatever threads a run chose."""
    payload = json.dumps({k: v for k, v in fingerprint(env).items() if k != "threads"},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def fingerprint_hash(env: Mapping[str, Any]) -> str:
    payload = json.dumps(fingerprint(env), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# ---- pieces ---------------------------------------------------------------------------------
def cpu_model() -> str:
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def nvml_gpus() -> tuple[list[dict[str, Any]], str | None]:
    """GPU names, UUIDs and driver through NVML; ([], reason) when NVML cannot answer."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError has many subclasses; all mean "no NVML here"
        return [], f"NVML unavailable: {exc}"
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append({"index": index, "name": _text(pynvml.nvmlDeviceGetName(handle)),
                         "uuid": _text(pynvml.nvmlDeviceGetUUID(handle)), "driver": driver})
        return gpus, None
    except Exception as exc:
        return [], f"NVML query failed: {exc}"
    finally:
        safe(pynvml.nvmlShutdown)


def git_state(cwd: str | Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the repository around `cwd`, or Nones outside a repository."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                  timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": bool(status) if commit else None,
            "git_branch": git("rev-parse", "--abbrev-ref", "HEAD") if commit else None}


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:
        return None
