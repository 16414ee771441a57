"""A stand-in for `bench.measure.counting_worker`: speaks its protocol without torch or
valgrind, so the counting backend's lifecycle (start, reuse, crash, timeout) is tested fast.

A case's `model_args` steer it: `{"fake": "crash"}` kills the process with SIGSEGV,
`{"fake": "hang"}` sleeps, `{"fake": "exit"}` exits with code 3; anything else counts
`1000 * width` instructions per call.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from multiprocessing.connection import Connection

from bench.measure.protocol import Done, Findings, Phase, Ready


def main() -> None:
    conn = Connection(int(sys.argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    under = os.environ.get("FAKE_UNDER_VALGRIND", "1") == "1"
    conn.send(Ready(pid=os.getpid(), under_valgrind=under, threads=1, start_s=0.0))
    done = 0
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        fake = dict(job.case.model_args).get("fake")
        conn.send(Phase("build", time.time()))
        if fake == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        if fake == "hang":
            time.sleep(3600)
        if fake == "exit":
            sys.exit(3)
        done += 1
        per_call = 1000.0 * (job.case.width or 1)
        conn.send(Done(timing=None, findings=Findings(
            metrics={"instructions_per_call": per_call,
                     "instructions_per_item": per_call / job.case.batch_size},
            info={"counting": {"cases_before": done - 1}})))


if __name__ == "__main__":
    main()
