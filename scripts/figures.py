"""What the figure scripts (any_size_figure, crop_stitch_figure, kept_pixels_figures) share: a picture file as
RGB in 0..1, the pictures a graph saves on a host server, and a labelled sheet of photos written as JPEG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

import img2img_host as host_harness  # scripts/img2img_host, beside this module


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB"), dtype=np.float64) / 255


def saved_pictures(server: host_harness.Server, graph: dict) -> list[np.ndarray]:
    """Runs the graph to the end and reads what its nodes saved, in the order of the server's history."""
    return [rgb(path) for path in server.saved_paths(server.wait(server.queue(graph)))]


def save_sheet(pictures: list[np.ndarray], labels: list[str], path: Path) -> None:
    """The pictures side by side under their labels (the pack's contact sheet, pictures of one size)."""
    sheet = host_harness.core_module("contact_sheet").contact_sheet(
        torch.from_numpy(np.stack(pictures)).float(), labels, [""]
    )
    # A sheet of photos: as JPEG a fifth of the PNG (what travels to the GPU machine is counted in MiB).
    Image.fromarray((sheet[0].numpy() * 255).round().astype(np.uint8)).save(path, quality=88, optimize=True)
