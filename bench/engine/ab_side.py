"""One side of an A/B run: a process that measures cases on request into its own run folder.

`python -P -m bench.engine.ab_side` is started by `bench.engine.ab` once per side, with that
side's interpreter, working directory and import path, so its forkserver (and every worker
forked from it) imports only that side's code: another torch, another checkout of the user's
models. The parent drives it over stdin/stdout, one JSON object a line:

    parent -> side   {"suites": [...], "settings": {...}, "device": [...] | null,
                      "case_ids": [...], "out": RUN_DIR, "search_path": [...],
                      "isolation": "forkserver", "command": [...], "ab": {...}}
    side -> parent   {"ready": true, "run_dir": ..., "env": {...}, "version": ...}
    parent -> side   {"op": "run", "case_id": ..., "repeat": k}
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
    from bench import __version__
    from bench.engine.runner import RunOptions, RunSession
    from bench.errors import BenchError
    from bench.suite.loader import load

    def send(message: dict[str, Any]) -> None:
        outbox.write(json.dumps(message) + "\n")
        outbox.flush()

    try:
        config = json.loads(inbox.readline() or "{}")
        suites = [load(path, axis_overrides=config.get("device") and
                                  {"device": config["device"]},
                                  settings_overrides=config.get("settings") or {})
                  for path in config["suites"]]
        by_id = {c.case_id: c for s in suites for c in s.cases}
        missing = [cid for cid in config["case_ids"] if cid not in by_id]
        if missing:
            raise BenchError(f"this side's archbench expands the suite into other cases "
                             f"({len(missing)} case id(s) unknown here); both sides need "
                             "the same archbench version")
        cases = [by_id[cid] for cid in config["case_ids"]]
        session = RunSession(suites, cases, RunOptions(
            out=Path(config["out"]), isolation=config.get("isolation", "forkserver"),
            command=list(config.get("command") or [])))
    except BenchError as exc:
        send({"error": str(exc), "kind": "BenchError"})
        return 2
    session.search_path = list(config["search_path"])
    session.meta["ab"] = config.get("ab") or {}
    session.store.write_run(session.meta)
    send({"ready": True, "run_dir": str(session.run_dir), "env": session.meta["env"],
          "version": __version__})
    status = "interrupted"
    try:
        for line in inbox:
            request = json.loads(line)
            if request.get("op") == "close":
                status = str(request.get("status", "complete"))
                break
            record = session.run_case(by_id[request["case_id"]], int(request["repeat"]))
            send({"record": record.to_dict()})
    finally:
        session.close(status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
