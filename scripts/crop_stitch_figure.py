"""docs/crop_stitch.jpg, the crop-and-stitch page's picture, on the demo model through a host server:

    python3 scripts/host.py build && .host/venv/bin/python scripts/crop_stitch_figure.py

The crop-and-stitch example graph (example_workflows/api/img2img_crop_stitch.json: the held-out coffee photo at
1024×768, two regions of its mask changed at 512 px crops, strength 0.6, colour correction on) as one labelled
sheet: the input with its mask shown in green, the first region's crop, the stitched result, and the
difference to the input ×8 outside the blend (black: those pixels are the input's, bit for bit).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import img2img_host as host_harness  # scripts/img2img_host, beside this script
from figures import rgb, save_sheet, saved_pictures

EXAMPLES = host_harness.PACK_ROOT / "example_workflows"
OUT = host_harness.PACK_ROOT / "docs" / "crop_stitch.jpg"
SHEET_SIDE = 384  # each picture's height on the sheet


def fitted(picture: np.ndarray) -> np.ndarray:
    """A picture on the sheet: SHEET_SIDE high, centred on a white 4:3 cell."""
    image = Image.fromarray((picture * 255).round().astype(np.uint8))
    width = round(image.width * SHEET_SIDE / image.height)
    cell = Image.new("RGB", (SHEET_SIDE * 4 // 3, SHEET_SIDE), "white")
    cell.paste(image.resize((width, SHEET_SIDE), Image.LANCZOS), ((cell.width - width) // 2, 0))
    return np.asarray(cell, dtype=np.float64) / 255


def main() -> None:
    graph = json.loads((EXAMPLES / "api" / "img2img_crop_stitch.json").read_text(encoding="utf-8"))
    graph["1"]["inputs"]["ckpt_name"] = host_harness.DEMO_CHECKPOINT
    graph["12"] = {
        "class_type": "Img2ImgSaveImage",
        "inputs": {  # the crops the model saw, saved beside
            "images": ["6", 0],
            "filename_prefix": "crops",
            "format": "png",
            "quality": 95,
            "source_name": ["4", 2],
        },
    }
    with tempfile.TemporaryDirectory() as folder, host_harness.Server(host_harness.default_host(), Path(folder)) as s:
        for name in ("coffee.jpg", "coffee_mask.png"):
            (s.input_dir / name).write_bytes((EXAMPLES / "input" / name).read_bytes())
        pictures = saved_pictures(s, graph)
    result = next(picture for picture in pictures if picture.shape[:2] == (768, 1024))
    crop = next(picture for picture in pictures if picture.shape[:2] == (512, 512))
    source = rgb(EXAMPLES / "input" / "coffee.jpg")
    mask = rgb(EXAMPLES / "input" / "coffee_mask.png")[..., :1]
    shown = source * (1 - 0.4 * mask) + np.array([0.0, 1.0, 0.0]) * 0.4 * mask
    difference = np.clip(np.abs(result - source) * 8, 0, 1)
    cells = [fitted(p) for p in (shown, crop, result, difference)]
    save_sheet(cells, ["input, mask green", "a crop, 512 px", "stitched at 0.6", "changed, x8"], OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
