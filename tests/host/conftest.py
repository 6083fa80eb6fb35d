"""The example graph for the server tests, and ComfyUI imported into the test process for the in-process ones."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from PIL import Image
from stand_in_models import stand_in_denoiser

from host_servers import host_harness
from pack_under_test import SAMPLE, import_comfyui, load_nodes


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


@pytest.fixture(scope="session")
def stand_in_model(comfy_runtime):
    """The test checkpoint's model with the stand-in denoiser for its UNet."""
    model = comfy_runtime.model.clone()
    model.set_model_unet_function_wrapper(stand_in_denoiser)
    return model


@pytest.fixture(scope="session")
def clean(comfy_runtime) -> dict:
    """The sample picture at 64×64, encoded by the test checkpoint's VAE: an 8×8 latent for the in-process tests."""
    with Image.open(SAMPLE) as picture:
        pixels = np.asarray(picture.convert("RGB").resize((64, 64), Image.LANCZOS), dtype=np.float32) / 255.0
    with torch.inference_mode():
        return {"samples": comfy_runtime.vae.encode(torch.from_numpy(pixels)[None])}


@pytest.fixture
def inference_mode():
    with torch.inference_mode():
        yield


@pytest.fixture
def layer_forwards():
    """``layer_forwards(module, run)``: runs ``run()`` and gives the names of the forwards that the module's
    convolutions and linear layers called instead of their class's (``"PackedForward"``: oneDNN-packed
    weights), and whether any layer still had such a forward after the run."""

    def observe(module: torch.nn.Module, run) -> tuple[set[str], bool]:
        layers = [m for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        seen: set[str] = set()

        def record(layer, inputs):
            seen.add(type(vars(layer).get("forward")).__name__)

        hooks = [layer.register_forward_pre_hook(record) for layer in layers]
        try:
            run()
        finally:
            for hook in hooks:
                hook.remove()
        return seen, any("forward" in vars(layer) for layer in layers)

    return observe
