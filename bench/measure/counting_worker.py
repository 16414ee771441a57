"""Main loop of the counting worker: `python -m bench.measure.counting_worker FD OUT_BASE`,
started by the parent (`bench.engine.counting`) under callgrind with collection off.

It pays torch's import under valgrind once, says it is ready, then runs the cases it is sent
one after another on the same pipe, answering each with the worker messages a forkserver
worker sends. A case that kills the process is the parent's to record (`crashed`); the next
case gets a fresh worker.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from multiprocessing.connection import Connection

from bench.measure import lifeline


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    fd, base = int(args[0]), args[1]
    conn = Connection(fd)
    # The parent owns Ctrl-C and the worker's lifetime; EOF on the pipe means "exit", and
    # the kernel ends the worker if the parent is killed outright (mid-case, no EOF comes).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lifeline.die_with_parent()
    started = time.perf_counter()
    import torch

    from bench.measure import allocator
    from bench.measure.callgrind import under_valgrind
    from bench.measure.counting import Dumps
    from bench.measure.protocol import Ready

    allocator.pin()
    torch.set_num_threads(1)
    dumps: Dumps | None = None
    error: str | None = None
    try:
        dumps = Dumps(base.replace("%p", str(os.getpid())))
        # The stages, and torch._dynamo (the FLOP counter imports it on first use): paid
        # once here rather than inside the first case.
        import torch._dynamo

        from bench.measure.worker import redirect_output, run_case
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    conn.send(Ready(pid=os.getpid(), under_valgrind=under_valgrind(),
                    threads=torch.get_num_threads(), start_s=time.perf_counter() - started,
                    error=error))
    if dumps is None or error is not None:
        return
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job.log_path:
            redirect_output(job.log_path)
        run_case(job, conn.send, counter=dumps)


if __name__ == "__main__":
    main()
