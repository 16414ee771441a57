"""Loading suites the way every command does: overrides, then --filter."""

from __future__ import annotations

import argparse
from typing import Any

from bench.suite import loader
from bench.suite.overrides import parse_settings, select
from bench.suite.spec import Case, Suite


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


def add_measure_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--measure", choices=("time", "instructions"),
                        help="time the cases (default) or count their instructions under "
                             "callgrind: CPU cases, one thread, repeatable to hundredths of a "
                             "percent on a loaded machine (the same as --set "
                             "measure=instructions)")


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """The setting overrides of --set, --max-time and (where the command has it) --measure."""
    settings = parse_settings(args.settings)
    if args.max_time is not None:
        settings["max_time_s"] = args.max_time
    if getattr(args, "measure", None):
        settings["measure"] = args.measure
    return settings


def load_suites(args: argparse.Namespace) -> tuple[list[Suite], list[Case]]:
    axis_overrides = {"device": args.device} if args.device else None
    settings = settings_from(args)
    suites = [loader.load(path, axis_overrides=axis_overrides, settings_overrides=settings)
              for path in args.suites]
    return suites, select([case for suite in suites for case in suite.cases], args.filter)
