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

import itertools
import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.errors import BenchError, SpecError
from bench.isolation import ISOLATION_MODES
from bench.results import FAILURE_STATUSES, Record
from bench.spec import SETTINGS_KEYS, Case, Suite

PLUGIN_NAME = "archbench-session"


# ---- options --------------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("archbench", "archbench: suites as tests and the regression gate")
    group.addoption("--archbench-out", metavar="RUN_DIR",
                    help="run folder for this session's results (default "
                         "reports/runs/<time>-<suite>)")
    group.addoption("--archbench-baseline", metavar="NAME_OR_PATH",
                    help="compare with this baseline (a name from `archbench baseline list` "
                         "or a run folder)")
    group.addoption("--archbench-fail", metavar="SPEC",
                    help='fail regressed cases; SPEC as for `archbench compare --threshold`, '
                         'e.g. "5%%" or "5%%,cnn-*:median_ms=10%%"')
    group.addoption("--archbench-report", metavar="HTML",
                    help="write the HTML report of the run (and the baseline) at the end")
    group.addoption("--archbench-benchmark-json", metavar="PATH",
                    help="write the results as pytest-benchmark JSON at the end")
    group.addoption("--archbench-isolation", choices=ISOLATION_MODES, default="forkserver",
                    help="how suite cases run (default forkserver: a worker per case)")
    group.addoption("--archbench-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a measurement setting, e.g. max_time_s=1")
    group.addoption("--archbench-baselines-dir", metavar="DIR",
                    help="where named baselines live (default $ARCHBENCH_BASELINES or "
                         ".archbench/baselines)")
    group.addoption("--archbench-allow-env-mismatch", action="store_true",
                    help="compare with a baseline from another environment anyway")


def pytest_configure(config: pytest.Config) -> None:
    from bench.pytest_session import ArchbenchSession

    try:
        session = ArchbenchSession(config)
    except BenchError as exc:
        raise pytest.UsageError(f"archbench: {exc}") from None
    config.pluginmanager.register(session, PLUGIN_NAME)
    config.addinivalue_line("markers", "archbench: a case of an archbench suite file")


def session_of(config: pytest.Config) -> Any:
    return config.pluginmanager.get_plugin(PLUGIN_NAME)


# ---- collection -----------------------------------------------------------------------------
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix != ".toml":
        return None
    if not (looks_like_suite(file_path) or named_on_command_line(parent.config, file_path)):
        return None
    collector: pytest.Collector = SuiteFile.from_parent(parent, path=file_path)
    return collector


def looks_like_suite(path: Path) -> bool:
    """A `[suite]` table and `[[sweep]]` blocks: what distinguishes a suite from other TOML
    (pyproject.toml, ruff.toml...), which is never collected."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return isinstance(data.get("suite"), dict) and "sweep" in data


def named_on_command_line(config: pytest.Config, path: Path) -> bool:
    """A TOML file given explicitly is collected even when broken, so its error shows."""
    base = config.invocation_params.dir
    for arg in config.args:
        target = Path(arg.split("::")[0])
        target = target if target.is_absolute() else base / target
        if target.resolve() == path.resolve():
            return True
    return False


class SuiteFile(pytest.File):
    """A suite file; its children are the suite's cases (after --archbench-set overrides)."""

    suite: Suite

    def collect(self) -> Iterator[pytest.Item]:
        from bench import suite_file

        self.suite = suite_file.load(self.path, settings_overrides=session_of(self.config)
                                     .settings_overrides)
        for case in self.suite.cases:
            yield CaseItem.from_parent(self, name=case.name, case=case, suite=self.suite)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> Any:
        if isinstance(excinfo.value, BenchError):
            return f"archbench: {excinfo.value}"
        return super().repr_failure(excinfo)


