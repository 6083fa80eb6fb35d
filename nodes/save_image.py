"""Img2ImgSaveImage: images in ComfyUI's output folder with their graph and A1111 parameters, never overwriting."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import folder_paths
from comfy.cli_args import args

from .core.image_bytes import FILE_EXTENSIONS, FORMATS, image_file_bytes
from .core.parameters import format_parameters
from .core.prompt_graph import parameters_from_prompt


def _source_stem(source_name: str) -> str:
    """The source file's name without folders or extension, safe inside a file name."""
    stem = Path(source_name.replace("\\", "/")).stem
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip(".") or "image"


def _write_new(folder: str, stem: str, extension: str, counter: int, data: bytes) -> tuple[str, int]:
    """Write ``data`` under the first free ``stem_NNNNN_.ext`` from ``counter`` on; never replace a file.

    The bytes go to a hidden temporary file first, so that a crash or a full disk never leaves a cut-short
    image under a final name; a hard link then gives it the first free name, failing instead of replacing
    when another writer took that name since core listed the folder.

    The ``img2img`` command's ``write_output`` (cli/results.py) follows the same rule with its own names
    (``stem_1.png``, not ComfyUI's counter); it is a second copy because the command is installed alone,
    without the pack, and the pack runs inside ComfyUI without the command.
    """
    partial = os.path.join(folder, f".{stem}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        while True:
            name = f"{stem}_{counter:05}_{extension}"
            try:
                _place(partial, os.path.join(folder, name))
                return name, counter
            except FileExistsError:
                counter += 1
    finally:
        if os.path.lexists(partial):
            os.unlink(partial)


def _place(partial: str, target: str) -> None:
    """Give the finished file ``partial`` the name ``target``, which must not exist yet."""
    try:
        os.link(partial, target)
    except FileExistsError:
        raise
    except OSError:
        # A file system without hard links (FAT, some network shares): reserve the name, then swap the
        # finished file in; a crash in between leaves an empty file, never a cut-short image.
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        os.replace(partial, target)


class Img2ImgSaveImage:
    DESCRIPTION = (
        "Saves images in ComfyUI's output folder with the prompt and workflow in their metadata (drag the file back "
        "into ComfyUI to get the graph) and AUTOMATIC1111-style parameters for image browsers. Never overwrites a file."
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
                "filename_prefix": ("STRING", {
                    "default": "img2img",
                    "tooltip": "File name prefix inside the output folder; may name subfolders ('runs/cat') and "
                               "use %date:yyyy-MM-dd%-style tokens like core SaveImage.",
                }),
                "format": (list(FORMATS), {
                    "default": FORMATS[0],
                    "tooltip": "png: 8-bit PNG. png16: 16-bit PNG. webp, jpeg: smaller files, metadata in EXIF.",
                }),
                "quality": ("INT", {
                    "default": 95, "min": 1, "max": 100,
                    "tooltip": "Quality of webp and jpeg files (png is lossless).",
                }),
            },
            "optional": {
                "source_name": ("STRING", {
                    "forceInput": True,
                    "tooltip": "The source file name (Img2ImgLoadImage's filename): outputs are named after it.",
                }),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID"},
        }  # fmt: skip

    def save(self, images, filename_prefix, format, quality, source_name=None, prompt=None, extra_pnginfo=None,
             unique_id=None):  # fmt: skip
        if images.ndim != 4 or images.shape[0] == 0:
            raise ValueError(f"images: expected a non-empty IMAGE batch, got shape {tuple(images.shape)}")
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        height, width = images.shape[1:3]
        output_dir = folder_paths.get_output_directory()
        try:
            folder, stem, counter, subfolder, _ = folder_paths.get_save_image_path(
                filename_prefix, output_dir, width, height
            )
        except Exception as error:  # core raises a bare Exception for a prefix that leaves the folder
            raise ValueError(f"filename_prefix {filename_prefix!r} is not allowed: {error}") from error
        sources = source_name.splitlines() if source_name else []
        os.makedirs(folder, exist_ok=True)
        parameters = None
        if not args.disable_metadata and prompt is not None and unique_id is not None:
            found = parameters_from_prompt(prompt, unique_id, size=(width, height))
            parameters = format_parameters(found) if found else None
        results = []
        for batch_number, image in enumerate(images):
            data = image_file_bytes(
                image, format, prompt, extra_pnginfo, parameters, quality=quality, metadata=not args.disable_metadata
            )
            item_stem = stem.replace("%batch_num%", str(batch_number))
            if sources:  # named after its source: image i of a folder batch after file i
                item_stem = f"{item_stem}_{_source_stem(sources[min(batch_number, len(sources) - 1)])}"
                name, _ = _write_new(folder, item_stem, FILE_EXTENSIONS[format], 1, data)
            else:
                name, counter = _write_new(folder, item_stem, FILE_EXTENSIONS[format], counter, data)
                counter += 1
            results.append({"filename": name, "subfolder": subfolder, "type": "output"})
        return {"ui": {"images": results}}
