"""pytest plugin (``-p host_servers``): real ComfyUI servers of the project's host, for every test folder.

Servers start on free loopback ports with the sample image in their input folder, and stop after the
session.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys

import pytest

from pack_under_test import PACK_ROOT, SAMPLE

_spec = importlib.util.spec_from_file_location("img2img_host", PACK_ROOT / "scripts" / "host.py")
host_harness = sys.modules.get(_spec.name) or importlib.util.module_from_spec(_spec)
if _spec.name not in sys.modules:
    sys.modules[_spec.name] = host_harness  # dataclasses look their module up there
    _spec.loader.exec_module(host_harness)


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
