"""Img2ImgLoadImage: a picture, or a folder of them, from ComfyUI's input folder as IMAGE and MASK."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import folder_paths
import torch

from .core.fit import FIT_MODES, RESAMPLE_METHODS, fit_image_and_mask
from .core.images import IMAGE_SUFFIXES, load_image_file, probe_image_file
from .core.paths import resolve_inside


def _input_dir() -> Path:
    return Path(folder_paths.get_input_directory())


def folder_images(folder: str) -> list[str]:
    """The image files of an input subfolder, as input-relative names, in a stable sorted order."""
    directory = resolve_inside(_input_dir(), folder, "folder")
    if not directory.is_dir():
        raise ValueError(f"folder: no folder {folder!r} in the input folder")
    names = [
        entry.name
        for entry in directory.iterdir()
        if entry.suffix.lower() in IMAGE_SUFFIXES and entry.is_file() and not entry.name.startswith(".")
    ]
    return [f"{folder.rstrip('/')}/{name}" for name in sorted(names, key=lambda n: (n.casefold(), n))]


def selected_names(image: str, folder: str, index: int, limit: int) -> list[str]:
    """The file names the node loads: ``image``, or ``limit`` images of ``folder`` from ``index`` on."""
    # ComfyUI skips its own min/max checks for the inputs that VALIDATE_INPUTS takes.
    if index < 0:
        raise ValueError(f"index must be 0 or more, got {index}")
    if limit < 0:
        raise ValueError(f"limit must be 0 (every file from index on) or more, got {limit}")
    if not folder:
        return [image]
    names = folder_images(folder)
    if not names:
        raise ValueError(f"folder: {folder!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if index >= len(names):
        raise ValueError(f"index: {index} is past the last of the {len(names)} images in {folder!r} (from 0)")
    return names[index : index + limit] if limit else names[index:]


# How Img2ImgLoadImage sizes what it loads (nodes/core/fit.py).
FIT_INPUTS = {
    "width": ("INT", {
        "default": 0, "min": 0, "max": 16384,
        "tooltip": "Target width; 0 keeps it, or computes it from height keeping the aspect ratio.",
    }),
    "height": ("INT", {
        "default": 0, "min": 0, "max": 16384,
        "tooltip": "Target height; 0 keeps it, or computes it from width. Both set: fit inside.",
    }),
    "multiple": ("INT", {
        "default": 8, "min": 1, "max": 512,
        "tooltip": "Both sides become a multiple of this (8 for SD VAEs, 64 for some models).",
    }),
    "fit": (list(FIT_MODES), {
        "default": "crop",
        "tooltip": "crop: center-crop to the multiple below. pad: pad to the multiple above (MASK 1 "
                   "in the pad). stretch: resize to the nearest multiple.",
    }),
    "method": (list(RESAMPLE_METHODS), {
        "default": "lanczos",
        "tooltip": "Resampling filter for resizing.",
    }),
}  # fmt: skip


class Img2ImgLoadImage:
    DESCRIPTION = (
        "Loads an image from ComfyUI's input folder (upload one with the button) upright per its EXIF data, with "
        "its transparency as MASK, 16-bit files at full precision; or, with folder set, images of an input subfolder "
        "in sorted order. Optionally resizes and fits both sides to a multiple of 8 so nothing is cropped later."
    )
    CATEGORY = "img2img"
    FUNCTION = "load"
    RETURN_TYPES = ("IMAGE", "MASK", "STRING")
    RETURN_NAMES = ("image", "mask", "filename")
    OUTPUT_TOOLTIPS = (
        "The images as RGB, a batch when several frames or files are loaded.",
        "1 − alpha: 1 where the image is transparent (or padded); all zeros for images without alpha.",
        "The source file names (one per line in a batch), for Img2ImgSaveImage's source_name.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        input_dir = folder_paths.get_input_directory()
        files = sorted(name for name in os.listdir(input_dir) if os.path.isfile(os.path.join(input_dir, name)))
        return {
            "required": {
                "image": (folder_paths.filter_files_content_types(files, ["image"]), {
                    "image_upload": True,
                    "tooltip": "A file in ComfyUI's input folder, or a path inside it such as 'photos/cat.png'.",
                }),
                "frames": (["first", "all"], {
                    "default": "first",
                    "tooltip": "Animated GIF/APNG/WebP: the first frame, or all frames as a batch.",
                }),
                "folder": ("STRING", {
                    "default": "",
                    "tooltip": "Batch img2img: a subfolder of the input folder; when set, its images are loaded "
                               "instead of 'image'.",
                }),
                "index": ("INT", {
                    "default": 0, "min": 0, "max": 1_000_000,
                    "tooltip": "Folder mode: the first image to load (0 = the first in sorted order). Set its "
                               "control to increment to walk the folder one prompt at a time.",
                }),
                "limit": ("INT", {
                    "default": 1, "min": 0, "max": 10_000,
                    "tooltip": "Folder mode: how many images from index on (0 = all); they become one batch.",
                }),
                **FIT_INPUTS,
            }
        }  # fmt: skip

    @classmethod
    def VALIDATE_INPUTS(cls, image, folder, index, limit):
        try:
            names = selected_names(image, folder, index, limit)
            for name in names:
                path = resolve_inside(_input_dir(), name, "image")
                if not path.is_file():
                    return f"image: no file {name!r} in the input folder"
                probe_image_file(path, name)
        except ValueError as error:
            return str(error)
        return True

    @classmethod
    def IS_CHANGED(cls, image, folder, index, limit, **_):  # ComfyUI passes every input here
        # The content, not the names: a re-uploaded file under the same name runs again.
        digest = hashlib.sha256()
        for name in selected_names(image, folder, index, limit):
            digest.update(name.encode())
            digest.update(resolve_inside(_input_dir(), name, "image").read_bytes())
        return digest.hexdigest()

    def load(self, image, frames, folder, index, limit, width, height, multiple, fit, method):
        images, masks, names = [], [], selected_names(image, folder, index, limit)
        for name in names:
            path = resolve_inside(_input_dir(), name, "image")
            pixels, mask = load_image_file(path, all_frames=frames == "all", name=name)
            pixels, mask = fit_image_and_mask(pixels, mask, width, height, multiple, fit, method)
            images.append(pixels)
            masks.append(mask)
        sizes = {tuple(pixels.shape[1:3]) for pixels in images}
        if len(sizes) > 1:
            raise ValueError(
                f"folder: the images come out in {len(sizes)} sizes "
                f"({', '.join(f'{w}×{h}' for h, w in sorted(sizes))}) "
                "and one batch needs one size: use images of one aspect ratio, or limit 1 to load one per prompt"
            )
        return (torch.cat(images), torch.cat(masks), "\n".join(names))
