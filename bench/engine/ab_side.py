"""One side of an A/B run: a process that measures cases on request into its own run folder.

`python -P -m bench.engine.ab_side` is started by `bench.engine.ab` with a side's
interpreter, so its forkserver (and every worker forked from it) has only that interpreter's
packages; each side's workers look the suite's models up on that side's own search path.
Sides on the same interpreter (revisions, folders) share one process, so their workers fork
from one forkserver. The parent drives it over stdin/stdout, one JSON object a line:

    parent -> side   {"sides": {LABEL: {"suites": [...], "settings": {...}, "device": ...,
                      "case_ids": [...], "out": RUN_DIR, "search_path": [...],
                      "isolation": "forkserver", "command": [...], "ab": {...}}, ...}}
    side -> parent   {"ready": true, "sides": {LABEL: {"run_dir": ..., "env": ...}}, ...}
    parent -> side   {"op": "run", "side": LABEL, "case_id": ..., "repeat": k}
    side -> parent   {"record": {...}}
    parent -> side   {"op": "close", "status": "complete"}

Errors come back as {"error": message, "kind": "BenchError"|...} and end the side.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, Any


def main() -> int:
    # The protocol owns the real stdout; anything else printed here goes to stderr (the
    # side's log), never into a JSON line.
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    try:
        return serve(sys.stdin, proto)
    except KeyboardInterrupt:
        return 130


def serve(inbox: IO[str], outbox: IO[str]) -> int:
    from bench._version import __version__
    from bench.engine.local_executor import LocalExecutor
    from bench.engine.runner import RunOptions, RunSession
    from bench.errors import BenchError
    from bench.suite.loader import load
    from bench.suite.spec import Case

    def send(message: dict[str, Any]) -> None:
        outbox.write(json.dumps(message) + "\n")
        outbox.flush()

    try:
        config = json.loads(inbox.readline() or "{}")
        sessions: dict[str, RunSession] = {}
        side_cases: dict[str, list[Case]] = {}
        by_id: dict[str, Case] = {}
        for label, side in config["sides"].items():
            suites = [load(path, axis_overrides=side.get("device") and
                           {"device": side["device"]},
                           settings_overrides=side.get("settings") or {})
                      for path in side["suites"]]
            by_id = {c.case_id: c for s in suites for c in s.cases}
            missing = [cid for cid in side["case_ids"] if cid not in by_id]
            if missing:
                raise BenchError(f"this side's archbench expands the suite into other cases "
                                 f"({len(missing)} case id(s) unknown here); both sides need "
                                 "the same archbench version")
            cases = side_cases[label] = [by_id[cid] for cid in side["case_ids"]]
            # One process, one forkserver: every session here forks its workers from it.
            session = RunSession(suites, cases, RunOptions(
                out=Path(side["out"]), isolation=side.get("isolation", "forkserver"),
                command=list(side.get("command") or [])))
            session.search_path = list(side["search_path"])
            session.meta["ab"] = side.get("ab") or {}
            session.store.write_run(session.meta)
            sessions[label] = session
    except BenchError as exc:
        send({"error": str(exc), "kind": "BenchError"})
        return 2
    if all(case.settings.counted for cases in side_cases.values() for case in cases):
        # Only counted cases: both sides' counting workers import torch under valgrind at
        # once (with timed cases in the run, a starting worker would disturb their timing).
        for label, session in sessions.items():
            if isinstance(session.executor, LocalExecutor):
                session.executor.start_counting(side_cases[label])
    send({"ready": True, "sides": {label: {"run_dir": str(s.run_dir), "env": s.meta["env"]}
                                   for label, s in sessions.items()}, "version": __version__})
    status = "interrupted"
    try:
        for line in inbox:
            request = json.loads(line)
            if request.get("op") == "close":
                status = str(request.get("status", "complete"))
                break
            record = sessions[request["side"]].run_case(by_id[request["case_id"]],
                                                        int(request["repeat"]))
            send({"record": record.to_dict()})
    finally:
        for session in sessions.values():
            session.close(status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
