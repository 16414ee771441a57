"""`archbench export RUN --pytest-benchmark FILE`: a run as pytest-benchmark JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.cli.console import say
from bench.results.baselines import BASELINES_DIR_HELP, baselines_dir, resolve
from bench.results.pytest_benchmark import export


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "export", help="write a run in another tool's format",
        description="Write a run (folder or baseline name) as pytest-benchmark JSON, which "
                    "`pytest-benchmark compare` and tools built for it can read.")
    parser.add_argument("run", metavar="RUN", help="run folder or baseline name")
    parser.add_argument("--pytest-benchmark", type=Path, required=True, metavar="FILE",
                        help="pytest-benchmark JSON file to write ('-' for stdout)")
    parser.add_argument("--baselines-dir", type=Path, metavar="DIR", help=BASELINES_DIR_HELP)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    run = resolve(args.run, baselines_dir(args.baselines_dir))
    text = json.dumps(export(run.records, run.meta), indent=2)
    if str(args.pytest_benchmark) == "-":
        print(text)
        return 0
    args.pytest_benchmark.parent.mkdir(parents=True, exist_ok=True)
    args.pytest_benchmark.write_text(text + "\n")
    measured = sum(r.status == "ok" and bool(r.samples_ns) for r in run.records)
    say(f"wrote {measured} benchmark(s) to {args.pytest_benchmark}")
    return 0
