"""Which metrics the gate compares, how, and how far each may move. Pure: no I/O, no torch.

Every gated metric has a kind, which fixes how a change is judged:

- `timing`: raw samples on both sides; a regression needs the effect (median moved by at
  least the threshold, in percent) *and* the evidence after correction across cases: a
  one-sided Welch's t-test on the per-repeat medians when both sides have enough repeats,
  else a one-sided Mann–Whitney U on the raw samples (see `bench.gate.significance`).
- `exact`: deterministic counts (parameters, FLOPs); any change beyond the threshold
  (default 0%: none at all) is a verdict.
- `memory`: peaks that move a little from run to run (allocator, page cache); a relative
  tolerance.
- `fidelity`: errors against the fp32 reference; an absolute tolerance, since a relative
  change of an error near zero means nothing.
- `counts`: instructions counted under callgrind (measure = "instructions"). They repeat to
  hundredths of a percent whatever the machine's load, so no test is needed: the change
  against a small relative tolerance (default 0.5%) is the verdict; the samples' spread is
  reported.

Threshold specs (CLI `--threshold`, pytest `--archbench-fail`), comma-separated, later rules
winning::

    5%                     the timing threshold (median_ms)
    median_ms=3%           one metric
    memory=20%             every metric of a kind (timing, exact, memory, fidelity, counts)
    cnn-*:median_ms=10%    only cases whose name matches the glob (or whose case_id is it)
    fidelity_rel_l2=0.01   an absolute tolerance (fidelity metrics take no %)
    params_total=off       do not gate this metric
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from bench.errors import CompareError, did_you_mean, one_of

#: How a threshold spec reads, for every front end that takes one.
THRESHOLD_HELP = ('how far a metric may move: "5%%" (timing), "median_ms=3%%", "memory=20%%", '
                  '"cnn-*:median_ms=10%%", "fidelity_rel_l2=0.01", "params_total=off"; '
                  "comma-separate or repeat, later rules win")

KINDS = ("timing", "exact", "memory", "fidelity", "counts")


@dataclass(frozen=True)
class MetricSpec:
    """How one metric is judged. `threshold` is a percent for relative kinds and an absolute
    amount for fidelity; `lower_is_better` gives the direction of a regression."""

    name: str
    kind: str
    threshold: float
    lower_is_better: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown metric kind {self.kind!r}; kinds are {KINDS}")

    @property
    def absolute(self) -> bool:
        return self.kind == "fidelity"


_METRICS: dict[str, MetricSpec] = {}


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Gate another metric (a collector's new column); names must be unique."""
    if spec.name in _METRICS:
        raise ValueError(f"metric {spec.name!r} is already registered")
    _METRICS[spec.name] = spec
    return spec


def metric_specs() -> Mapping[str, MetricSpec]:
    return MappingProxyType(_METRICS)


TIMING_METRIC = "median_ms"
register_metric(MetricSpec(TIMING_METRIC, "timing", 5.0))
for _name in ("params_total", "params_nonzero", "weight_bytes", "buffer_bytes",
              "flops_per_item"):
    register_metric(MetricSpec(_name, "exact", 0.0))
# Peaks of this process only; device-wide NVML usage includes other processes and is left out.
for _name in ("peak_rss_bytes", "peak_rss_timed_bytes", "ru_maxrss_bytes",
              *(f"cuda_max_{what}_{phase}_bytes" for what in ("allocated", "reserved")
                for phase in ("build", "warmup", "timed")),
              "nvml_process_used_bytes"):
    register_metric(MetricSpec(_name, "memory", 10.0))
#: Per call only: per item is the same number divided by the batch, and would be a second
#: verdict for one change.
COUNT_METRIC = "instructions_per_call"
register_metric(MetricSpec(COUNT_METRIC, "counts", 0.5))
register_metric(MetricSpec("fidelity_rel_l2", "fidelity", 1e-3))
register_metric(MetricSpec("fidelity_max_abs", "fidelity", 1e-2))
register_metric(MetricSpec("fidelity_cosine", "fidelity", 1e-4, lower_is_better=False))
register_metric(MetricSpec("fidelity_top1_agreement", "fidelity", 0.01, lower_is_better=False))


@dataclass(frozen=True)
class ThresholdRule:
    """One parsed spec. `target` is a metric name, a kind, or None (the timing metric);
    `value` None switches the metric off; `pattern` None matches every case."""

    target: str | None
    value: float | None
    pattern: str | None = None
    text: str = ""

    def matches(self, metric: MetricSpec, name: str, case_id: str) -> bool:
        if self.pattern is not None and not (fnmatch.fnmatchcase(name, self.pattern) or
                                             self.pattern == case_id):
            return False
        if self.target is None:
            return metric.name == TIMING_METRIC
        return self.target in (metric.name, metric.kind)


_VALUE = re.compile(r"^(?P<number>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<pct>%?)$")


def parse_thresholds(specs: str | Iterable[str]) -> tuple[ThresholdRule, ...]:
    """Rules from one comma-separated spec or several; errors name the bad part and the fix."""
    parts = [specs] if isinstance(specs, str) else list(specs)
    rules = []
    for part in parts:
        rules += [parse_rule(item.strip()) for item in part.split(",") if item.strip()]
    return tuple(rules)


def parse_rule(text: str) -> ThresholdRule:
    pattern: str | None = None
    body = text
    if ":" in body:
        pattern, _, body = body.partition(":")
        pattern = pattern.strip()
        if not pattern:
            raise CompareError(f'threshold "{text}": empty case pattern before ":"; write '
                               'e.g. "cnn-*:median_ms=10%"')
    target: str | None = None
    raw = body.strip()
    if "=" in body:
        target, _, raw = (s.strip() for s in body.partition("="))
        known = [*KINDS, *_METRICS]
        if target not in known:
            raise CompareError(f'threshold "{text}": unknown metric "{target}"'
                               f"{did_you_mean(target, known)}; use a kind ({one_of(KINDS)}) "
                               "or a metric: " + ", ".join(sorted(_METRICS)))
    if raw.lower() == "off":
        return ThresholdRule(target=target, value=None, pattern=pattern, text=text)
    match = _VALUE.match(raw)
    if not match:
        raise CompareError(f'threshold "{text}": "{raw}" is not a number; write e.g. "5%" '
                           '(relative), "0.001" (absolute, fidelity) or "off"')
    value = float(match["number"])
    absolute = target == "fidelity" or (target in _METRICS and _METRICS[target].absolute)
    if absolute and match["pct"]:
        raise CompareError(f'threshold "{text}": fidelity metrics take an absolute tolerance; '
                           f'drop the "%" (e.g. "{target}=0.001")')
    if not absolute and not match["pct"]:
        raise CompareError(f'threshold "{text}": a relative threshold needs its unit; write '
                           f'"{raw}%" (the change in percent)')
    if not math.isfinite(value):
        raise CompareError(f'threshold "{text}": must be finite')
    return ThresholdRule(target=target, value=value, pattern=pattern, text=text)


def threshold_for(metric: MetricSpec, name: str, case_id: str,
                  rules: Iterable[ThresholdRule]) -> float | None:
    """The threshold for a metric of a case: the last matching rule, else the default.
    None means the metric is not gated for that case."""
    value: float | None = metric.threshold
    for rule in rules:
        if rule.matches(metric, name, case_id):
            value = rule.value
    return value
