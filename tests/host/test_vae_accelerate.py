"""Img2ImgVAEEncode's and Img2ImgVAEDecode's ``accelerate``: the picture within 40 dB PSNR of the plain path's
on the test checkpoint's TAESD and on SD1.5's full-shape KL-VAE, the float32 weights untouched, no copy kept,
tiling kept.

On a device without bfloat16 the nodes take the plain path with a log line, and these tests check that."""

from __future__ import annotations

import logging
import types

import numpy as np
import pytest
import torch
from PIL import Image

from pack_under_test import SAMPLE

MIN_PSNR = 40.0
pytestmark = pytest.mark.usefixtures("inference_mode")


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    with Image.open(SAMPLE) as picture:
        return torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0)[None]


@pytest.fixture(scope="module")
def kl_vae(comfy_runtime):
    import comfy.sd
    from make_test_checkpoint import kl_vae_state_dict

    return comfy.sd.VAE(sd=kl_vae_state_dict())


def accelerates(vae) -> bool:
    from comfyui_img2img.nodes.accelerate import vae_accelerated_dtype

    return vae_accelerated_dtype(vae)[0] is not None


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a.clamp(0, 1) - b.clamp(0, 1)).pow(2).mean()))


def round_trip(runtime, vae, pixels, accelerate: bool, tiling: str = "never"):
    encode, decode = runtime.pack["Img2ImgVAEEncode"](), runtime.pack["Img2ImgVAEDecode"]()
    (latent,) = encode.encode(pixels, vae, tiling, 64, 16, accelerate=accelerate)
    (images,) = decode.decode(latent, vae, tiling, 64, 16, accelerate=accelerate)
    return latent["samples"], images


@pytest.mark.parametrize("which", ["test checkpoint (TAESD)", "SD1.5 KL-VAE"])
def test_accelerated_coding_is_within_40_db_of_the_plain_path_and_leaves_the_weights(
    comfy_runtime, kl_vae, pixels, which, layer_forwards
):
    from comfyui_img2img.nodes.accelerate import kept_bytes

    vae = comfy_runtime.vae if which.startswith("test") else kl_vae
    weights = [p.detach().clone() for p in vae.first_stage_model.parameters()]
    kept_before = kept_bytes()
    plain_latent, plain = round_trip(comfy_runtime, vae, pixels, accelerate=False)
    results = []
    seen, left = layer_forwards(
        vae.first_stage_model, lambda: results.extend(round_trip(comfy_runtime, vae, pixels, accelerate=True))
    )
    fast_latent, fast = results
    # On a CPU with bfloat16 units the convolutions run on oneDNN-packed weights, and are their own again after.
    assert seen == ({"PackedForward"} if accelerates(vae) and vae.device.type == "cpu" else {"NoneType"})
    assert not left
    assert kept_bytes() == kept_before  # the VAE's copy lives for one encode or decode (the UNet's stays kept)
    assert fast.dtype == plain.dtype == torch.float32 and fast.shape == plain.shape
    assert psnr(fast, plain) >= MIN_PSNR, which
    if accelerates(vae):
        assert not torch.equal(fast_latent, plain_latent)  # it really ran in bfloat16
    else:
        assert torch.equal(fast, plain)
    assert vae.vae_dtype == torch.float32
    assert all(torch.equal(p, w) for p, w in zip(vae.first_stage_model.parameters(), weights, strict=True))


def test_accelerated_tiles_stay_within_40_db(comfy_runtime, kl_vae, pixels):
    _, plain = round_trip(comfy_runtime, kl_vae, pixels, accelerate=False, tiling="always")
    _, fast = round_trip(comfy_runtime, kl_vae, pixels, accelerate=True, tiling="always")
    assert psnr(fast, plain) >= MIN_PSNR


def test_a_vae_that_runs_in_another_dtype_takes_the_plain_path_with_a_log_line(comfy_runtime, caplog):
    import comfy.sd
    from make_test_checkpoint import kl_vae_state_dict

    vae = comfy.sd.VAE(sd=kl_vae_state_dict(), dtype=torch.bfloat16)
    # The smallest latent: where the CPU lacks bfloat16 units, the full-size decoder's bfloat16 is emulated and an
    # 8x8 latent took over two minutes (an AVX2 EPYC).
    with caplog.at_level(logging.INFO):
        (images,) = comfy_runtime.pack["Img2ImgVAEDecode"]().decode(
            {"samples": torch.zeros(1, 4, 1, 1)}, vae, "never", 64, 16, accelerate=True
        )
    assert images.shape == (1, 8, 8, 3)
    assert "Img2ImgVAEDecode accelerate: plain path, because it runs in torch.bfloat16 already" in caplog.text


def test_a_torch_without_the_onednn_packing_ops_codes_on_unpacked_bfloat16_weights(
    comfy_runtime, pixels, layer_forwards, monkeypatch
):
    """Where torch has none of the private oneDNN ops that packing runs on, the VAE's layers run their own forward
    on plain bfloat16 weights, within 40 dB of the plain path. Forced onto the bfloat16 path where this CPU has no
    bfloat16 units (oneDNN emulates them: slower, still bfloat16)."""
    from comfyui_img2img.nodes import accelerate

    monkeypatch.setattr(accelerate, "cpu_has_native_bfloat16", lambda: True)
    monkeypatch.setattr(torch.ops, "mkldnn", types.SimpleNamespace())
    vae = comfy_runtime.vae
    plain_latent, plain = round_trip(comfy_runtime, vae, pixels, accelerate=False)
    results = []
    seen, left = layer_forwards(
        vae.first_stage_model, lambda: results.extend(round_trip(comfy_runtime, vae, pixels, accelerate=True))
    )
    fast_latent, fast = results
    assert seen == {"NoneType"} and not left
    assert not torch.equal(fast_latent, plain_latent)  # it ran in bfloat16
    assert psnr(fast, plain) >= MIN_PSNR
    assert vae.vae_dtype == torch.float32
