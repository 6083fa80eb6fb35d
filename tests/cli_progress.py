"""Watching an ``img2img`` run from outside: the manifest lines it has written so far, and waiting for them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path


def manifest_lines(out: Path) -> list[dict]:
    path = out / "manifest.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.05)
