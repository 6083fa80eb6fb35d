"""A real ComfyUI 0.3.75 server with the pack, started once for the session on loopback."""

from __future__ import annotations

import importlib.util
import shutil
import sys

import pytest
from pack_under_test import PACK_ROOT

_spec = importlib.util.spec_from_file_location("img2img_host", PACK_ROOT / "scripts" / "host.py")
host_harness = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = host_harness  # dataclasses look their module up there
_spec.loader.exec_module(host_harness)

SAMPLE = PACK_ROOT / "example_workflows" / "input" / "sample.png"


@pytest.fixture(scope="session")
def comfy_host():
    host = host_harness.default_host()
    if not host.checkpoint.exists():
        pytest.fail(f"no ComfyUI host at {host.root}: run `python3 scripts/host.py test` (it builds one)")
    return host


@pytest.fixture(scope="session")
def server(comfy_host, tmp_path_factory):
    with host_harness.Server(comfy_host, tmp_path_factory.mktemp("comfyui")) as running:
        shutil.copy(SAMPLE, running.input_dir / SAMPLE.name)
        yield running


@pytest.fixture
def api_graph():
    """The README's example graph on the test checkpoint; each call gets its own copy."""

    def make(seed: int, **overrides) -> dict:
        graph = host_harness.demo_graph(SAMPLE.name, seed)
        for node_input, value in overrides.items():
            node, name = node_input.split(".")
            graph[node]["inputs"][name] = value
        return graph

    return make
