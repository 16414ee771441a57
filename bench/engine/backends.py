"""Where a case runs: its own worker process (default) or inline for debugging."""

from __future__ import annotations

from bench.engine.inline import InlineBackend
from bench.engine.outcome import Backend
from bench.engine.process import ProcessBackend

ISOLATION_MODES = ("forkserver", "spawn", "inline")
ISOLATION_HELP = ("forkserver (default): a fresh worker process per case; spawn: the same from "
                  "a new interpreter (slow start); inline: in this process, for debugging (no "
                  "timeouts, a crash ends the run)")


def backend_for(mode: str) -> Backend:
    if mode == "inline":
        return InlineBackend()
    if mode in ("forkserver", "spawn"):
        return ProcessBackend(mode)
    raise ValueError(f"unknown isolation {mode!r}; use one of {ISOLATION_MODES}")
