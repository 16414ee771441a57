"""Suite files as pytest items: each case of a collected suite is one test."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.errors import BenchError
from bench.results.record import FAILURE_STATUSES, Record
from bench.suite import loader
from bench.suite.spec import Case, Suite

#: The name the session's state (`bench.pytest.session.PluginState`) is registered under.
PLUGIN_NAME = "archbench-session"


def session_of(config: pytest.Config) -> Any:
    return config.pluginmanager.get_plugin(PLUGIN_NAME)


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
        self.suite = loader.load(self.path, settings_overrides=session_of(self.config)
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
