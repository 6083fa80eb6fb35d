"""Img2ImgLoadImage: a picture from ComfyUI's input folder as IMAGE and MASK."""

from __future__ import annotations

import hashlib
import os

import folder_paths
from PIL import Image, UnidentifiedImageError

from .core.images import pil_to_image_and_mask
from .core.paths import resolve_inside


def input_path(image: str):
    return resolve_inside(folder_paths.get_input_directory(), image, "image")


class Img2ImgLoadImage:
    DESCRIPTION = "Loads an image from ComfyUI's input folder (upload one with the button), upright per its EXIF data."
    CATEGORY = "img2img"
    FUNCTION = "load"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")
    OUTPUT_TOOLTIPS = (
        "The image as RGB.",
        "1 − alpha: 1 where the image is transparent; all zeros for images without alpha.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        input_dir = folder_paths.get_input_directory()
        files = sorted(name for name in os.listdir(input_dir) if os.path.isfile(os.path.join(input_dir, name)))
        return {
            "required": {
                "image": (
                    folder_paths.filter_files_content_types(files, ["image"]),
                    {
                        "image_upload": True,
                        "tooltip": "A file in ComfyUI's input folder, or a path inside it such as 'photos/cat.png'.",
                    },
                ),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        try:
            path = input_path(image)
        except ValueError as error:
            return str(error)
        if not path.is_file():
            return f"image: no file {image!r} in the input folder"
        return True

    @classmethod
    def IS_CHANGED(cls, image):
        # The content, not the name: a re-uploaded file under the same name runs again.
        return hashlib.sha256(input_path(image).read_bytes()).hexdigest()

    def load(self, image):
        path = input_path(image)
        try:
            with Image.open(path) as picture:
                return pil_to_image_and_mask(picture)
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"image: {image!r} could not be read as an image ({error})") from error
