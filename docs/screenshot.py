"""Take the README's screenshot of a report, with the browser setup of the browser test.

Usage: python docs/screenshot.py REPORT.html OUT.png [--width 1200] [--height 1500]
       [--from-section summary]

Opens the report in headless Chromium (Debian's package, through Playwright), waits for every
chart, and saves the top of the page from the given section down.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.report.browser import open_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1500)
    parser.add_argument("--from-section", default=None,
                        help="start the picture at this section (its id), not the page top")
    args = parser.parse_args()
    with open_report(args.report, width=args.width, height=args.height) as (page, log):
        if log.console_errors or log.page_errors:
            raise SystemExit(f"the page reported errors: {log.console_errors + log.page_errors}")
        top = 0.0
        if args.from_section:
            top = page.eval_on_selector(f"#{args.from_section}",
                                        "el => el.getBoundingClientRect().top + window.scrollY")
        page.screenshot(path=str(args.out), clip={"x": 0, "y": top, "width": args.width,
                                                  "height": args.height}, full_page=True)
    print(f"{args.out}: {args.out.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
