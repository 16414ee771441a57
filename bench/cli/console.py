"""The one way archbench's command line writes to the terminal.

Messages carry file paths, suite keys (`[settings]`), case names and commands meant to be
pasted back into a shell. Rich would read brackets as markup (and drop them), turn `:name:`
into emoji, and wrap long lines at the terminal's width (breaking a pasted command). So the
consoles take text literally: style is given apart from the text (`say(("error:", "bold red"),
" ", message)`), and `say` never wraps. Tables and progress bars use the same consoles.
"""

from __future__ import annotations

import os
from functools import lru_cache

from rich.console import Console
from rich.text import Text

#: A piece of a message: plain text, or (text, rich style).
Part = str | tuple[str, str]


@lru_cache(maxsize=4)
def console(width: int | None = None) -> Console:
    """Standard output; `width` fixes the width tables are laid out for (a log file)."""
    return Console(highlight=False, markup=False, emoji=False, width=width)


def table_console() -> Console:
    """Standard output for wide tables: on a terminal (or with COLUMNS set) its width; in a
    log (CI, a pipe), 160 columns, since rich's default of 80 would fold every cell."""
    out = console()
    if not out.is_terminal and "COLUMNS" not in os.environ:
        return console(160)
    return out


@lru_cache(maxsize=1)
def error_console() -> Console:
    return Console(stderr=True, highlight=False, markup=False, emoji=False)


def styled(*parts: Part) -> Text:
    """Text made of literal parts, some styled; brackets and colons stay as written."""
    return Text.assemble(*parts)


def say(*parts: Part, err: bool = False, to: Console | None = None) -> None:
    """Print one message, exactly as given and unwrapped (to stderr with `err`, or to the
    console `to`)."""
    (to or (error_console() if err else console())).print(styled(*parts), soft_wrap=True)


#: GitHub Actions shows what a step appends to this file on the run's summary page.
SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


def append_summary(text: str) -> None:
    """Append markdown to the CI step summary, when there is one."""
    path = os.environ.get(SUMMARY_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
