"""Img2ImgVAEEncode and Img2ImgVAEDecode: pixels to latent space and back with any ComfyUI VAE."""

from __future__ import annotations


class Img2ImgVAEEncode:
    DESCRIPTION = (
        "Encodes images into the latent space of the VAE, keeping the MASK as the latent's noise_mask when given."
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
                "pixels": ("IMAGE", {"tooltip": "The images to encode."}),
                "vae": ("VAE", {"tooltip": "The VAE of the model that will sample the latent."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Regional img2img: only where the mask is 1 is the image changed."}),
            },
        }

    def encode(self, pixels, vae, mask=None):
        if pixels.ndim != 4 or pixels.shape[0] == 0:
            raise ValueError(f"pixels must be a non-empty IMAGE batch, got shape {tuple(pixels.shape)}")
        latent = {"samples": vae.encode(pixels[:, :, :, :3])}
        if mask is not None:
            latent["noise_mask"] = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
        return (latent,)


class Img2ImgVAEDecode:
    DESCRIPTION = "Decodes latents back into images with the VAE."
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
            }
        }

    def decode(self, samples, vae):
        images = vae.decode(samples["samples"])
        if images.ndim == 5:  # video VAEs return [batch, frames, ...]: one IMAGE per frame
            images = images.reshape(-1, *images.shape[-3:])
        return (images,)
