"""Debian's headless Chromium driven by Playwright, without downloading a browser.

Playwright's Python package talks to any recent Chromium over CDP; pointing
`executable_path` at the system `/usr/bin/chromium` (Debian package
`chromium`, listed in .ci/test-packages.txt) means `playwright install` is
never needed. The flags keep Chromium from reaching the network and from
needing a GPU or a sandbox inside containers.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
