"""Cases inline, in this process: for debugging (a crash ends the run, no timeout holds)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from bench.engine.outcome import OnMessage, OnStart, Outcome, outcome_from
from bench.measure.entry import run_inline
from bench.measure.protocol import Message, WorkerJob


class InlineBackend:
    """Runs the case in this process: debuggers and prints work, but a crash or hang takes
    the whole run down and no timeout can be enforced."""

    name = "inline"

    def run(self, job: WorkerJob, timeout_s: float, on_message: OnMessage,
            on_start: OnStart | None = None) -> Outcome:
        messages: list[Message] = []
        if on_start is not None:
            on_start(os.getpid())

        def send(message: Message) -> None:
            messages.append(message)
            on_message(message)

        run_inline(job, send)
        return outcome_from(messages)

    def call(self, fn: Callable[[], Any], timeout_s: float = 120.0) -> Any:
        return fn()

    def close(self) -> None:
        pass
