"""pytest plugin (``-p host_servers``): real ComfyUI servers of the project's host, for every test folder.

Servers start on free loopback ports with the sample image in their input folder, and stop after the
session.
"""

from __future__ import annotations

import shutil

import pytest

import img2img_host as host_harness  # scripts/img2img_host: pytest's pythonpath holds scripts/
from pack_under_test import SAMPLE


@pytest.fixture(scope="session")
def comfy_host():
    host = host_harness.default_host()
    if not host.checkpoint.exists():
        pytest.fail(f"no ComfyUI host at {host.root}: run `python3 scripts/host.py test` (it builds one)")
    return host


@pytest.fixture(scope="session")
def start_server(comfy_host, tmp_path_factory):
    """Starts a server (with extra ComfyUI arguments, if any) and returns it once it answers."""
    started = []

    def start(*extra_args: str):
        server = host_harness.Server(comfy_host, tmp_path_factory.mktemp("comfyui"), extra_args=extra_args)
        started.append(server.start())
        shutil.copy(SAMPLE, server.input_dir / SAMPLE.name)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(start_server):
    return start_server()


def load_and_save(image: str, prefix: str, **load_inputs) -> dict:
    """A graph without a model: Img2ImgLoadImage straight into Img2ImgSaveImage."""
    load = {
        "image": image, "frames": "first", "folder": "", "index": 0, "limit": 1, "width": 0, "height": 0,
        "multiple": 8, "fit": "crop", "method": "lanczos", **load_inputs,
    }  # fmt: skip
    return {
        "1": {"class_type": "Img2ImgLoadImage", "inputs": load},
        "2": {"class_type": "Img2ImgSaveImage", "inputs": {
            "images": ["1", 0], "filename_prefix": prefix, "format": "png", "quality": 95, "source_name": ["1", 2]}},
    }  # fmt: skip
