"""Headless Chromium for the UI tests: a page's DOM after its JavaScript ran, and screenshots.

The MLflow and Prefect UIs are single-page apps, so the page is loaded with ``--virtual-time-budget``: Chromium
runs the page's timers and fetches for that much virtual time before it dumps the DOM or takes the picture. A
fresh ``--user-data-dir`` per call means no remembered UI toggle (MLflow keeps its GenAI / model-training switch in
the browser) colours what a new user would see.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
WINDOW = "1440,1000"


def chromium() -> str | None:
    """The browser the tests drive (CI installs Debian's chromium), or None when this machine has none."""
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


def _chromium(url: str, action: list[str], budget_ms: int, timeout_s: float) -> str:
    browser = chromium()
    assert browser, "chromium is not installed (apt-get install -y chromium)"
    with tempfile.TemporaryDirectory(prefix="distilflow-chromium-") as profile:
        done = subprocess.run(
            [
                browser,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={WINDOW}",
                f"--virtual-time-budget={budget_ms}",
                *action,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    assert done.returncode == 0, f"chromium {url}: exit {done.returncode}\n{done.stderr[-2000:]}"
    return done.stdout


def rendered(url: str, *expected: str, budget_ms: int = 10000, tries: int = 3) -> str:
    """The page's DOM once every ``expected`` text is in it; a slow machine gets more virtual time per try."""
    dom = ""
    for attempt in range(tries):
        dom = _chromium(url, ["--dump-dom"], budget_ms * (attempt + 1), timeout_s=120)
        if all(text in dom for text in expected):
            return dom
        time.sleep(1)
    return dom


def screenshot(url: str, target: Path, budget_ms: int = 20000) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    _chromium(url, [f"--screenshot={target}"], budget_ms, timeout_s=120)
    assert target.is_file() and target.stat().st_size > 10_000, f"no screenshot of {url}"
    return target
