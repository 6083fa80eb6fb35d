"""One ComfyUI server process on loopback, as the tests, the CLI's local host and the benchmark start it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from .layout import Host


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """One ComfyUI server process on loopback, with its own input, output and user folders."""

    def __init__(
        self,
        host: Host,
        workdir: Path,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        preexec_fn: Callable[[], None] | None = None,
        cpu: bool = True,
    ) -> None:
        """``preexec_fn`` runs in the server's process before ComfyUI starts (the fault tests set resource
        limits there); like subprocess's, it must not take locks that another thread of the caller may hold."""
        self.host = host
        self.preexec_fn = preexec_fn
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.input_dir = workdir / "input"
        self.output_dir = workdir / "output"
        self.user_dir = workdir / "user"
        self.temp_dir = workdir / "temp"
        self.log_path = workdir / "server.log"
        for folder in (self.input_dir, self.output_dir, self.user_dir, self.temp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.args = [
            str(host.python),
            "main.py",
            *(["--cpu"] if cpu else []),  # tests always run on the CPU; the bench measures a GPU where one is
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-auto-launch",
            "--input-directory",
            str(self.input_dir),
            "--output-directory",
            str(self.output_dir),
            "--user-directory",
            str(self.user_dir),
            "--temp-directory",
            str(self.temp_dir),
            "--database-url",
            "sqlite:///:memory:",
            *extra_args,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180.0) -> Server:
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                self.args,
                cwd=self.host.comfyui,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=self.preexec_fn,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode} during start-up:\n{self.log()}")
            try:
                self.get_json("/system_stats")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer /system_stats within {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def get_json(self, path: str) -> object:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.load(response)

    def post_json(self, path: str, body: object) -> tuple[int, object | None]:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        return status, json.loads(body) if body else None  # /interrupt answers with an empty body

    def queue(self, prompt: dict, extra_data: dict | None = None) -> str:
        status, answer = self.post_json(
            "/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex, "extra_data": extra_data or {}}
        )
        if status != 200:
            raise RuntimeError(f"/prompt refused the graph ({status}): {json.dumps(answer, indent=1)}")
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300.0) -> dict:
        """The /history entry of a prompt once it has finished, successfully or not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get_json(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"]["status_str"] in ("success", "error"):
                    return entry
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI died while running {prompt_id}:\n{self.log()}")
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout} s")

    def saved_paths(self, entry: dict) -> list[Path]:
        """The files a prompt's /history entry says its nodes saved, in the entry's order; an error naming the
        prompt's status where it did not succeed."""
        if entry["status"]["status_str"] != "success":
            raise RuntimeError(f"the prompt failed: {json.dumps(entry['status'], indent=1)}")
        images = [image for output in entry["outputs"].values() for image in output.get("images", [])]
        return [self.output_dir / image["subfolder"] / image["filename"] for image in images]
