"""Counting instructions instead of timing: the loop that runs inside the counting worker.

The counting worker is one Python process started under
`valgrind --tool=callgrind --collect-atstart=no`: callgrind instruments everything but counts
nothing until told to. It imports torch once (minutes under valgrind) and then takes cases one
after another; each case is built and prepared outside collection, and torch's own valgrind
support (`torch._C._valgrind_toggle`, `_valgrind_toggle_and_dump_stats`) switches counting on
only around the measured calls. Every sample is one dump file; its total is read back here.

Instruction counts do not depend on the machine's load or clock, only on the code path, so
they repeat to hundredths of a percent (a few tenths on the smallest cases) where wall time
drifts by tens of percent. Threads are fixed to one: with several, the work split and
spin-waits make counts vary.
"""

from __future__ import annotations

import gc
import shutil
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bench.measure.callgrind import dump_path, read_total

COUNTER = "callgrind"


@dataclass(frozen=True)
class CountResult:
    """Raw counts of one case: `samples[i]` instructions for `calls` calls, and `overhead`,
    the same loop around a no-op (toggles, loop, call), subtracted per sample."""

    samples: tuple[int, ...]
    overhead: int
    calls: int
    warmup_iters: int
    counter: str = COUNTER

    @property
    def per_call(self) -> list[float]:
        return [(s - self.overhead) / self.calls for s in self.samples]

    def metrics(self, batch_size: int) -> dict[str, float]:
        """The record's metrics: median per call and per item, and the samples' spread
        (max - min over the median, in percent), which says how deterministic they were."""
        per_call = self.per_call
        median = statistics.median(per_call)
        spread = (max(per_call) - min(per_call)) / median * 100 if median else 0.0
        return {"instructions_per_call": median,
                "instructions_per_item": median / batch_size,
                "instructions_spread_pct": spread}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["samples"] = list(self.samples)
        out["per_call"] = self.per_call
        return out


class Dumps:
    """Counts one sample at a time through callgrind's client requests and reads its dump.

    `base` is callgrind's `--callgrind-out-file` as this process sees it (with `%p`
    expanded); the n-th dump of the process is `base.n`, numbered across cases.
    """

    def __init__(self, base: str | Path) -> None:
        if not torch._C._valgrind_supported_platform():
            raise RuntimeError("this torch build has no valgrind support "
                               "(torch._C._valgrind_supported_platform() is False)")
        self.base = Path(base)
        self.part = 0

    def sample(self, fn: Callable[[], Any], calls: int) -> tuple[int, Path]:
        """Instructions executed by `calls` calls of `fn`, and the dump they are in."""
        toggle, dump = torch._C._valgrind_toggle, torch._C._valgrind_toggle_and_dump_stats
        toggle()
        for _ in range(calls):
            fn()
        dump()
        self.part += 1
        path = dump_path(self.base, self.part)
        return read_total(path, part=self.part), path


def count(fn: Callable[[], Any], dumps: Dumps, *, calls: int, samples: int, warmup_iters: int,
          on_phase: Callable[[str], None] | None = None,
          keep: Path | None = None) -> CountResult:
    """Warm up, then count `samples` samples of `calls` calls each.

    Python's garbage collector is off while counting (a collection inside a sample would add
    its work to that sample) and runs before each sample. `keep`, when given, receives the
    dump of the median sample, for `callgrind_annotate` (which function got heavier); the
    other dumps are deleted.
    """
    phase = on_phase or (lambda name: None)
    phase("warmup")
    for _ in range(max(1, warmup_iters)):
        fn()
    phase("timed")
    counts: list[int] = []
    paths: list[Path] = []
    was_enabled = gc.isenabled()
    try:
        gc.collect()
        gc.disable()
        overhead, overhead_path = dumps.sample(_noop, calls)
        paths.append(overhead_path)
        for _ in range(samples):
            gc.collect()
            total, path = dumps.sample(fn, calls)
            counts.append(total)
            paths.append(path)
    finally:
        if was_enabled:
            gc.enable()
    result = CountResult(samples=tuple(counts), overhead=overhead, calls=calls,
                         warmup_iters=max(1, warmup_iters))
    median_index = sorted(range(len(counts)), key=counts.__getitem__)[len(counts) // 2]
    for i, path in enumerate(paths[1:]):
        if keep is not None and i == median_index:
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, keep)
        else:
            path.unlink(missing_ok=True)
    overhead_path.unlink(missing_ok=True)
    return result


def _noop() -> None:
    return None
