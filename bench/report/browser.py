"""Open a report in a real headless browser: Debian's Chromium driven by Playwright.

Used by the browser test and to take the README's screenshot, so both see the page the way a
reader does. Never downloads a browser: it finds a system Chromium (or `ARCHBENCH_CHROMIUM`)
and hands its path to Playwright. Playwright is a development dependency; importing this
module without it is fine, opening a page is not.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError

#: Flags that let Chromium run as root in a container with no network and no GPU, quietly:
#: without the background-networking ones it keeps trying to reach Google's hosts.
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-default-apps",
                 "--disable-extensions")
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a system Chromium: $ARCHBENCH_CHROMIUM, else the first candidate on PATH."""
    given = os.environ.get("ARCHBENCH_CHROMIUM")
    if given:
        return given if Path(given).exists() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageLog:
    """What the page said while it was open: console errors, uncaught exceptions, dialogs
    (an `alert` would mean an injected script ran) and every request it made."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@contextmanager
def open_report(path: str | Path, *, width: int = 1400, height: int = 900,
                timeout_s: float = 60.0) -> Iterator[tuple[Any, PageLog]]:
    """Yield (Playwright page, log) with the report loaded and every chart drawn."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BenchError("opening a report in a browser needs Playwright: "
                         "pip install 'archbench[dev]'") from None
    executable = find_chromium()
    if executable is None:
        raise BenchError("no Chromium found; install it (Debian: apt-get install chromium) or "
                         "set ARCHBENCH_CHROMIUM to its path")
    profile = tempfile.mkdtemp(prefix="archbench-chromium-")
    log = PageLog()
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=executable, headless=True, args=list(CHROMIUM_ARGS),
                viewport={"width": width, "height": height})
            try:
                page = context.new_page()
                page.on("console", lambda m: log.console_errors.append(m.text)
                        if m.type == "error" else None)
                page.on("pageerror", lambda e: log.page_errors.append(str(e)))

                def on_dialog(dialog: Any) -> None:
                    log.dialogs.append(dialog.message)
                    dialog.dismiss()

                page.on("dialog", on_dialog)
                page.on("request", lambda r: log.requests.append(r.url))
                page.goto(Path(path).resolve().as_uri(), timeout=timeout_s * 1000)
                page.wait_for_function(
                    "() => document.body.hasAttribute('data-charts-rendered')",
                    timeout=timeout_s * 1000)
                yield page, log
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
