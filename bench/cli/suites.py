"""Loading suites the way every command does: overrides, then --filter."""

from __future__ import annotations

import argparse
import fnmatch
import tomllib
from collections.abc import Sequence
from typing import Any

from bench import suite_file
from bench.errors import SpecError
from bench.spec import Case, Suite


def add_suite_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suites", nargs="+", metavar="SUITE", help="suite TOML file(s)")
    parser.add_argument("--filter", "-k", action="append", default=[], metavar="PATTERN",
                        help="keep cases whose name contains PATTERN (glob with * ? []), or "
                             "whose parameter matches KEY=VALUE; repeat to keep more")
    parser.add_argument("--device", action="append", metavar="DEVICE",
                        help="replace the suite's device axis (cpu, cuda, cuda:N); repeatable")
    parser.add_argument("--max-time", type=float, metavar="SECONDS",
                        help="override max_time_s, the per-case measuring limit")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        dest="settings", help="override a measurement setting, e.g. "
                                              "--set min_time_s=0.2 --set threads=4")


def load_suites(args: argparse.Namespace) -> tuple[list[Suite], list[Case]]:
    axis_overrides = {"device": args.device} if args.device else None
    settings = parse_settings(args.settings)
    if args.max_time is not None:
        settings["max_time_s"] = args.max_time
    suites = [suite_file.load(path, axis_overrides=axis_overrides, settings_overrides=settings)
              for path in args.suites]
    cases = [case for suite in suites for case in suite.cases]
    if args.filter:
        cases = [c for c in cases if any(matches(c, pattern) for pattern in args.filter)]
        if not cases:
            raise SpecError(f"--filter {' '.join(args.filter)} kept no case; "
                            "see `archbench list` for the names")
    return suites, cases


def parse_settings(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SpecError(f'--set "{pair}" is not KEY=VALUE, e.g. --set max_time_s=2')
        try:
            out[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = raw
    return out


def matches(case: Case, pattern: str) -> bool:
    key, sep, value = pattern.partition("=")
    if sep:
        params = case.params()
        actual = case.prune.method if key == "prune" else params.get(key)
        return str(actual) == value
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(case.name, pattern)
    return pattern in case.name
