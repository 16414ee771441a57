"""Place a case's worker on its CPUs, away from the parent's samplers, and say where it ran.

The worker process pins itself (before torch starts its thread pool, whose threads inherit
the mask) to `bench.env.measuring_cpus()`: every CPU but the one the parent's sampler
threads take. Records carry what was done (`info.cpu_affinity`), and why nothing was where
that is so (pinning off, one CPU, an OS without affinity, inline runs in the caller's
process, which is left as it is).
"""

from __future__ import annotations

import os
from typing import Any

from bench.env import measuring_cpus, pin_current_thread
from bench.suite.spec import Settings

_state: dict[str, Any] = {"pinned": False,
                          "why": "inline: the case ran in the caller's process, whose CPUs "
                                 "are left as they are"}


def pin(settings: Settings) -> dict[str, Any]:
    """Pin this (worker) process to its measuring CPUs, if the settings ask; return what was
    done."""
    global _state
    cpus, spare = measuring_cpus()
    if not settings.pin_cpus:
        _state = {"pinned": False, "why": "pin_cpus = false", "cpus": _allowed()}
    elif spare is None:
        _state = {"pinned": False, "cpus": list(cpus),
                  "why": "one CPU: the worker and the parent's samplers share it"}
    else:
        problem = pin_current_thread(cpus)
        _state = {"pinned": problem is None, "cpus": list(cpus) if problem is None
                  else _allowed(), "sampler_cpu": spare}
        if problem is not None:
            _state["why"] = problem
    return dict(_state)


def state() -> dict[str, Any]:
    """What `pin` did in this process (for the record)."""
    return dict(_state)


def _allowed() -> list[int] | None:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
