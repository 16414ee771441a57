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
    """Load one or more run folders (or results.jsonl files) as a pandas DataFrame."""
    from bench.results.frame import load as _load

    return _load(paths)


def best(runs: Any, objective: str = "median_ms", constraints: Any = (), top: int = 5,
         confidence: float = 0.95) -> pd.DataFrame:
    """The best configurations meeting every constraint with confidence, ranked (see
    `bench.decide.answer` for the uncertain cases, why-not, Pareto set and boundaries)."""
    from bench.decide import best as _best

    return _best(runs, objective, constraints, top, confidence)
