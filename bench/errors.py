"""One exception tree for everything archbench raises on purpose.

The CLI turns any `BenchError` into a one-paragraph message and an exit code; anything else
reaching it is a bug in archbench and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """Base of every error archbench raises for a user to read."""


class SpecError(BenchError):
    """A suite file (or a CLI override) is not a valid suite.

    The message names the file, the key path, the bad value and what is allowed.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class BuildError(BenchError):
    """A model could not be built from its case (a user factory raised, a bad import path...)."""


class UnsupportedCase(BenchError):
    """The case cannot run here (no GPU, a precision the device lacks...); recorded, not fatal."""


class ResultsError(BenchError):
    """A results file or run folder is damaged or not a run folder."""


class CompareError(BenchError):
    """Two runs cannot be compared as asked (different hardware, no common cases...)."""


class BenchWarning(UserWarning):
    """Something the user should know that does not stop the run (noise, a skipped line...)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' when a close match exists, else ''; for typo-friendly messages."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def one_of(choices: Iterable[str]) -> str:
    """Render allowed values the same way in every message: "a", "b" or "c"."""
    quoted = [f'"{c}"' for c in choices]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


class FileProblem(BenchError):
    """A file or folder archbench reads or writes is unusable: missing permission, a full
    disk, a file where a folder should be, bytes that are not UTF-8 text...

    Built by `bench.files.problem`, the one place such errors are worded.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)
