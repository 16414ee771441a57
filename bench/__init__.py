"""archbench: benchmark and profile PyTorch model architectures across sweeps.

Import-light on purpose (no torch): `import bench` is cheap, and the parent process of a run
never initialises CUDA before its workers fork.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench._version import __version__

__all__ = ["__version__", "best", "load"]

if TYPE_CHECKING:
    import pandas as pd


def load(paths: Any) -> pd.DataFrame:
    """Load one or more run folders (or results.jsonl files) as a pandas DataFrame.

    One row per case: its parameters (`model`, `depth`, ..., `prune_method`), the statistics
    with units in their names (`median_ms` — the case's level across its workers —, its
    interval `ci_low_ms`/`ci_high_ms`, percentiles, `throughput_items_s`), every metric the
    case recorded (parameters, FLOPs, fidelity, memory, energy...), the raw samples
    (`samples_ms`) and dict columns for the telemetry timeline, the profile and each
    collector's status. Several runs load into one frame; `run_id` tells them apart. A
    damaged file is an error naming the line and the field; a truncated last line (a run
    killed mid-write) is skipped with a warning.

    `paths`: a run folder, a results.jsonl file, or a list of them.
    """
    from bench.results.frame import load as _load

    return _load(paths)


def best(runs: Any, objective: str = "median_ms", constraints: Any = (), top: int = 5,
         confidence: float = 0.95) -> pd.DataFrame:
    """The best configurations meeting every constraint with confidence, ranked.

    `runs`: a run folder, several, or a `bench.load()` DataFrame. `objective`: `median_ms`,
    `p99_ms`, `energy_per_item` or `peak_memory` (lowest first) or `throughput` (highest
    first). `constraints`: strings `METRIC<=VALUE[UNIT]` (also `<`, `>=`, `>`) on any column,
    e.g. `"p99_ms<=5"`, `"memory_above_runtime<=512MiB"`, `"fidelity_top1_agreement>=0.99"`.
    A timing constraint counts as met only when its `confidence` interval meets it.

    Returns a DataFrame: rank (ties share it), name, knobs, the objective with its interval,
    fidelity, memory above the runtime and the speed-up over the fp32 unpruned twin.
    `bench.decide.answer` gives the whole answer: the uncertain cases, why the others are
    out, the Pareto set and the scaling boundaries."""
    from bench.decide import best as _best

    return _best(runs, objective, constraints, top, confidence)
