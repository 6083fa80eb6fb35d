"""The one-pass VAE tiler (nodes/vae_tiles.py) on SD1.5's full-shape KL VAE (random weights: tile errors glare)
and on the test checkpoint's TAESD-shaped VAE: each tile coded once, exact tiles equal to the whole picture,
streamed tiles with a margin of the network's reach, a failing tile that stops them all."""

from __future__ import annotations

import math
import threading

import pytest
import torch

pytestmark = pytest.mark.usefixtures("inference_mode")


@pytest.fixture(scope="module")
def kl_vae(comfy_runtime):
    import comfy.sd
    from make_test_checkpoint import kl_vae_state_dict

    return comfy.sd.VAE(sd=kl_vae_state_dict())


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    """A picture with structure at every scale: smooth gradients, edges and noise."""
    generator = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.linspace(0, 1, 192), torch.linspace(0, 1, 256), indexing="ij")
    smooth = torch.stack([x, y, (x * y) ** 0.5], dim=-1)
    edges = ((x * 7).floor() % 2 == (y * 5).floor() % 2).float()[..., None] * 0.3
    return (0.6 * smooth + edges + 0.1 * torch.rand(192, 256, 3, generator=generator)).clamp(0, 1)[None]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float((a.clamp(0, 1) - b.clamp(0, 1)).double().square().mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def tiled(vae, code, tile_size: int, margin: int = 0, exact: bool = True):
    from comfyui_img2img.nodes.vae_tiles import coded_in_tiles

    with coded_in_tiles(vae, tile_size, margin, memory_needed=1.0, free_memory=math.inf if exact else 0.0) as used:
        assert used == exact
        return code()


@pytest.mark.parametrize("which", ["kl", "taesd"])
def test_exact_tiles_equal_the_whole_picture(comfy_runtime, kl_vae, pixels, which):
    vae = kl_vae if which == "kl" else comfy_runtime.vae
    whole = vae.encode(pixels)
    latent = tiled(vae, lambda: vae.encode(pixels), 64)  # 12 tiles of 8x8 latent pixels
    assert float((latent - whole).abs().max()) <= 1e-4 * float(whole.abs().max())
    image = vae.decode(whole)
    assert psnr(tiled(vae, lambda: vae.decode(whole), 64), image) >= 100


def test_streamed_tiles_equal_the_whole_with_a_margin_of_the_reach_and_not_with_less(comfy_runtime, pixels):
    """TAESD has no normalisation: streamed tiles are exact once their margin covers its convolutions' reach
    (19 latent pixels, 152 px: see test_the_reach_of_sds_vaes), and differ where it does not."""
    vae = comfy_runtime.vae
    whole = vae.encode(pixels)
    full = tiled(vae, lambda: vae.encode(pixels), 64, margin=152, exact=False)
    assert float((full - whole).abs().max()) <= 1e-4 * float(whole.abs().max())
    short = tiled(vae, lambda: vae.encode(pixels), 64, margin=16, exact=False)
    assert float((short - whole).abs().max()) > 1e-2 * float(whole.abs().max())
    image = vae.decode(whole)
    assert psnr(tiled(vae, lambda: vae.decode(whole), 64, margin=152, exact=False), image) >= 100


def test_streamed_tiles_of_a_normalising_vae_come_closer_to_the_whole_than_cores_tiler(kl_vae, monkeypatch):
    """Streamed, the KL VAE's GroupNorms use the statistics of a probe over a collage of a quarter of the picture's
    blocks: not the whole picture's (the random weights amplify the difference), but one set for every tile,
    which brings the picture closer to the whole pass than core's tiler (local statistics, three grids)."""
    from comfyui_img2img.nodes import vae_tiles

    monkeypatch.setattr(vae_tiles, "PROBE_BLOCK", 8)
    monkeypatch.setattr(vae_tiles, "PROBE_LATENT_PIXELS", 32 * 32 // 4)
    latent = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    whole = kl_vae.decode(latent)
    streamed = tiled(kl_vae, lambda: kl_vae.decode(latent), 128, margin=64, exact=False)
    core = kl_vae.decode_tiled(latent, tile_x=16, tile_y=16, overlap=4)
    assert psnr(core, whole) + 3 <= psnr(streamed, whole) < 60


def test_the_reach_of_sds_vaes(comfy_runtime, kl_vae):
    """The reach of the convolutions between attention blocks, in latent pixels, as the README states it."""
    from comfyui_img2img.nodes.vae_tiles import probe

    for vae, encoder_reach, decoder_reach in ((kl_vae, 10.5, 14.25), (comfy_runtime.vae, 18.125, 18.125)):
        model = vae.first_stage_model
        pixels = torch.rand(1, 3, 64, 64)
        assert probe(model, model.encode, pixels, 8).reach == pytest.approx(encoder_reach)
        assert probe(model, model.decode, torch.randn(1, 4, 8, 8), 8).reach == pytest.approx(decoder_reach)


def test_a_failing_tile_stops_every_tile_and_the_error_reaches_the_caller(comfy_runtime, pixels):
    from comfyui_img2img.nodes.vae_tiles import Lockstep

    lockstep = Lockstep(4)

    def work(index: int) -> int:
        lockstep.sync(index, lambda parts: parts)
        if index == 2:
            raise RuntimeError("tile 2 ran out of memory")
        return lockstep.sync(index, lambda parts: [sum(parts)] * 4)

    with pytest.raises(RuntimeError, match="tile 2 ran out of memory"):
        lockstep.run(work)
    assert threading.active_count() < 10  # no tile thread left waiting
    assert Lockstep(3).run(lambda index: index * 2) == [0, 2, 4]


def test_an_interrupt_stops_a_tiled_run(comfy_runtime, pixels):
    import comfy.model_management

    vae = comfy_runtime.vae
    comfy.model_management.interrupt_current_processing(True)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            tiled(vae, lambda: vae.encode(pixels), 64)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert vae.encode(pixels).shape == (1, 4, 24, 32)  # the network's forwards are its own again
