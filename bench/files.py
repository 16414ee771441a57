"""The one place file-system and decoding errors become messages a user can act on.

An `OSError` or `UnicodeDecodeError` reaching a user as a traceback says neither which file
nor what to do. `problem()` words it as "PATH: cause; fix" (`FileProblem`, exit code 2 in the
CLI); `read_text()` is how archbench reads its own text files, so damaged bytes come back the
same way.
"""

from __future__ import annotations

import errno
from pathlib import Path

from bench.errors import FileProblem

#: What to do about each kind of failure, by errno.
_FIX = {
    errno.EACCES: "check the permissions of the path or choose another location",
    errno.EPERM: "check the permissions of the path or choose another location",
    errno.EROFS: "the file system is read-only; choose a writable location",
    errno.ENOSPC: "the disk is full; free some space or choose another location",
    errno.EDQUOT: "the disk quota is used up; free some space or choose another location",
    errno.EFBIG: "the file grew past the file-size limit (ulimit -f); raise the limit",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "the path is a folder where a file was expected",
    errno.EEXIST: "something is already there; remove it or choose another path",
    errno.ENOENT: "check the path",
    errno.ENAMETOOLONG: "use a shorter path",
}


def problem(exc: OSError | UnicodeDecodeError, path: str | Path | None = None) -> FileProblem:
    """A `FileProblem` naming the path, the cause and the fix."""
    if isinstance(exc, UnicodeDecodeError):
        where = str(path) if path is not None else "a file"
        return FileProblem(f"{where}: not UTF-8 text (byte {exc.start}: {exc.reason}); the file "
                           "is damaged or not the file archbench expects", path=where)
    name = path if path is not None else exc.filename
    where = str(name) if name is not None else "a file"
    also = f" (and {exc.filename2})" if exc.filename2 else ""
    cause = exc.strerror or type(exc).__name__
    fix = _FIX.get(exc.errno or 0, "check the path and the file system")
    return FileProblem(f"{where}{also}: {cause}; {fix}", path=where)


def read_text(path: str | Path) -> str:
    """The UTF-8 text of a file archbench wrote (run.json, results.jsonl, baselines).

    A missing file raises FileNotFoundError for the caller to explain; any other failure
    comes back as a `FileProblem`.
    """
    try:
        return Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise problem(exc, path) from None
