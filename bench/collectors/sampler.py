"""A periodic sampler thread for parent-side collectors.

Samples land on a fixed schedule (start + k·interval) rather than "sleep interval after each
sample", so a slow read does not stretch the whole series. `stop()` joins the thread: a
stopped sampler leaves nothing running. A read that raises `StopSampling` ends the series
quietly (the worker exited); any other exception ends it with the error kept as `error`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from bench.env import pin_current_thread

#: Longest a stop waits for the thread; a read stuck longer than this is a bug in the reader.
JOIN_TIMEOUT_S = 5.0


class StopSampling(Exception):
    """Raised by a read function when the source is gone for good (the process exited)."""


class PeriodicSampler:
    """Calls `read()` every `interval_s` in a daemon thread and keeps (unix time, value)."""

    def __init__(self, read: Callable[[], Any], interval_s: float, *, name: str,
                 clock: Callable[[], float] = time.time, cpu: int | None = None) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self._read = read
        self.interval_s = interval_s
        self.name = name
        self._clock = clock
        #: The CPU the thread pins itself to (see bench.env.measuring_cpus); None: anywhere.
        self.cpu = cpu
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples: list[tuple[float, Any]] = []
        self.error: str | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"sampler {self.name} was already started")
        self._thread = threading.Thread(target=self._loop, name=f"archbench-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop and join; safe to call twice or before `start`."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT_S)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        if self.cpu is not None:
            pin_current_thread([self.cpu])  # best effort: a sampler unpinned still samples
        begin = time.monotonic()
        tick = 0
        while not self._stop.is_set():
            if not self._take():
                return
            tick += 1
            delay = begin + tick * self.interval_s - time.monotonic()
            if delay < 0:  # fell behind (a slow read): skip missed ticks, keep the grid
                tick += int(-delay // self.interval_s) + 1
                delay = begin + tick * self.interval_s - time.monotonic()
            if self._stop.wait(max(delay, 0.0)):
                return

    def _take(self) -> bool:
        try:
            value = self._read()
        except StopSampling:
            self._stop.set()
            return False
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self._stop.set()
            return False
        self.samples.append((self._clock(), value))
        return True
