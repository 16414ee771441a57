"""Reading what callgrind wrote: the total of one dump, and whether this process runs under
valgrind. Torch-free, so the parent and tests use it too.

torch's own valgrind support (`torch._C._valgrind_toggle_and_dump_stats`) makes callgrind
write one file per counted sample; torch's `Timer.collect_callgrind` then runs
`callgrind_annotate` (a Perl script) on it for a per-function table. A counted sample needs
only the file's total, which the callgrind format states on its `totals:` line (and, for a
single event, on `summary:`); `test_counting.py` checks the two readings agree.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.errors import BenchError

_TOTALS = re.compile(rb"^totals:\s*(\d+)\s*$", re.MULTILINE)
_SUMMARY = re.compile(rb"^summary:\s*(\d+)\s*$", re.MULTILINE)
_PART = re.compile(rb"^part:\s*(\d+)\s*$", re.MULTILINE)
_EVENTS = re.compile(rb"^events:\s*(.+?)\s*$", re.MULTILINE)


class CallgrindOutputError(BenchError):
    """A dump file that is missing or does not say how many instructions it counted."""


def dump_path(base: str | Path, part: int) -> Path:
    """Callgrind names the n-th dump of a process `<--callgrind-out-file>.<n>` (from 1)."""
    return Path(f"{base}.{part}")


def read_total(path: str | Path, *, part: int | None = None) -> int:
    """Instructions (`Ir`) counted in one dump. `part`, when given, must match the file's
    `part:` line, so a stale file from an earlier worker is never read as this one."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CallgrindOutputError(f"callgrind dump {path} could not be read: {exc}") from exc
    events = _EVENTS.search(data)
    if events is None or events.group(1).split()[0] != b"Ir":
        raise CallgrindOutputError(f"callgrind dump {path} does not count instructions (Ir) "
                                   "first; run callgrind without --collect-systime/--cache-sim")
    if part is not None:
        found = _PART.search(data)
        if found is None or int(found.group(1)) != part:
            raise CallgrindOutputError(f"callgrind dump {path} is not part {part}")
    match = _TOTALS.search(data) or _SUMMARY.search(data)
    if match is None:
        raise CallgrindOutputError(f"callgrind dump {path} has no totals: or summary: line")
    return int(match.group(1))


def under_valgrind(maps: str | Path = "/proc/self/maps") -> bool:
    """True inside a valgrind client: valgrind preloads its `vgpreload_*` libraries into
    every process it runs, and nothing else maps them."""
    try:
        return "vgpreload" in Path(maps).read_text(errors="replace")
    except OSError:
        return False
