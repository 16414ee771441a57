"""`bench.compare.compare_runs`, the public name of the regression gate (`bench.gate.compare`)."""

from bench.gate.compare import CompareOptions, Comparison, MetricVerdict, compare_runs

__all__ = ["CompareOptions", "Comparison", "MetricVerdict", "compare_runs"]
