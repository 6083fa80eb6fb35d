"""A labelled grid of images: one row per seed, one column per denoise strength (the sweep's X/Y plot)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def contact_sheet(images: torch.Tensor, column_labels: list[str], row_labels: list[str], gap: int = 4) -> torch.Tensor:
    """IMAGE [1, H', W', 3]: ``images`` (row-major, len(rows) × len(columns)) on a white sheet, labels above
    the columns and left of the rows."""
    rows, columns = len(row_labels), len(column_labels)
    if images.shape[0] != rows * columns:
        raise ValueError(f"images: {images.shape[0]} images do not fill {rows} rows × {columns} columns")
    height, width = images.shape[1:3]
    font = ImageFont.load_default(size=max(10, min(height, width) // 12))
    label_height = font.getbbox("Ag")[3] + 2 * gap
    label_width = max(font.getbbox(label)[2] for label in row_labels) + 2 * gap
    sheet = Image.new(
        "RGB", (label_width + columns * (width + gap) + gap, label_height + rows * (height + gap) + gap), "white"
    )
    draw = ImageDraw.Draw(sheet)
    pixels = (images[..., :3].detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    for index, picture in enumerate(pixels):
        row, column = divmod(index, columns)
        left = label_width + gap + column * (width + gap)
        top = label_height + gap + row * (height + gap)
        sheet.paste(Image.fromarray(picture), (left, top))
        if row == 0:
            draw.text((left, gap), column_labels[column], fill="black", font=font)
        if column == 0:
            draw.text((gap, top + gap), row_labels[row], fill="black", font=font)
    return torch.from_numpy(np.asarray(sheet, dtype=np.float32) / 255.0)[None]
