"""pytest integration (entry point `pytest11: archbench`): a thin adapter over runner/compare.

- `pytest suites/` collects suite files (TOML with a `[suite]` table and `[[sweep]]` blocks,
  or any TOML named on the command line); each case is an item named by the case name,
  measured through the same runner and worker isolation as `archbench run`, into one run
  folder. `unsupported` skips with the reason; failed/oom/crashed/timeout fails with the
  message. Nothing else is collected: Python test collection is untouched.
- `--archbench-baseline NAME|PATH` compares the run with a baseline at the end;
  `--archbench-fail SPEC` makes each regressed case a failing item with the comparison in
  its message. Since the correction across cases needs every case's p-value, with
  `--archbench-fail` all selected cases are measured first (progress is printed), then the
  items report.
- The `archbench(module, example_input, **case_options)` fixture measures a module in this
  process with the worker's engine and returns the Record, also stored in the run folder.
  Its records are gated together at the end of the session (their tests have already
  reported by then): a regression there is listed and fails the session (exit code 1).
- `--archbench-report HTML` writes the HTML report at the end; `--archbench-benchmark-json`
  writes pytest-benchmark JSON. Neither touches pytest-benchmark's own `benchmark` fixture
  or `--benchmark-*` options.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.engine.backends import ISOLATION_HELP, ISOLATION_MODES
from bench.engine.executor import EXECUTORS
from bench.errors import BenchError
from bench.gate.thresholds import THRESHOLD_HELP
from bench.pytest.fixture import archbench
from bench.pytest.items import PLUGIN_NAME, SuiteFile, looks_like_suite, named_on_command_line
from bench.pytest.session import PluginState
from bench.results.baselines import BASELINES_DIR_HELP

__all__ = ["archbench", "pytest_addoption", "pytest_collect_file", "pytest_configure"]


# ---- options --------------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("archbench", "archbench: suites as tests and the regression gate")
    group.addoption("--archbench-out", metavar="RUN_DIR",
                    help="run folder for this session's results (default "
                         "reports/runs/<time>-<suite>)")
    group.addoption("--archbench-baseline", metavar="NAME_OR_PATH",
                    help="compare with this baseline (a name from `archbench baseline list` "
                         "or a run folder)")
    group.addoption("--archbench-ab", metavar="REF|DIR|PYTHON",
                    help="measure the suite cases side by side with this baseline version (a "
                         "git revision, a folder or a Python interpreter) in one run, pair by "
                         "pair, as `archbench ab` does; the gate then tests the pairs")
    group.addoption("--archbench-fail", metavar="SPEC",
                    help=f"fail regressed cases; SPEC: {THRESHOLD_HELP}")
    group.addoption("--archbench-report", metavar="HTML",
                    help="write the HTML report of the run (and the baseline) at the end")
    group.addoption("--archbench-benchmark-json", metavar="PATH",
                    help="write the results as pytest-benchmark JSON at the end")
    group.addoption("--archbench-history", metavar="STORE",
                    help="append the run to this history store at the end (created if "
                         "needed; see `archbench history`)")
    group.addoption("--archbench-isolation", choices=ISOLATION_MODES, default="forkserver",
                    help=ISOLATION_HELP)
    group.addoption("--archbench-executor", choices=EXECUTORS, default="local",
                    help="local (default): one case at a time here; ray: on a Ray cluster, "
                         "every selected case measured first (pip install 'archbench[ray]')")
    group.addoption("--archbench-ray-address", metavar="auto|HOST:PORT",
                    help="with --archbench-executor ray: the cluster (default: RAY_ADDRESS, "
                         "else a Ray instance on this machine)")
    group.addoption("--archbench-cpu-slots", type=int, default=1, metavar="N",
                    help="with --archbench-executor ray: timed CPU cases at once per node")
    group.addoption("--archbench-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a measurement setting, e.g. max_time_s=1")
    group.addoption("--archbench-baselines-dir", metavar="DIR", help=BASELINES_DIR_HELP)
    group.addoption("--archbench-allow-env-mismatch", action="store_true",
                    help="compare with a baseline from another environment anyway")


def pytest_configure(config: pytest.Config) -> None:
    try:
        session = PluginState(config)
    except BenchError as exc:
        raise pytest.UsageError(f"archbench: {exc}") from None
    config.pluginmanager.register(session, PLUGIN_NAME)
    config.addinivalue_line("markers", "archbench: a case of an archbench suite file")


# ---- collection -----------------------------------------------------------------------------
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix != ".toml":
        return None
    if not (looks_like_suite(file_path) or named_on_command_line(parent.config, file_path)):
        return None
    collector: pytest.Collector = SuiteFile.from_parent(parent, path=file_path)
    return collector
