"""Img2ImgKSampler's ``accelerate`` input: close to the plain path, weights untouched, patches honoured.

README states the tolerance: the final latent within 4 % relative RMS of the plain path's. On a CPU without
native bfloat16 the node takes the plain path, and these tests check that instead.
"""

from __future__ import annotations

import gc
import logging
import types

import numpy as np
import pytest
import torch
from PIL import Image

from host_servers import host_harness
from pack_under_test import SAMPLE

TOLERANCE_REL_RMS = 0.04
SEED = 7
STEPS, DENOISE = 10, 0.5


# ComfyUI's executor runs every node under inference mode; so do these calls.
pytestmark = pytest.mark.usefixtures("inference_mode")


@pytest.fixture(scope="module")
def latent(comfy_runtime) -> dict:
    with Image.open(SAMPLE) as picture:
        pixels = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    with torch.inference_mode():
        return {"samples": comfy_runtime.vae.encode(torch.from_numpy(pixels)[None])}


@pytest.fixture(scope="module")
def accelerates(comfy_runtime) -> bool:
    from comfyui_img2img.nodes.accelerate import accelerated_dtype

    return accelerated_dtype(comfy_runtime.model)[0] is not None


@pytest.fixture
def bfloat16_units(monkeypatch):
    """The accelerated path on this CPU as on one with bfloat16 units; where it has none, oneDNN emulates them
    (slower, still bfloat16). The copy of the weights it keeps goes at the end, as the other tests expect none
    kept on such a CPU."""
    from comfyui_img2img.nodes import accelerate

    monkeypatch.setattr(accelerate, "cpu_has_native_bfloat16", lambda: True)
    yield
    accelerate.release_kept_copy()


def pack(runtime, model, latent, accelerate: bool) -> torch.Tensor:
    output = runtime.pack["Img2ImgKSampler"]().sample(
        model, runtime.positive, runtime.negative, latent, SEED, STEPS, 7.0, "euler", "normal", DENOISE,
        "steps_x_denoise", "comfy", accelerate,
    )  # fmt: skip
    return output["result"][0]["samples"]


def core(runtime, model, latent) -> torch.Tensor:
    return runtime.nodes.KSamplerAdvanced().sample(
        model, "enable", SEED, STEPS, 7.0, "euler", "normal", runtime.positive, runtime.negative, latent,
        STEPS - int(STEPS * DENOISE), 10000, "disable",
    )[0]["samples"]  # fmt: skip


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt())


def patched(model, scale: float):
    """A clone with a weight patch as LoRA loaders add them: a diff on the UNet's output convolution."""
    clone = model.clone()
    key = "diffusion_model.out.2.weight"
    weight = clone.get_model_object(key)
    clone.add_patches({key: (scale * weight.abs().mean() * torch.ones_like(weight),)})
    return clone


def test_accelerate_is_close_to_the_plain_path_or_takes_it(comfy_runtime, latent, accelerates, caplog):
    plain = pack(comfy_runtime, comfy_runtime.model, latent, accelerate=False)
    with caplog.at_level(logging.INFO):
        fast = pack(comfy_runtime, comfy_runtime.model, latent, accelerate=True)
    if accelerates:
        assert 0 < rel_rms(fast, plain) <= TOLERANCE_REL_RMS
        assert torch.isfinite(fast).all()
    else:
        assert torch.equal(fast, plain)
        assert "Img2ImgKSampler accelerate: plain path, because" in caplog.text


def test_accelerate_leaves_the_float32_weights_as_they_were(comfy_runtime, latent):
    unet = comfy_runtime.model.model.diffusion_model
    before = {name: tensor.clone() for name, tensor in unet.state_dict().items()}
    pack(comfy_runtime, comfy_runtime.model, latent, accelerate=True)
    after = unet.state_dict()
    assert unet.dtype == torch.float32
    assert all(
        after[name].dtype == tensor.dtype and torch.equal(after[name], tensor) for name, tensor in before.items()
    )
    # ... and core, run next on the same model, gives what it gave before any accelerated run.
    assert torch.equal(
        core(comfy_runtime, comfy_runtime.model, latent), core(comfy_runtime, comfy_runtime.model, latent)
    )


