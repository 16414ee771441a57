"""The `archbench` command line: the only place that prints for humans and picks exit codes.

Exit codes: 0 success; 1 the command ran but found a problem in the results (a case failed,
crashed, ran out of memory or timed out; a regression); 2 bad input or usage, or a file or
folder that cannot be read or written (the message says which path, key and fix); 130
interrupted by Ctrl-C, 143 by SIGTERM (finished work is saved).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from bench import files
from bench._version import __version__
from bench.cli.console import say
from bench.errors import BenchError

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Each module defines `register(subparsers)`, which adds its parser and sets `handler`.
COMMAND_MODULES = ("bench.cli.run_cmd", "bench.cli.list_cmd", "bench.cli.calibrate_cmd",
                   "bench.cli.compare_cmd", "bench.cli.baseline_cmd", "bench.cli.export_cmd",
                   "bench.cli.report_cmd", "bench.cli.best_cmd", "bench.cli.history_cmd",
                   "bench.cli.ab_cmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archbench",
        description="Benchmark PyTorch model architectures: sweep depth, width, pruning, "
                    "precision and compile on CPU and CUDA, measured honestly.",
        epilog="Exit codes: 0 ok; 1 a case failed or a regression was found; 2 bad input; "
               "130 interrupted (143 by SIGTERM).")
    parser.add_argument("--version", action="version", version=f"archbench {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except BenchError as exc:
        say(("error:", "bold red"), f" {exc}", err=True)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:  # before a run folder was open: nothing to resume
        say(("interrupted", "yellow"), err=True)
        return 128 + getattr(exc, "signum", EXIT_INTERRUPTED - 128)
    except BrokenPipeError:  # `archbench list ... | head`
        sys.stderr.close()
        return EXIT_OK
    except (OSError, UnicodeDecodeError) as exc:  # a file or folder archbench could not use
        say(("error:", "bold red"), f" {files.problem(exc)}", err=True)
        return EXIT_USAGE
