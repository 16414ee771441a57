"""What came back from one case, and the interface every place a case can run provides."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.measure.protocol import Done, Failed, Message, Phase, WorkerJob
from bench.results.record import Status


@dataclass
class Outcome:
    """A case's end: its measurement (`done`), or a failure status with its message."""

    status: Status
    done: Done | None = None
    message: str | None = None
    traceback: str | None = None
    phases: list[tuple[str, float]] = field(default_factory=list)
    pid: int | None = None
    exitcode: int | None = None


OnMessage = Callable[[Message], None]
#: Called with the pid of the process running the case as soon as it exists (samplers).
OnStart = Callable[[int], None]


class Backend(Protocol):
    """Runs a case's worker somewhere and reports how it ended (see `bench.engine.process`)."""

    name: str

    def run(self, job: WorkerJob, timeout_s: float, on_message: OnMessage,
            on_start: OnStart | None = None) -> Outcome: ...

    def call(self, fn: Callable[[], Any], timeout_s: float = 120.0) -> Any: ...

    def close(self) -> None: ...


def outcome_from(messages: Sequence[Message]) -> Outcome:
    """The Outcome a list of worker messages amounts to (the last final message wins)."""
    phases = phases_of(messages)
    final = next((m for m in reversed(messages) if isinstance(m, (Done, Failed))), None)
    if final is None:
        return Outcome(status="crashed", message="no result", phases=phases)
    if isinstance(final, Done):
        return Outcome(status="ok", done=final, phases=phases)
    return Outcome(status=final.status, message=final.message, traceback=final.traceback,
                   phases=phases)


def phases_of(messages: Sequence[Message]) -> list[tuple[str, float]]:
    return [(m.name, m.unix_time) for m in messages if isinstance(m, Phase)]


def last_phase(messages: Sequence[Message]) -> str | None:
    phases = phases_of(messages)
    return phases[-1][0] if phases else None
