"""Conversion between Pillow images and ComfyUI's IMAGE / MASK tensors, and PNG metadata.

IMAGE is float32 [batch, height, width, channels] in 0..1; MASK is float32 [batch, height, width]
where 1 marks what is masked out, i.e. 1 - alpha.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo


def pil_to_image_and_mask(picture: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """An upright RGB IMAGE of batch 1 and its MASK (all zeros when the picture has no alpha)."""
    picture = ImageOps.exif_transpose(picture)
    has_alpha = picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info)
    if has_alpha:
        rgba = np.asarray(picture.convert("RGBA"), dtype=np.float32) / 255.0
        rgb, alpha = rgba[..., :3], rgba[..., 3]
    else:
        rgb = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
        alpha = np.ones(rgb.shape[:2], dtype=np.float32)
    return torch.from_numpy(rgb.copy())[None], torch.from_numpy(1.0 - alpha)[None]


def image_to_pil(image: torch.Tensor) -> list[Image.Image]:
    """One 8-bit RGB picture per image of an IMAGE batch."""
    if image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"images must be an IMAGE tensor [batch, height, width, channels], got shape {tuple(image.shape)}"
        )
    pixels = (image.detach().float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    return [Image.fromarray(picture.squeeze(-1) if picture.shape[-1] == 1 else picture) for picture in pixels]


def png_metadata(prompt: dict | None, extra_pnginfo: dict | None) -> PngInfo:
    """The tEXt chunks ComfyUI writes: ``prompt`` (API graph) and each extra entry (``workflow``)."""
    info = PngInfo()
    if prompt is not None:
        info.add_text("prompt", json.dumps(prompt))
    for key, value in (extra_pnginfo or {}).items():
        info.add_text(key, json.dumps(value))
    return info
