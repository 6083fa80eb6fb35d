"""Debian's Chromium for the browser tests: Playwright drives it and never downloads a browser."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .layout import log, phase

CHROMIUM = Path("/usr/bin/chromium")
# Headless and offline: without the networking flags Chromium keeps calling hosts this machine cannot reach.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)


def ensure_chromium() -> None:
    """Installs Debian's chromium package with apt when it is missing and this runs as root."""
    if CHROMIUM.exists():
        return
    if os.geteuid() != 0:
        log(f"no {CHROMIUM}: install Debian's chromium package (as root) for the browser tests")
        return
    with phase("chromium from Debian's packages"):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            stdout=subprocess.DEVNULL,
        )
