"""`archbench list`: the expanded cases of suites, without running anything."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from bench.cli.console import console, say
from bench.cli.suites import add_suite_arguments, load_suites


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("list", help="print the cases a suite expands to",
                                 description="Print the cases of suites without running them.")
    add_suite_arguments(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per case")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    suites, cases = load_suites(args)
    if args.json:
        for case in cases:
            print(json.dumps(case.to_dict(), sort_keys=True))
        return 0
    table = Table(title=(", ".join(f"{s.name} ({s.path})" for s in suites)),
                  title_justify="left")
    for column in ("#", "case id", "name", "sweep"):
        table.add_column(column, overflow="fold")
    for index, case in enumerate(cases, start=1):
        table.add_row(str(index), case.case_id, case.name, case.sweep)
    out = console()
    out.print(table)
    dropped = sum(s.duplicates_dropped for s in suites)
    say(f"{len(cases)} case(s)" + (f"; {dropped} duplicate(s) of earlier blocks dropped"
                                        if dropped else ""))
    return 0
