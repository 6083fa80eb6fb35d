"""Img2ImgVAEEncode and Img2ImgVAEDecode: pixels to latent space and back with any ComfyUI VAE."""

from __future__ import annotations

from .core.kept_pixels import composite, feathered_weight, match_colours, resized_map
from .core.strength import checked_strength_map
from .inputs import TILING_INPUTS, VAE_ACCELERATE_INPUT
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
                "accelerate": VAE_ACCELERATE_INPUT,
            },
        }

    def encode(self, pixels, vae, tiling, tile_size, overlap, mask=None, accelerate=False):
        latent = {"samples": encode_pixels(vae, pixels, tiling, tile_size, overlap, accelerate)}
        if mask is not None:
            height, width = pixels.shape[1:3]
            if mask.shape[-2:] != (height, width):
                raise ValueError(f"mask is {mask.shape[-1]}×{mask.shape[-2]} but pixels are {width}×{height}")
            latent["noise_mask"] = mask.reshape((-1, 1, height, width))
        return (latent,)


class Img2ImgVAEDecode:
    DESCRIPTION = (
        "Decodes latents back into images, in tiles when they are too large for memory. Given the source "
        "image, it puts the source's own pixels back where the strength map (or the latent's noise mask) is 0, "
        "blending towards the decoded picture over the map, and can match the colours to the source's."
    )
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
            },
            "optional": {
                "source": (
                    "IMAGE",
                    {"tooltip": "The input image: its pixels come back unchanged where the map is 0 (not re-decoded)."},
                ),
                "strength_map": (
                    "MASK",
                    {
                        "tooltip": "The sampler's strength map; without it, the latent's noise mask. The result is "
                        "lerp(source, decoded, map × fade) with the fade rising over `feather` pixels inside."
                    },
                ),
                "feather": (
                    "INT",
                    {
                        "default": 16,
                        "min": 0,
                        "max": 256,
                        "tooltip": "Pixels over which a hard edge of the map fades from the source into the result.",
                    },
                ),
                "color_correction": (
                    "BOOLEAN",
                    {
                        "default": False,
                        "tooltip": "Match the result's L, a and b histograms (CIELAB) to the source's, as "
                        "AUTOMATIC1111's img2img colour correction: against drift over repeated runs.",
                    },
                ),
                "accelerate": VAE_ACCELERATE_INPUT,
            },
        }

    def decode(
        self,
        samples,
        vae,
        tiling,
        tile_size,
        overlap,
        source=None,
        strength_map=None,
        feather=16,
        color_correction=False,
        accelerate=False,
    ):
        images = decode_latent(vae, samples["samples"], tiling, tile_size, overlap, accelerate)
        kept = checked_strength_map(strength_map) if strength_map is not None else samples.get("noise_mask")
        if source is None:
            if strength_map is not None or color_correction:
                raise ValueError("source: strength_map and color_correction need the source image connected")
            return (images,)
        if source.ndim != 4 or source.shape[1:3] != images.shape[1:3] or source.shape[0] not in (1, images.shape[0]):
            raise ValueError(
                f"source is {tuple(source.shape)}, but the decoded images are {tuple(images.shape)}: "
                "connect the IMAGE that was encoded (same size; one image or one per latent)"
            )
        source = source[..., :3].to(images.device).expand(images.shape[0], -1, -1, -1)
        if color_correction:
            images = match_colours(images, source)
        if kept is not None:
            weight = feathered_weight(resized_map(kept, *images.shape[1:3]), feather).to(images.device)
            if weight.shape[0] not in (1, images.shape[0]):
                raise ValueError(f"strength_map has {weight.shape[0]} masks for {images.shape[0]} images")
            images = composite(images, source, weight.expand(images.shape[0], -1, -1, -1))
        return (images,)
