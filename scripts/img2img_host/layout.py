"""Where a host lives, and the harness's log lines."""

from __future__ import annotations

import functools
import importlib.util
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[2]
TEST_CHECKPOINT = "img2img-test-sd15.safetensors"  # random weights: every shape and code path, pictures of noise
DEMO_CHECKPOINT = "img2img-demo-sd15.safetensors"  # the project's trained demo model: real pictures


@functools.cache
def core_module(name: str):
    """A module of the pack's pure core (nodes/core/<name>.py), loaded from its file for the scripts: the core
    imports nothing from ComfyUI, only torch, numpy and Pillow."""
    spec = importlib.util.spec_from_file_location(f"img2img_core_{name}", PACK_ROOT / "nodes" / "core" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    def demo_checkpoint(self) -> Path:
        return self.comfyui / "models" / "checkpoints" / DEMO_CHECKPOINT

    def frontend_root(self, version: str) -> Path:
        """The static/ folder of comfyui-frontend-package ``version`` (the build's NEWER_FRONTEND), for
        ComfyUI's --front-end-root."""
        return self.root / "frontends" / version / "comfyui_frontend_package" / "static"

    @property
    def registry_venv(self) -> Path:
        """comfy-cli's virtual environment (the registry's `comfy node` commands)."""
        return self.root / "registry-venv"

    @property
    def wheelhouse(self) -> Path:
        """Wheels for installing the `img2img` command into fresh environments without an index."""
        return self.root / "wheelhouse"

    @property
    def stamp(self) -> Path:
        return self.root / "build.json"


def default_host() -> Host:
    return Host(Path(os.environ.get("IMG2IMG_HOST_DIR", PACK_ROOT / ".host")).resolve())
