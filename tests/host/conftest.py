"""A real ComfyUI 0.3.75 server with the pack, started once for the session on loopback."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import types

import pytest

from pack_under_test import PACK_ROOT, SAMPLE, import_comfyui, load_nodes

_spec = importlib.util.spec_from_file_location("img2img_host", PACK_ROOT / "scripts" / "host.py")
host_harness = importlib.util.module_from_spec(_spec)
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
    """Starts servers with the sample image in their input folder; all are stopped after the session."""
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


@pytest.fixture(scope="session")
def comfy_runtime(comfy_host):
    """ComfyUI 0.3.75 imported into this test process, with the test checkpoint loaded.

    The exactness tests call the pack's and core's node classes side by side on the same model,
    thousands of times; through the HTTP server that would take hours. It is the same host code.
    """
    import_comfyui(comfy_host.comfyui)
    import comfy.utils
    import nodes as comfy_nodes
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3

    pack = load_nodes()
    comfy.utils.PROGRESS_BAR_ENABLED = False
    model, clip, vae = comfy_nodes.CheckpointLoaderSimple().load_checkpoint(host_harness.TEST_CHECKPOINT)[:3]
    encode = comfy_nodes.CLIPTextEncode().encode
    return types.SimpleNamespace(
        nodes=comfy_nodes,
        pack=pack.NODE_CLASS_MAPPINGS,
        model=model,
        flow_model=ModelSamplingSD3().patch(model, shift=3.0)[0],
        vae=vae,
        positive=encode(clip, "a watercolor of hills")[0],
        negative=encode(clip, "blurry")[0],
    )
