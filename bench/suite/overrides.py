"""What a command line changes in a suite: `KEY=VALUE` settings and case filters. Shared by the
CLI (`--set`, `--filter`) and pytest (`--archbench-set`), so both read them the same way."""

from __future__ import annotations

import fnmatch
import numbers
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from bench.errors import SpecError
from bench.suite.spec import Case


def parse_settings(pairs: Sequence[str], *, option: str = "--set") -> dict[str, Any]:
    """`KEY=VALUE` pairs as settings; VALUE is read as TOML (`2`, `0.5`, `true`), else text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SpecError(f'{option} "{pair}" is not KEY=VALUE, e.g. {option} max_time_s=2')
        try:
            out[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = raw
    return out


def select(cases: Sequence[Case], patterns: Sequence[str]) -> list[Case]:
    """The cases any pattern keeps (all of them when there is no pattern)."""
    if not patterns:
        return list(cases)
    kept = [c for c in cases if any(matches(c, pattern) for pattern in patterns)]
    if not kept:
        raise SpecError(f"--filter {' '.join(patterns)} kept no case; "
                        "see `archbench list` for the names")
    return kept


def matches(case: Case, pattern: str) -> bool:
    """A name substring, a glob over the name, or `KEY=VALUE` on a parameter."""
    return name_or_param_matches(case.name, {**case.params(), "prune": case.prune.method},
                                 pattern)


def name_or_param_matches(name: str, params: Mapping[str, Any], pattern: str) -> bool:
    """`matches` on a name and its parameters (`prune` is the method), wherever they come
    from: a case of a suite, or a row of results. Numbers compare as numbers (`width=256`
    matches a results column that holds 256.0)."""
    key, sep, value = pattern.partition("=")
    if sep:
        actual = params.get(key)
        if isinstance(actual, numbers.Real) and not isinstance(actual, bool):
            try:
                return float(actual) == float(value)
            except ValueError:
                return False
        return str(actual) == value
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name
