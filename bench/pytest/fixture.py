"""The `archbench(module, example_input, **options)` fixture: measure a module a test holds."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

import pytest

from bench import files
from bench.errors import BenchError, SpecError
from bench.pytest.items import CaseFailure, session_of
from bench.results.record import Record
from bench.suite import loader
from bench.suite.spec import SETTINGS_KEYS, Case

#: Where fixture errors point: the options of one call, not a file.
WHERE = "archbench fixture"


@pytest.fixture
def archbench(request: pytest.FixtureRequest) -> Callable[..., Record]:
    """Measure a module with archbench's engine: `archbench(module, example_input, **opts)`.

    Options: `name` (several measurements in one test), `batch_size` (items per call, for
    throughput; default the input's first dimension), `device` ("cpu", "cuda", "cuda:N"),
    the transforms (`precision`, `prune`, `compile`, `mode`) and any measurement setting
    (`max_time_s`, `min_samples`, `threads`, ...). Returns the Record (`median_ms`, `ci_ms`,
    `summary()`, `metrics`); an unsupported device skips the test, a failure fails it. The
    record is stored in the session's run folder and gated against a baseline. It measures
    in the test's process: one worker, no isolation, no timeout.
    """
    session = session_of(request.config)
    counter = itertools.count()

    def measure(module: Any, example_input: Any, **case_options: Any) -> Record:
        # A bad option or an unusable folder fails the test at the user's call with the
        # message alone: archbench's own frames are left out of the traceback, and the error
        # stays an exception the test may expect (`pytest.raises`).
        __tracebackhide__ = True
        try:
            record: Record = session.measure_fixture(request.node, module, example_input,
                                                     next(counter), case_options)
        except BenchError as exc:
            raise exc.with_traceback(None) from None
        except OSError as exc:
            raise files.problem(exc) from None
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
    test id and call (name or order), so runs and baselines match. Transforms and settings
    are checked by the suite loader, as a suite file's would be."""
    options = dict(options)
    label = options.pop("name", None)
    device = str(options.pop("device", "cpu"))
    batch_size = options.pop("batch_size", None) or _batch_of(example_input)
    transforms = loader.transforms(options, device, file=WHERE)
    unknown = sorted(set(options) - set(SETTINGS_KEYS) - set(loader.TRANSFORM_AXES))
    if unknown:
        raise SpecError(f"unknown option(s) {', '.join(unknown)}; options are name, "
                        f"batch_size, device, {', '.join(loader.TRANSFORM_AXES)} and the "
                        f"settings {', '.join(SETTINGS_KEYS)}", file=WHERE)
    settings_given = {k: v for k, v in options.items() if k not in loader.TRANSFORM_AXES}
    settings = loader.settings(settings_given, overrides, file=WHERE)
    function = getattr(node, "originalname", None) or node.name
    identifier = re.sub(r"\W", "_", function)
    if not identifier.isidentifier():
        identifier = f"t_{identifier}"
    call = str(label) if label is not None else str(index)
    case = Case(model=f"pytest:{identifier}", batch_size=int(batch_size), device=device,
                model_args=(("call", call), ("test", node.nodeid)), settings=settings,
                suite="pytest", sweep=str(getattr(node, "path", "")), **transforms)
    name = node.name + (f"::{label}" if label is not None else (f"#{index}" if index else ""))
    return case, name


def _batch_of(example_input: Any) -> int:
    first = example_input[0] if isinstance(example_input, (tuple, list)) else example_input
    shape = getattr(first, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) > 0 and shape[0] > 0 else 1
