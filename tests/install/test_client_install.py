"""The `img2img` command as `pip install comfyui-img2img` gives it: the wheel built from the checkout's tracked files,
installed into fresh virtual environments, plain and with the extra [ray], from the host build's wheelhouse
(no index: what the wheel needs must be in its metadata)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pack_install import tracked_copy

WHEEL_NEEDS = {"requests", "websocket-client", "tqdm", "comfyui-frontend-package"}


def run(*command: str | Path, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def wheel(comfy_host, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    checkout = tracked_copy(root / "checkout")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run(*pip, "wheel", ".", "--no-deps", "--no-index", "--find-links", comfy_host.wheelhouse, "-w", root, cwd=checkout)
    [built] = root.glob("comfyui_img2img-*.whl")
    return built


def fresh_venv(comfy_host, folder: Path, requirement: str) -> Path:
    """A new virtual environment with ``requirement`` installed from the wheelhouse alone; its bin/ folder."""
    run(sys.executable, "-m", "venv", folder, cwd=folder.parent)
    pip = [folder / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-index"]
    run(*pip, "--find-links", comfy_host.wheelhouse, requirement, cwd=folder.parent)
    return folder / "bin"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_wheel_needs_only_the_commands_own_packages_and_its_command_works(comfy_host, wheel, tmp_path):
    bin_dir = fresh_venv(comfy_host, tmp_path / "venv", str(wheel))
    python = bin_dir / "python"
    requires = run(
        python, "-c", "import importlib.metadata as m; print(*m.requires('comfyui-img2img'), sep='\\n')", cwd=tmp_path
    )
    plain = {
        line.split(";")[0].split(">")[0].split("=")[0].strip()
        for line in requires.stdout.splitlines()
        if "extra ==" not in line
    }
    assert plain == WHEEL_NEEDS
    assert run(python, "-c", "import torch", cwd=tmp_path, check=False).returncode != 0  # no torch came with it

    assert "--ray ADDRESS" in run(bin_dir / "img2img", "run", "--help", cwd=tmp_path).stdout
    # Offline: a picture, and a server that is not there. Outside a checkout, so no local host either.
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    args = ["run", "a.png", "--prompt", "x", "--denoise", "0.5", "--out", "out"]
    down = run(bin_dir / "img2img", *args, "--server", f"http://127.0.0.1:{closed_port()}", cwd=tmp_path, check=False)
    assert down.returncode == 1 and "no server left to run it" in down.stderr, down.stdout + down.stderr
    no_ray = run(bin_dir / "img2img", *args, "--ray", "local", "--comfyui", ".", cwd=tmp_path, check=False)
    assert no_ray.returncode == 2 and "pip install 'comfyui-img2img[ray]'" in no_ray.stderr, no_ray.stderr


def test_the_extra_ray_installs_the_cluster_mode(comfy_host, wheel, tmp_path):
    bin_dir = fresh_venv(comfy_host, tmp_path / "venv", f"{wheel}[ray]")
    run(bin_dir / "python", "-c", "import ray, img2img_cli.ray_cluster", cwd=tmp_path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    args = ["run", "a.png", "--prompt", "x", "--denoise", "0.5", "--out", "out", "--ray", "local"]
    no_dir = run(bin_dir / "img2img", *args, cwd=tmp_path, check=False)
    # Ray imports; outside a checkout the command asks for the ComfyUI folder the workers start.
    assert no_dir.returncode == 2 and "--ray needs --comfyui DIR" in no_dir.stderr, no_dir.stderr
