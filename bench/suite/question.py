"""The architect's question as a spec: an objective, constraints ("p99_ms<=5",
"peak_rss_bytes<=2GiB"), how many answers and how sure. Pure, torch-free.

It lives with the suite because a suite may ask it (a `[decide]` table, validated when the
file is loaded, so `archbench run` ends with the answer); `bench.decide` answers it from a
run's results. The grammar and units are here, once, for both.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from bench.errors import BenchError, did_you_mean, one_of


class QuestionError(BenchError):
    """A question that cannot be asked as written (an unknown objective or metric, a metric
    the run did not collect, a unit that does not parse)."""


#: The objectives `best` ranks by, and the column each reads.
OBJECTIVES: dict[str, str] = {
    "median_ms": "median_ms",
    "p99_ms": "p99_ms",
    "throughput": "throughput_items_s",
    "energy_per_item": "energy_per_item_j",
    "peak_memory": "peak_memory_bytes",
}

#: Short names a constraint may use for a column.
ALIASES: dict[str, str] = {
    **{k: v for k, v in OBJECTIVES.items() if k != v},
    "memory_above_runtime": "memory_above_runtime_bytes",
    "top1": "fidelity_top1_agreement",
    "next_token_top1": "fidelity_next_token_top1",
    "kv_cache": "kv_cache_bytes",
    "prefill": "prefill_ms",
}

OPERATORS = ("<=", "<", ">=", ">")
_SPEC = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|<|>|=<|=>)\s*"
                   r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\s\d][^\s]*)?\s*$")

#: Units a constraint's value may carry, by dimension: factor to the dimension's base unit.
_TIME_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0}
_BYTES = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
          "KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30, "TiB": 2 ** 40}
_ENERGY_J = {"J": 1.0, "mJ": 1e-3, "uJ": 1e-6, "µJ": 1e-6, "kJ": 1e3}
_POWER_W = {"W": 1.0, "mW": 1e-3, "kW": 1e3}
_RATE = {"/s": 1.0, "items/s": 1.0, "k/s": 1e3, "M/s": 1e6}
_RATIO = {"%": 0.01}


@dataclass(frozen=True)
class ConstraintText:
    """A constraint split into its parts, the metric's alias resolved."""

    metric: str
    op: str
    number: float
    unit: str


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


def split_constraint(text: str) -> ConstraintText:
    """"p99_ms <= 500us" -> (p99_ms, <=, 500, us); the unit is checked against the metric."""
    match = _SPEC.match(text)
    if not match:
        raise QuestionError(f'constraint "{text}" does not parse; write METRIC<=VALUE[UNIT], '
                            'e.g. "p99_ms<=5", "peak_rss_bytes<=2GiB", '
                            '"fidelity_top1_agreement>=0.99"')
    name, op, number, unit = match.groups()
    parsed = ConstraintText(canonical(name), {"=<": "<=", "=>": ">="}.get(op, op),
                            float(number), unit or "")
    unit_scale(parsed.metric, parsed.unit)
    return parsed


def units_of(name: str) -> tuple[dict[str, float], str]:
    """The units a value for metric `name` may carry (factor to the metric's own unit, read
    from the suffix of its name) and that unit's name."""
    def relative(table: dict[str, float], base: float) -> dict[str, float]:
        return {k: v / base for k, v in table.items()}

    if name.endswith(("_items_s", "_flops_s")):
        return relative(_RATE, 1.0), "per second"
    if name.endswith("_ms"):
        return relative(_TIME_S, 1e-3), "ms"
    if name.endswith("_s"):
        return relative(_TIME_S, 1.0), "s"
    if name.endswith("_bytes"):
        return relative(_BYTES, 1.0), "bytes"
    if name.endswith("_j"):
        return relative(_ENERGY_J, 1.0), "J"
    if name.endswith("_w"):
        return relative(_POWER_W, 1.0), "W"
    if name.startswith("fidelity_") or name.endswith("_agreement"):
        return relative(_RATIO, 1.0), "a fraction"
    return {}, "its own unit"


def unit_scale(name: str, unit: str) -> float:
    """The factor turning a value in `unit` into metric `name`'s own unit (1 without one).
    Case is forgiven except for bytes, where mb and Mb are not MB."""
    if not unit:
        return 1.0
    table, own = units_of(name)
    if unit in table:
        return table[unit]
    lower = {k.lower(): v for k, v in table.items()}
    if unit.lower() in lower and not name.endswith("_bytes"):
        return lower[unit.lower()]
    allowed = one_of(list(table)) if table else "no unit"
    raise QuestionError(f'unit "{unit}" does not parse for {name} (in {own}); use '
                        f"{allowed}{did_you_mean(unit, table)}")


@dataclass(frozen=True)
class Question:
    """What to optimise, under which constraints, how sure, how many answers. Constraints
    are checked for syntax and units here; whether the run has the metric, when answering."""

    objective: str = "median_ms"
    constraints: tuple[str, ...] = ()
    top: int = 5
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise QuestionError(f"unknown objective {self.objective!r}"
                                f"{did_you_mean(self.objective, OBJECTIVES)}; objectives are "
                                f"{one_of(OBJECTIVES)}")
        if not 0.5 <= self.confidence < 1:
            raise QuestionError(f"confidence {self.confidence}: use a value in [0.5, 1), "
                                "e.g. 0.95")
        if self.top < 1:
            raise QuestionError(f"top {self.top}: ask for at least one answer")
        object.__setattr__(self, "constraints", tuple(
            part.strip() for text in self.constraints for part in text.split(",")
            if part.strip()))
        for text in self.constraints:
            split_constraint(text)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["constraints"] = list(self.constraints)
        return out
