"""One writer per run folder: an exclusive lock held while a run (or a resume) writes it.

Two `archbench run --out DIR` started together, or two `--resume` of one folder, would each
measure every case into the same results file. The lock is `flock` on `DIR/.archbench.lock`:
the kernel drops it when its holder exits however it exits (SIGKILL included), so a lock left
by a dead run is never stale — the next run simply takes it. The file only says who holds it,
for the message the loser prints. It is never deleted: a process still waiting on the old
file would otherwise lock a different one than a newcomer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.errors import ResultsError

LOCK_FILE = ".archbench.lock"


class RunFolderBusy(ResultsError):
    """Another archbench process is writing this run folder."""


class RunFolderLock:
    """Held from `acquire()` to `release()` (or the holder's exit)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunFolderLock:
        """Take the lock or raise `RunFolderBusy` naming the holder; never waits."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read(fd))
            os.close(fd)
            raise RunFolderBusy(f"{self.run_dir} is in use by {holder}; wait for that run to "
                                "end (or stop it), or choose another --out") from None
        except BaseException:
            os.close(fd)
            raise
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):  # a full disk: the lock goes with the close
                os.ftruncate(fd, 0)
            os.close(fd)

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _describe(info: dict[str, Any]) -> str:
    if not info.get("pid"):
        return "another archbench process (it has not said which yet)"
    since = f", since {info['since']}" if info.get("since") else ""
    return f"PID {info['pid']} on {info.get('host', 'an unknown host')}{since}"
