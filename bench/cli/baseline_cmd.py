"""`archbench baseline save RUN --name NAME` and `archbench baseline list`.

Baselines live in one folder (default `.archbench/baselines`, or $ARCHBENCH_BASELINES, or
--baselines-dir) that a CI cache or artifact can carry between jobs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from bench.cli.console import console, say, styled
from bench.results.baselines import (
    BASELINES_DIR_HELP,
    BASELINES_ENV,
    baselines_dir,
    list_baselines,
    save,
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "baseline", help="save a run as a named baseline, or list baselines",
        description="Named baselines for `archbench compare`: copies of run folders kept in "
                    f"one folder (default .archbench/baselines, or ${BASELINES_ENV}).")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    save_parser = actions.add_parser("save", help="store a run folder under a name",
                                     description="Copy a run folder (run.json and "
                                                 "results.jsonl) into the baselines folder "
                                                 "as NAME, replacing an older one.")
    save_parser.add_argument("run", type=Path, metavar="RUN", help="run folder to store")
    save_parser.add_argument("--name", required=True, help="baseline name, e.g. main")
    list_parser = actions.add_parser("list", help="list saved baselines")
    list_parser.add_argument("--json", action="store_true", help="print JSON")
    for sub in (save_parser, list_parser):
        sub.add_argument("--baselines-dir", type=Path, metavar="DIR", help=BASELINES_DIR_HELP)
        sub.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    directory = baselines_dir(args.baselines_dir)
    out = console()
    if args.action == "save":
        info = save(args.run, args.name, directory)
        replaced = f" (replaced run {info['replaced']})" if info["replaced"] else ""
        say(f"saved baseline {info['name']}: run {info['run_id']}, {info['cases']} "
                  f"case(s), in {info['path']}{replaced}")
        return 0
    baselines = list_baselines(directory)
    if args.json:
        print(json.dumps(baselines, indent=2))
        return 0
    if not baselines:
        say(f"no baselines in {directory}; save one with `archbench baseline save RUN "
                  "--name NAME`")
        return 0
    table = Table(title=str(directory), title_justify="left")
    for column in ("name", "run", "saved", "suites", "cases", "machine", "commit"):
        table.add_column(column, overflow="fold")
    for b in baselines:
        if "error" in b:
            table.add_row(b["name"], styled((str(b["error"]), "red")), "", "", "", "", "")
            continue
        machine = ", ".join([str(b["cpu_model"] or "?"), *b["gpus"]])
        table.add_row(b["name"], str(b["run_id"]), str(b["saved_at"] or "")[:19],
                      ", ".join(str(s) for s in b["suites"]), f"{b['ok']}/{b['cases']} ok",
                      machine, str(b["git_commit"] or "")[:10])
    out.print(table)
    return 0
