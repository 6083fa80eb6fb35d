"""Img2ImgSaveImage: PNGs in ComfyUI's output folder, with the graph in their metadata, never overwriting."""

from __future__ import annotations

import os

import folder_paths
from comfy.cli_args import args

from .core.images import image_to_pil, png_metadata


class Img2ImgSaveImage:
    DESCRIPTION = (
        "Saves images as PNG in ComfyUI's output folder with the prompt and workflow in their metadata, "
        "so the file can be dragged back into ComfyUI. An existing file is never overwritten."
    )
    CATEGORY = "img2img"
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ()

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": (
                    "STRING",
                    {
                        "default": "img2img",
                        "tooltip": "File name prefix inside the output folder; may name subfolders ('runs/cat') and "
                        "use %date:yyyy-MM-dd%-style tokens like core SaveImage.",
                    },
                ),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save(self, images, filename_prefix, prompt=None, extra_pnginfo=None):
        output_dir = folder_paths.get_output_directory()
        pictures = image_to_pil(images)
        if not pictures:
            raise ValueError("images: the batch is empty, there is nothing to save")
        try:
            folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
                filename_prefix, output_dir, pictures[0].width, pictures[0].height
            )
        except Exception as error:  # core raises a bare Exception for prefixes that leave the folder
            raise ValueError(f"filename_prefix: {filename_prefix!r} is not allowed ({error})") from error
        os.makedirs(folder, exist_ok=True)
        metadata = None if args.disable_metadata else png_metadata(prompt, extra_pnginfo)
        results = []
        for batch_number, picture in enumerate(pictures):
            stem = name.replace("%batch_num%", str(batch_number))
            while True:
                file = f"{stem}_{counter:05}_.png"
                counter += 1
                try:
                    # "x": another writer may take the name between our listing and this open.
                    with open(os.path.join(folder, file), "xb") as handle:
                        picture.save(handle, format="PNG", pnginfo=metadata, compress_level=4)
                    break
                except FileExistsError:
                    continue
            results.append({"filename": file, "subfolder": subfolder, "type": "output"})
        return {"ui": {"images": results}}
