"""Pixels to latents and back with any ComfyUI VAE, in tiles when the whole would not fit.

Image VAEs are tiled by the pack's one-pass tiler (``vae_tiles``: each tile coded once, exact where memory
allows); other VAEs (video, audio) by ComfyUI's own tiler. Tiles are used when the whole image would not fit
in free memory (``auto``), on request, or after running out of memory. Every node that codes images goes
through these two functions, so they all tile, check and reshape alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext

import comfy.model_management
import torch

from .accelerate import accelerated_vae
from .inputs import TILING_MODES
from .vae_tiles import coded_in_tiles, supports_one_pass


def _tiles_needed(tiling: str, memory_needed: float, vae) -> bool:
    if tiling not in TILING_MODES:
        raise ValueError(f"tiling must be one of {', '.join(TILING_MODES)}, got {tiling!r}")
    if tiling != "auto":
        return tiling == "always"
    return memory_needed > comfy.model_management.get_free_memory(vae.device)


def _check_tiles(tile_size: int, overlap: int) -> None:
    if tile_size < 8 or overlap < 0:
        raise ValueError(f"tile_size must be at least 8 pixels and overlap at least 0, got {tile_size} and {overlap}")


def _in_tiles(vae, code: Callable[[], torch.Tensor], core_tiled: Callable[[], torch.Tensor], tile_size: int,
              overlap: int, memory_needed: float) -> torch.Tensor:  # fmt: skip
    """``code()`` (ComfyUI's whole-picture call) run in one-pass tiles; ComfyUI's tiler for VAEs it cannot run."""
    if not supports_one_pass(vae):
        logging.info("img2img: this VAE is not an image VAE of 2-D layers: ComfyUI's tiler codes it")
        return core_tiled()
    free = comfy.model_management.get_free_memory(vae.device)
    with coded_in_tiles(vae, tile_size, overlap, memory_needed, free) as exact:
        logging.info("img2img: coding in %s tiles of %d px", "exact" if exact else "streamed", tile_size)
        return code()


def _code_with_tiles_when_needed(
    whole: Callable[[], torch.Tensor], tiled: Callable[[], torch.Tensor], tiling: str, memory_needed: float, vae
) -> torch.Tensor:
    """``whole()`` unless tiles are needed or it runs out of memory, then ``tiled()``."""
    if not _tiles_needed(tiling, memory_needed, vae):
        try:
            return whole()
        except comfy.model_management.OOM_EXCEPTION:
            if tiling == "never":
                raise
            logging.warning("img2img: out of memory coding the whole image, retrying in tiles")
            comfy.model_management.soft_empty_cache()
    return tiled()


def encode_pixels(
    vae,
    pixels: torch.Tensor,
    tiling: str = "auto",
    tile_size: int = 512,
    overlap: int = 64,
    accelerate: bool = False,
    node: str = "Img2ImgVAEEncode",
):
    """An IMAGE batch's latents; each side must be a multiple of the VAE's scale. ``accelerate``: in bfloat16
    where the device runs it fast (``node`` names the caller in the log line where it cannot)."""
    if pixels.ndim != 4 or pixels.shape[0] == 0:
        raise ValueError(f"pixels must be a non-empty IMAGE batch, got shape {tuple(pixels.shape)}")
    scale = vae.spacial_compression_encode()
    height, width = pixels.shape[1:3]
    if height % scale or width % scale:
        # ComfyUI's VAE would crop them silently; a user should choose how to fit instead.
        raise ValueError(
            f"pixels are {width}×{height}, not a multiple of the VAE's scale {scale}: "
            "fit them with Img2ImgLoadImage's multiple (crop, pad or stretch)"
        )
    _check_tiles(tile_size, overlap)
    rgb = pixels[:, :, :, :3]
    with accelerated_vae(vae, node) if accelerate else nullcontext():
        memory_needed = vae.memory_used_encode(rgb.movedim(-1, 1).shape, vae.vae_dtype)
        whole = lambda: vae.encode(rgb)  # noqa: E731
        core_tiled = lambda: vae.encode_tiled(rgb, tile_x=tile_size, tile_y=tile_size, overlap=overlap)  # noqa: E731
        tiled = lambda: _in_tiles(vae, whole, core_tiled, tile_size, overlap, memory_needed)  # noqa: E731
        return _code_with_tiles_when_needed(whole, tiled, tiling, memory_needed, vae)


def decode_latent(
    vae,
    latent: torch.Tensor,
    tiling: str = "auto",
    tile_size: int = 512,
    overlap: int = 64,
    accelerate: bool = False,
    node: str = "Img2ImgVAEDecode",
):
    """The IMAGE batch of a latent batch; a video VAE's frames become images of the batch. ``accelerate`` as
    for ``encode_pixels``."""
    _check_tiles(tile_size, overlap)
    scale = vae.spacial_compression_decode()  # the tiler works in latent units
    with accelerated_vae(vae, node) if accelerate else nullcontext():
        memory_needed = vae.memory_used_decode(latent.shape, vae.vae_dtype)
        whole = lambda: vae.decode(latent)  # noqa: E731
        core_tiled = lambda: vae.decode_tiled(  # noqa: E731
            latent, tile_x=tile_size // scale, tile_y=tile_size // scale, overlap=overlap // scale
        )
        tiled = lambda: _in_tiles(vae, whole, core_tiled, tile_size, overlap, memory_needed)  # noqa: E731
        images = _code_with_tiles_when_needed(whole, tiled, tiling, memory_needed, vae)
    if images.ndim == 5:  # video VAEs return [batch, frames, ...]: one IMAGE per frame
        images = images.reshape(-1, *images.shape[-3:])
    return images
