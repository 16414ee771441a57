"""The state of one pytest session for archbench: its run folder, records and the gate.

Registered by `bench.pytest.plugin.pytest_configure`; does nothing (creates no folder) unless
the session collects suite cases or uses the `archbench` fixture.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.engine.in_process import measure_module
from bench.engine.runner import RunOptions, RunSession
from bench.errors import BenchError, CompareError
from bench.gate import render as compare_output
from bench.gate.compare import CompareOptions, Comparison, MetricVerdict, compare_runs
from bench.gate.thresholds import parse_thresholds
from bench.pytest.fixture import fixture_case
from bench.pytest.items import CaseItem, GateFailure
from bench.results.baselines import baselines_dir, resolve
from bench.results.pytest_benchmark import export
from bench.results.record import Record
from bench.results.store import RunData, write_json_atomic
from bench.suite.overrides import parse_settings
from bench.suite.spec import Case


class PluginState:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        opt = config.getoption
        self.settings_overrides: dict[str, Any] = parse_settings(
            opt("archbench_set"), option="--archbench-set")
        self.out = Path(opt("archbench_out")) if opt("archbench_out") else None
        if self.out is not None and self.out.exists() and any(self.out.iterdir()):
            raise BenchError(f"--archbench-out {self.out} already holds files; choose a new "
                             "folder")
        self.isolation: str = opt("archbench_isolation")
        # Checked now, so a bad combination is a usage error before anything is collected.
        self.run_options = RunOptions(out=self.out, isolation=self.isolation,
                                      executor=opt("archbench_executor"),
                                      ray_address=opt("archbench_ray_address"),
                                      cpu_slots=opt("archbench_cpu_slots"))
        fail_spec = opt("archbench_fail")
        baseline_ref = opt("archbench_baseline")
        self.ab_ref: str | None = opt("archbench_ab")
        if baseline_ref and self.ab_ref:
            raise CompareError("--archbench-baseline and --archbench-ab both give a baseline; "
                               "keep one (--archbench-ab measures it in this session)")
        if fail_spec and not (baseline_ref or self.ab_ref):
            raise CompareError("--archbench-fail needs --archbench-baseline NAME_OR_PATH or "
                               "--archbench-ab REF to compare with")
        self.fail_on_regression = bool(fail_spec)
        self.options = CompareOptions(thresholds=parse_thresholds(fail_spec or ()),
                                      allow_env_mismatch=opt("archbench_allow_env_mismatch"))
        self.baseline: RunData | None = None
        if baseline_ref:
            self.baseline = resolve(baseline_ref, baselines_dir(opt("archbench_baselines_dir")))
        self.report_path = opt("archbench_report")
        if self.report_path and importlib.util.find_spec("bench.report") is None:
            raise BenchError("--archbench-report needs the report module (bench.report), which "
                             "this archbench installation does not have; install an archbench "
                             "with reports, or drop the option")
        self.benchmark_json = opt("archbench_benchmark_json")
        self.history = opt("archbench_history")

        self.run: RunSession | None = None
        #: The A/B run's folder (--archbench-ab), once measured.
        self.ab_dir: Path | None = None
        self.case_items: list[CaseItem] = []
        self.records: dict[str, Record] = {}  # nodeid -> record of a suite case
        self.fixture_records: list[Record] = []
        self.suite_comparison: Comparison | None = None
        self.fixture_comparison: Comparison | None = None
        self.gate_error: str | None = None
        self.fixture_gate_error: str | None = None
        self.lines: list[str] = []  # for the terminal summary

    # ---- pytest hooks -----------------------------------------------------------------------
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.case_items = [i for i in session.items if isinstance(i, CaseItem)]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        """With --archbench-fail (or --archbench-ab), measure every selected case before the
        items report: the correction across cases needs all their p-values (and A/B pairs
        are measured together). On Ray too: the cluster measures them side by side instead
        of one per item."""
        if session.config.option.collectonly or not self.case_items or session.testsfailed:
            return
        if self.ab_ref:
            self._measure_ab()
            return
        if not (self.fail_on_regression or self.run_options.executor != "local"):
            return

        def progress(index: int, total: int, case: Case, repeat: int) -> None:
            of = f" (worker {repeat + 1})" if case.settings.most_repeats > 1 else ""
            self._progress(f"archbench: measuring [{index}/{total}] {case.name}{of}")

        records = self.open_run().measure([item.case for item in self.case_items], progress)
        for item in self.case_items:
            self.records[item.nodeid] = records[item.case.case_id]
        if self.fail_on_regression:
            self.suite_comparison = self._compare(
                [self.records[i.nodeid] for i in self.case_items], suite=True)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.ab_dir is not None:
            self._summarise_ab()
        if self.run is None:
            if self.report_path or self.benchmark_json or self.history:
                self.lines.append("archbench: no suite case or fixture measurement ran; "
                                  "nothing to report")
            return
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        self.run.close("interrupted" if interrupted else "complete")
        self.lines.append(f"archbench: run folder {self.run.run_dir} "
                          f"({len(self.run.records)} record(s))")
        failed = False
        if self.baseline is not None:
            suite_records = [self.records[i.nodeid] for i in self.case_items
                             if i.nodeid in self.records]
            if self.suite_comparison is None and self.gate_error is None and suite_records:
                self.suite_comparison = self._compare(suite_records, suite=True)
            if self.fixture_records:
                self.fixture_comparison = self._compare(self.fixture_records, suite=False)
            self._summarise()
            if self.suite_comparison is not None:
                # What the gate decided, beside the run it decided on: `archbench compare
                # BASELINE RUN_DIR --json` on the same folders gives these verdicts.
                write_json_atomic(self.run.run_dir / "comparison.json",
                                  self.suite_comparison.to_dict())
            fixture_regressed = (self.fixture_comparison is not None
                                 and self.fixture_comparison.has_regression)
            failed = self.fail_on_regression and (fixture_regressed or
                                                  self.fixture_gate_error is not None)
        failed = self._write_outputs() or failed
        if failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.lines:
            terminalreporter.write_sep("-", "archbench")
            for line in self.lines:
                terminalreporter.write_line(line)

    # ---- measuring --------------------------------------------------------------------------
    def open_run(self) -> RunSession:
        if self.run is None:
            suites = list({id(i.suite): i.suite for i in self.case_items}.values())
            cases = [i.case for i in self.case_items]
            command = ["pytest", *self.config.invocation_params.args]
            self.run = RunSession(suites, cases, replace(self.run_options, command=command))
        return self.run

    def record_for(self, item: CaseItem) -> Record:
        """The case's record, every repeat measured and pooled."""
        if item.nodeid not in self.records:
            measured = self.open_run().measure([item.case])
            self.records[item.nodeid] = measured[item.case.case_id]
        return self.records[item.nodeid]

    def measure_fixture(self, node: pytest.Item, module: Any, example_input: Any, index: int,
                        options: dict[str, Any]) -> Record:
        case, name = fixture_case(node, example_input, index, options, self.settings_overrides)
        run = self.open_run()
        record = measure_module(module, example_input, case, run.run_id, name=name)
        run.append(record)
        self.fixture_records.append(record)
        return record

    # ---- the gate ---------------------------------------------------------------------------
    def check_gate(self, item: CaseItem, record: Record) -> None:
        if not self.fail_on_regression:
            return
        if self.gate_error is not None:
            raise GateFailure(f"archbench: cannot compare with the baseline: {self.gate_error}")
        if self.suite_comparison is None:
            return
        regressed = [v for v in self.suite_comparison.for_case(record.case_id)
                     if v.verdict == "regression"]
        if regressed:
            raise GateFailure(regression_message(item.name, regressed, self.suite_comparison))

    def _measure_ab(self) -> None:
        """Both sides of every selected case, pair by pair (`bench.engine.ab`), then the
        gate on the pairs — the run `archbench ab` makes, with the cases pytest selected."""
        from dataclasses import replace

        from bench.engine.ab import ABObserver, ABOptions, default_out, resolved_sides, run_ab
        from bench.gate.paired import PAIR_QUANTILE, AdaptiveStop
        from bench.results.repeats import merge_repeats

        assert self.ab_ref is not None
        suites = list({id(i.suite): i.suite for i in self.case_items}.values())
        cases = [i.case for i in self.case_items]
        out = self.out or default_out(cases[0].suite)
        options = ABOptions(out=out, command=("pytest", *self.config.invocation_params.args),
                            meta=(("method", "t"), ("quantile", PAIR_QUANTILE)))
        stop = AdaptiveStop(thresholds=self.options.thresholds)
        plugin = self

        class Progress(ABObserver):
            def started(self, run_dirs: dict[str, Path], cases: int) -> None:
                plugin._progress(f"archbench: A/B run of {cases} case(s) against "
                                 f"{plugin.ab_ref} in {out}")

            def pair_done(self, case: Case, pair: int, order: tuple[str, str],
                          records: dict[str, Record], state: str | None) -> None:
                done = f" [{state}]" if state else ""
                plugin._progress(f"archbench: pair {pair + 1} {case.name}{done}")

        with resolved_sides(self.ab_ref, ".") as sides:
            result = run_ab([s.path for s in suites], cases, sides, options, stop=stop,
                            settings=self.settings_overrides, observer=Progress())
        self.ab_dir = out
        merged = {r.case_id: r for r in merge_repeats(result.records["candidate"])}
        for item in self.case_items:
            if item.case.case_id in merged:
                self.records[item.nodeid] = merged[item.case.case_id]
        try:
            self.suite_comparison = compare_runs(
                result.run_dirs["baseline"], result.run_dirs["candidate"],
                replace(self.options, allow_env_mismatch=True))
        except CompareError as exc:
            self.gate_error = str(exc)
            return
        write_json_atomic(out / "comparison.json", self.suite_comparison.to_dict())

    def _summarise_ab(self) -> None:
        self.lines.append(f"archbench: A/B run against {self.ab_ref}: {self.ab_dir}")
        if self.gate_error is not None:
            self.lines.append(f"archbench: suite cases: cannot compare: {self.gate_error}")
        elif self.suite_comparison is not None:
            self.lines.append(f"archbench: suite cases, side by side with {self.ab_ref}: "
                              f"{compare_output.headline(self.suite_comparison)}")
            for line in compare_output.inconclusive_lines(self.suite_comparison):
                self.lines.append(f"  warning: {line}")
            for row in self.suite_comparison.regressions:
                self.lines.append("  " + describe_row(row))
        if self.fixture_records:
            self.lines.append("archbench: fixture measurements run in this process only; "
                              "--archbench-ab does not pair them")

    def _compare(self, records: Sequence[Record], *, suite: bool) -> Comparison | None:
        """The gate on these cases, from their per-repeat records as this run stored them:
        the same input `archbench compare` reads from the run folder, so both give one
        answer."""
        assert self.baseline is not None and self.run is not None
        wanted = {r.case_id for r in records}
        raw = tuple(r for r in self.run.records if r.case_id in wanted)
        candidate = RunData(records=raw, env=self.run.meta.get("env"),
                            label=f"this session ({self.run.run_id})", path=self.run.run_dir)
        try:
            return compare_runs(self.baseline, candidate, self.options)
        except CompareError as exc:
            if suite:
                self.gate_error = str(exc)
            else:
                self.fixture_gate_error = str(exc)
            return None

    def _summarise(self) -> None:
        for title, comparison, error in (
                ("suite cases", self.suite_comparison, self.gate_error),
                ("fixture measurements", self.fixture_comparison, self.fixture_gate_error)):
            if error is not None:
                self.lines.append(f"archbench: {title}: cannot compare with the baseline: "
                                  f"{error}")
            elif comparison is not None:
                self.lines.append(f"archbench: {title} vs {comparison.baseline_label}: "
                                  f"{compare_output.headline(comparison)}")
                for line in (*compare_output.env_lines(comparison),
                             *compare_output.inconclusive_lines(comparison)):
                    self.lines.append(f"  warning: {line}")
                for row in comparison.regressions:
                    self.lines.append("  " + describe_row(row))

    def _write_outputs(self) -> bool:
        """pytest-benchmark JSON and the HTML report; True when one could not be written."""
        assert self.run is not None
        failed = False
        if self.benchmark_json:
            path = Path(self.benchmark_json)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(export(self.run.records, self.run.meta), indent=2))
            self.lines.append(f"archbench: pytest-benchmark JSON written to {path}")
        if self.history:
            from bench.history import HistoryStore, add_run

            try:
                added = add_run(HistoryStore(self.history, create=True), self.run.run_dir)
                self.lines.append(f"archbench: {added.added} case(s) added to the history "
                                  f"store {self.history}")
            except BenchError as exc:
                self.lines.append(f"archbench: not added to the history: {exc}")
                failed = True
        if self.report_path:
            try:
                path = write_report(self.run.run_dir, self.baseline, Path(self.report_path))
                self.lines.append(f"archbench: report written to {path}")
            except BenchError as exc:
                self.lines.append(f"archbench: report not written: {exc}")
                failed = True
        return failed

    def _progress(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(line)
        else:
            reporter.write_line(line)


def write_report(run_dir: Path, baseline: RunData | None, path: Path) -> Path:
    """The HTML report of the run, with the baseline first when there is one (the report
    compares later runs with the first)."""
    from bench.report import html_report, load_report_input, write_html

    runs = [baseline.path, run_dir] if baseline is not None and baseline.path else [run_dir]
    report = load_report_input(runs)
    result: Path = write_html(html_report(report), path)
    return result


def describe_row(row: MetricVerdict) -> str:
    """One line per regressed metric: values, change, interval, evidence, threshold."""
    value = compare_output.value
    text = f"{row.name}: {row.metric} {value(row.metric, row.baseline)} → " \
           f"{value(row.metric, row.candidate)}"
    if row.delta_pct is not None:
        text += f", {row.delta_pct:+.1f}%"
    if row.ci_low_pct is not None and row.ci_high_pct is not None:
        text += f" (95% CI [{row.ci_low_pct:+.1f}%, {row.ci_high_pct:+.1f}%])"
    if row.p_adjusted is not None:
        text += f", p_adj {row.p_adjusted:.2g}"
    if row.threshold is not None:
        unit = "" if row.kind == "fidelity" else "%"
        text += f", threshold {row.threshold:g}{unit}"
    return text + (f" — {row.note}" if row.note else "")


def regression_message(name: str, rows: Sequence[MetricVerdict], comparison: Comparison) -> str:
    lines = [f"archbench: {name} regressed against {comparison.baseline_label} "
             f"({comparison.correction} correction across "
             f"{sum(v.kind == 'timing' for v in comparison.verdicts)} case(s), "
             f"α = {comparison.alpha:g}):"]
    lines += [f"  {describe_row(row)}" for row in rows]
    return "\n".join(lines)
