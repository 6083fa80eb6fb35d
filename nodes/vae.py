"""Img2ImgVAEEncode and Img2ImgVAEDecode: pixels to latent space and back with any ComfyUI VAE."""

from __future__ import annotations

from .inputs import TILING_INPUTS
from .vae_coding import decode_latent, encode_pixels


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
        latent = {"samples": encode_pixels(vae, pixels, tiling, tile_size, overlap)}
        if mask is not None:
            height, width = pixels.shape[1:3]
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
        return (decode_latent(vae, samples["samples"], tiling, tile_size, overlap),)