def test_layers_run_on_packed_weights_during_an_accelerated_run_only(
    comfy_runtime, latent, accelerates, layer_forwards
):
    """On a CPU with bfloat16 units every convolution and linear layer of the UNet runs on oneDNN-packed
    weights (a plain bfloat16 weight is reordered on every call); afterwards the layers are their own again."""
    unet = comfy_runtime.model.model.diffusion_model
    seen, left = layer_forwards(unet, lambda: pack(comfy_runtime, comfy_runtime.model, latent, accelerate=True))
    packs = accelerates and comfy_runtime.model.load_device.type == "cpu"
    assert seen == ({"PackedForward"} if packs else {"NoneType"})
    assert not left
    seen, _ = layer_forwards(unet, lambda: pack(comfy_runtime, comfy_runtime.model, latent, accelerate=False))
    assert seen == {"NoneType"}


def test_a_patched_model_gives_the_same_result_through_the_pack_as_through_core(comfy_runtime, latent, accelerates):
    model = patched(comfy_runtime.model, scale=0.5)
    plain = pack(comfy_runtime, model, latent, accelerate=False)
    unpatched = pack(comfy_runtime, comfy_runtime.model, latent, accelerate=False)
    assert rel_rms(plain, unpatched) > 10 * TOLERANCE_REL_RMS  # the patch matters
    assert float((plain - core(comfy_runtime, model, latent)).abs().max()) <= 1e-4

    # Accelerated: first on the unpatched model, so that the kept low-precision weights must be renewed.
    pack(comfy_runtime, comfy_runtime.model, latent, accelerate=True)
    fast = pack(comfy_runtime, model, latent, accelerate=True)
    assert rel_rms(fast, plain) <= TOLERANCE_REL_RMS
    assert rel_rms(pack(comfy_runtime, comfy_runtime.model, latent, accelerate=True), unpatched) <= (
        TOLERANCE_REL_RMS if accelerates else 0
    )


def test_the_kept_copy_goes_with_the_model(comfy_runtime, latent, accelerates):
    """The bfloat16 copy kept between runs on a CPU lives as long as the model's float32 weights: when ComfyUI
    frees the model (another checkpoint, "unload models and execution cache"), the copy goes too."""
    import comfy.model_management

    from comfyui_img2img.nodes.accelerate import kept_bytes

    model = comfy_runtime.nodes.CheckpointLoaderSimple().load_checkpoint(host_harness.TEST_CHECKPOINT)[0]
    pack(comfy_runtime, model, latent, accelerate=True)
    unet_bytes = sum(p.numel() for p in model.model.diffusion_model.parameters()) * 2
    assert kept_bytes() == (unet_bytes if accelerates else 0)

    del model
    comfy.model_management.unload_all_models()
    gc.collect()

    assert kept_bytes() == 0


def test_a_torch_without_the_onednn_packing_ops_runs_on_unpacked_bfloat16_weights(
    comfy_runtime, latent, bfloat16_units, layer_forwards, monkeypatch, caplog
):
    """Packing runs on private ``torch.ops.mkldnn`` ops: where a torch release lacks one, the run still completes,
    its layers on their own forward with plain bfloat16 weights, as close to the plain path as the packed run, and
    one log line says so."""
    from comfyui_img2img.nodes.accelerate import release_kept_copy

    unet = comfy_runtime.model.model.diffusion_model
    plain = pack(comfy_runtime, comfy_runtime.model, latent, accelerate=False)
    results = []

    def accelerated_run() -> None:
        results.append(pack(comfy_runtime, comfy_runtime.model, latent, accelerate=True))

    seen, _ = layer_forwards(unet, accelerated_run)
    assert seen == {"PackedForward"}  # this torch has the ops

    release_kept_copy()  # else the next run reuses its packed weights and packs nothing; a new torch's runs start bare
    present = ("_convolution_pointwise", "_reorder_linear_weight", "_linear_pointwise")
    without = types.SimpleNamespace(**{op: getattr(torch.ops.mkldnn, op) for op in present})
    monkeypatch.setattr(torch.ops, "mkldnn", without)
    with caplog.at_level(logging.INFO):
        seen, left = layer_forwards(unet, accelerated_run)
    packed, unpacked = results
    assert seen == {"NoneType"} and not left
    unpacked_lines = [r.getMessage() for r in caplog.records if "unpacked torch.bfloat16 weights" in r.getMessage()]
    assert len(unpacked_lines) == 1
    assert "has no torch.ops.mkldnn._reorder_convolution_weight" in unpacked_lines[0]
    assert torch.isfinite(unpacked).all()
    assert 0 < rel_rms(unpacked, plain) <= TOLERANCE_REL_RMS  # it ran in bfloat16
    assert rel_rms(unpacked, packed) <= TOLERANCE_REL_RMS