class CaseItem(pytest.Item):
    """One case of a suite, run by the session's runner in its own worker."""

    def __init__(self, *, case: Case, suite: Suite, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.suite = suite
        self.add_marker("archbench")

    def runtest(self) -> None:
        session = session_of(self.config)
        record = session.record_for(self)
        if record.status == "ok":
            self.user_properties.append(("archbench_case_id", record.case_id))
        if record.status == "unsupported":
            # Reported at the suite file (as a skip marker would be), not inside archbench.
            raise pytest.skip.Exception(f"unsupported: {record.reason}",
                                        _use_item_location=True)
        if record.status in FAILURE_STATUSES:
            raise CaseFailure(record)
        session.check_gate(self, record)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> Any:
        if isinstance(excinfo.value, (CaseFailure, GateFailure)):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, 0, f"{self.suite.name}::{self.name}"


class CaseFailure(Exception):
    """A case that failed, ran out of memory, crashed or timed out: the record's message."""

    def __init__(self, record: Record) -> None:
        self.record = record
        text = f"archbench: {record.name} {record.status}: {record.reason}"
        if record.traceback:
            text += "\n\n" + record.traceback.rstrip()[-3000:]
        super().__init__(text)


class GateFailure(Exception):
    """A case that regressed against the baseline, or a gate that could not compare."""


# ---- fixture --------------------------------------------------------------------------------
@pytest.fixture
def archbench(request: pytest.FixtureRequest) -> Callable[..., Record]:
    """Measure a module with archbench's engine: `archbench(module, example_input, **opts)`.

    Options: `name` (several measurements in one test), `batch_size` (items per call, for
    throughput; default the input's first dimension), `device` ("cpu", "cuda", "cuda:N"),
    and any measurement setting (`max_time_s`, `min_samples`, `threads`, ...). Returns the
    Record (status, samples, metrics); an unsupported device skips the test, a failure fails
    it. The record is stored in the session's run folder and gated against a baseline.
    """
    session = session_of(request.config)
    counter = itertools.count()

    def measure(module: Any, example_input: Any, **case_options: Any) -> Record:
        record: Record = session.measure_fixture(request.node, module, example_input,
                                                 next(counter), case_options)
        if record.status == "unsupported":
            raise pytest.skip.Exception(f"archbench: unsupported: {record.reason}",
                                        _use_item_location=True)
        if record.status != "ok":
            pytest.fail(str(CaseFailure(record)), pytrace=False)
        return record

    return measure


def fixture_case(node: pytest.Item, example_input: Any, index: int,
                 options: dict[str, Any], overrides: dict[str, Any]) -> tuple[Case, str]:
    """The Case (and display name) for one fixture call; its case_id is stable for the same
    test id and call (name or order), so runs and baselines match."""
    from pydantic import TypeAdapter, ValidationError

    from bench.spec import Settings

    options = dict(options)
    label = options.pop("name", None)
    device = str(options.pop("device", "cpu"))
    batch_size = options.pop("batch_size", None) or _batch_of(example_input)
    unknown = sorted(set(options) - set(SETTINGS_KEYS))
    if unknown:
        raise SpecError(f"archbench fixture: unknown option(s) {', '.join(unknown)}; options "
                        f"are name, batch_size, device and the settings "
                        f"{', '.join(SETTINGS_KEYS)}")
    try:
        settings = TypeAdapter(Settings).validate_python({**options, **overrides})
    except ValidationError as exc:
        raise SpecError(f"archbench fixture: bad setting: {exc.errors()[0]['msg']} "
                        f"({exc.errors()[0]['loc']})") from None
    function = getattr(node, "originalname", None) or node.name
    identifier = re.sub(r"\W", "_", function)
    if not identifier.isidentifier():
        identifier = f"t_{identifier}"
    call = str(label) if label is not None else str(index)
    case = Case(model=f"pytest:{identifier}", batch_size=int(batch_size), device=device,
                model_args=(("call", call), ("test", node.nodeid)), settings=settings,
                suite="pytest", sweep=str(getattr(node, "path", "")))
    name = node.name + (f"::{label}" if label is not None else (f"#{index}" if index else ""))
    return case, name


def _batch_of(example_input: Any) -> int:
    first = example_input[0] if isinstance(example_input, (tuple, list)) else example_input
    shape = getattr(first, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) > 0 and shape[0] > 0 else 1
