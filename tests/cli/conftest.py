"""The CLI from this checkout, and real ComfyUI servers for it to drive."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from host_servers import host_harness
from pack_under_test import PACK_ROOT

# cli/ installs as img2img_cli. A link of that name puts the checkout's copy on the path without installing
# it, for this process and for the CLI subprocesses (through PYTHONPATH), as scripts/host.py's demo does.
CLI_PATH = Path(tempfile.mkdtemp(prefix="img2img-cli-path-"))
(CLI_PATH / "img2img_cli").symlink_to(PACK_ROOT / "cli", target_is_directory=True)
sys.path.insert(0, str(CLI_PATH))


@pytest.fixture(scope="session", autouse=True)
def _remove_cli_path() -> Iterator[None]:
    yield
    shutil.rmtree(CLI_PATH)


@pytest.fixture(scope="session")
def checkpoint(comfy_host) -> str:
    return host_harness.TEST_CHECKPOINT


@pytest.fixture
def cli_env() -> dict[str, str]:
    """The environment for ``python -m img2img_cli`` in a subprocess."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(CLI_PATH), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def make_images() -> Callable[..., list[Path]]:
    """Writes noise pictures of the given (width, height), named so that they sort in the given order."""

    def make(folder: Path, sizes: list[tuple[int, int]], start: int = 0) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(start)
        paths = []
        for number, (width, height) in enumerate(sizes, start):
            path = folder / f"image{number:02d}.png"
            Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
            paths.append(path)
        return paths

    return make
