"""A real ComfyUI 0.3.75 server with the pack, started once for the session on loopback."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import types

import pytest

from pack_under_test import PACK_ROOT, SAMPLE

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


@pytest.fixture(scope="session")
def comfy_runtime(comfy_host):
    """ComfyUI 0.3.75 imported into this test process, with the test checkpoint loaded.

    The exactness tests call the pack's and core's node classes side by side on the same model,
    thousands of times; through the HTTP server that would take hours. It is the same host code.
    """
    sys.path.insert(0, str(comfy_host.comfyui))  # test-only: ComfyUI is not an installed package
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # set before comfy.model_management picks a device
    import comfy.utils
    import nodes as comfy_nodes
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3

    # Run the pack's __init__ into the package the tests import it as, as ComfyUI loads it.
    pack = sys.modules["comfyui_img2img"]
    importlib.util.spec_from_file_location(pack.__name__, PACK_ROOT / "__init__.py").loader.exec_module(pack)

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
