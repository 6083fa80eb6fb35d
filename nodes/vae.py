"""Img2ImgVAEEncode and Img2ImgVAEDecode: pixels to latent space and back with any ComfyUI VAE.

Large images are coded in overlapping tiles, blended by ComfyUI's tiler, when the whole image
would not fit in free memory (``auto``), on request, or after running out of memory.
"""

from __future__ import annotations

import logging

import comfy.model_management
import torch

TILING_MODES = ("auto", "always", "never")

TILING_INPUTS = {
    "tiling": (list(TILING_MODES), {
        "default": "auto",
        "tooltip": "auto: tiles only when the whole image would not fit in free memory (and after running out). "
                   "always / never: as they say.",
    }),
    "tile_size": ("INT", {
        "default": 512, "min": 64, "max": 4096, "step": 32,
        "tooltip": "Tile edge in pixels when tiling.",
    }),
    "overlap": ("INT", {
        "default": 64, "min": 0, "max": 1024, "step": 16,
        "tooltip": "Pixels each tile shares with its neighbours; they are blended so no seam shows.",
    }),
}  # fmt: skip


def _tiles_needed(tiling: str, memory_needed: float, vae) -> bool:
    if tiling not in TILING_MODES:
        raise ValueError(f"tiling must be one of {', '.join(TILING_MODES)}, got {tiling!r}")
    if tiling != "auto":
        return tiling == "always"
    return memory_needed > comfy.model_management.get_free_memory(vae.device)


def _check_tiles(tile_size: int, overlap: int) -> None:
    if overlap * 2 >= tile_size:
        raise ValueError(f"overlap ({overlap}) must be less than half of tile_size ({tile_size})")


def code_with_tiles_when_needed(whole, tiled, tiling: str, memory_needed: float, vae) -> torch.Tensor:
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


class Img2ImgVAEEncode:
    DESCRIPTION = (
        "Encodes images into the VAE's latent space, in tiles when they are too large for memory. "
        "With a MASK the latent carries it as noise_mask: only the masked area is changed."
    )
    CATEGORY = "img2img"
    FUNCTION = "encode"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The clean latent of the images, for Img2ImgNoiseAtStrength or Img2ImgKSampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "pixels": ("IMAGE", {"tooltip": "The images to encode; each side a multiple of the VAE's scale (8)."}),
                "vae": ("VAE", {"tooltip": "The VAE of the model that will sample the latent."}),
                **TILING_INPUTS,
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Regional img2img: only where the mask is 1 is the image changed."}),
            },
        }

    def encode(self, pixels, vae, tiling, tile_size, overlap, mask=None):
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
        samples = code_with_tiles_when_needed(
            lambda: vae.encode(rgb),
            lambda: vae.encode_tiled(rgb, tile_x=tile_size, tile_y=tile_size, overlap=overlap),
            tiling,
            vae.memory_used_encode(rgb.movedim(-1, 1).shape, vae.vae_dtype),
            vae,
        )
        latent = {"samples": samples}
        if mask is not None:
            if mask.shape[-2:] != (height, width):
                raise ValueError(f"mask is {mask.shape[-1]}×{mask.shape[-2]} but pixels are {width}×{height}")
            latent["noise_mask"] = mask.reshape((-1, 1, height, width))
        return (latent,)


class Img2ImgVAEDecode:
    DESCRIPTION = "Decodes latents back into images, in tiles when they are too large for memory."
    CATEGORY = "img2img"
    FUNCTION = "decode"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The decoded images.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "samples": ("LATENT", {"tooltip": "The latent to decode, from Img2ImgKSampler."}),
                "vae": ("VAE", {"tooltip": "The VAE the latent was encoded with."}),
                **TILING_INPUTS,
            }
        }

    def decode(self, samples, vae, tiling, tile_size, overlap):
        _check_tiles(tile_size, overlap)
        latent = samples["samples"]
        scale = vae.spacial_compression_decode()  # the tiler works in latent units
        images = code_with_tiles_when_needed(
            lambda: vae.decode(latent),
            lambda: vae.decode_tiled(
                latent, tile_x=tile_size // scale, tile_y=tile_size // scale, overlap=overlap // scale
            ),
            tiling,
            vae.memory_used_decode(latent.shape, vae.vae_dtype),
            vae,
        )
        if images.ndim == 5:  # video VAEs return [batch, frames, ...]: one IMAGE per frame
            images = images.reshape(-1, *images.shape[-3:])
        return (images,)
