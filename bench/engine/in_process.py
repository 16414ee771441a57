"""A record for a module the caller already holds, measured in this process (the pytest
fixture; see `bench.measure.in_process`). Torch-free here: the caller has torch loaded."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bench.engine.outcome import outcome_from
from bench.engine.record import make_record
from bench.measure import entry
from bench.measure.protocol import Message
from bench.results.record import Record
from bench.suite.spec import Case


def measure_module(module: Any, example_input: Any, case: Case, run_id: str, *,
                   name: str | None = None) -> Record:
    """Time `module(example_input)` (a tuple input is unpacked) as `case` says; a Record.

    Failures become records (`failed`, `oom`, `unsupported`) like a worker's, never raise.
    """
    started = datetime.now(UTC)
    clock_start = time.perf_counter()
    messages: list[Message] = []
    entry.measure_module(module, example_input, case, messages.append)
    outcome = outcome_from(messages)
    if outcome.done is not None:
        outcome.done.findings.info["isolation"] = "inline"
    record = make_record(case, outcome, run_id, started_at=started.isoformat(),
                         duration_s=time.perf_counter() - clock_start)
    return record if name is None else replace(record, name=name)
