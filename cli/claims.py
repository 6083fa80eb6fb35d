"""Claims on inputs in the output folder, so that runs into one folder do each input once between them.

Before an input is sent to a server, the run creates ``DIR/.img2img-claims/<key>.claim`` with O_EXCL (one
creator wins, on any local or network file system that honours it) holding its host, pid and run id, and
removes it when the image is done or failed. A claim of another run is left alone while that run lives:
on the same host its pid must be alive; on any host the run refreshes its claims' modification time every
HEARTBEAT_S, and a claim untouched for STALE_S is a dead run's. A dead run's claim is taken over by the one
run that creates its take-over token (O_EXCL again), which checks that the claim is still the dead run's
before removing it, so a live claim is never removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

CLAIMS_FOLDER = ".img2img-claims"
HEARTBEAT_S = 30.0
STALE_S = 600.0  # twenty heartbeats missed: the run is gone, or its machine is


def claim_name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a zombie does not). Windows has no signal 0 (os.kill would
    end the process there): its claims rely on the heartbeat alone."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): the signal's answer stands
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class Claims:
    """The claims of one run in one output folder; used by its worker threads or its Ray driver."""

    def __init__(self, out_dir: Path) -> None:
        self.folder = out_dir / CLAIMS_FOLDER
        self.folder.mkdir(parents=True, exist_ok=True)
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "run": uuid.uuid4().hex}
        self._held: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="img2img claims", daemon=True)
        self._heartbeat.start()

    def claim(self, key: str) -> bool:
        """True when the input is this run's now (or still: a job back in the queue keeps its claim); False while
        another live run holds it."""
        with self._lock:
            if key in self._held:
                return True
        path = self.folder / f"{claim_name(key)}.claim"
        for _ in range(3):
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
            except FileExistsError:
                if not self._take_over(path):
                    return False
                continue
            try:
                os.write(descriptor, json.dumps(self.owner).encode())
            finally:
                os.close(descriptor)
            with self._lock:
                self._held[key] = path
            return True
        return False

    def release(self, key: str) -> None:
        with self._lock:
            path = self._held.pop(key, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Releases every claim left (a stopped run's) and removes the folder when no other run uses it."""
        self._closed.set()
        with self._lock:
            held, self._held = list(self._held.values()), {}
        for path in held:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # another run's claims are still there
            self.folder.rmdir()

    def _identity(self, path: Path) -> tuple[str, bool] | None:
        """Who holds the claim at ``path`` and whether that run is alive; None when the claim is gone."""
        try:
            stat = path.stat()
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            owner = json.loads(text)
            identity = owner["run"]
        except (ValueError, KeyError, TypeError):
            # Created and not yet written, or cut short by a crash: only its age tells.
            return f"inode-{stat.st_ino}-{stat.st_mtime_ns}", time.time() - stat.st_mtime < STALE_S
        if time.time() - stat.st_mtime > STALE_S:
            return identity, False
        if owner.get("host") == self.owner["host"]:
            mine_before = owner.get("pid") == self.owner["pid"] and identity != self.owner["run"]
            return identity, not mine_before and pid_alive(int(owner.get("pid", 0)))
        return identity, True

    def _take_over(self, path: Path) -> bool:
        """Removes a dead run's claim at ``path``; True when the name is free to claim again."""
        seen = self._identity(path)
        if seen is None:
            return True
        identity, alive = seen
        if alive:
            return False
        token = path.with_name(f"{path.stem}.takeover-{identity}")
        try:
            os.close(os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return False  # another run is taking it over
        try:
            now = self._identity(path)
            if now is not None and now[0] == identity:
                path.unlink(missing_ok=True)
                print(f"img2img: took over a claim of a run that is gone ({path.name})", file=sys.stderr)
        finally:
            token.unlink(missing_ok=True)
        return True

    def _beat(self) -> None:
        while not self._closed.wait(HEARTBEAT_S):
            with self._lock:
                held = list(self._held.values())
            for path in held:
                with contextlib.suppress(OSError):  # released meanwhile
                    os.utime(path)
