import io
import json

import torch
from PIL import Image

from comfyui_img2img.nodes.core.images import image_to_pil, pil_to_image_and_mask, png_metadata


def test_rgba_gives_rgb_and_mask_one_minus_alpha():
    picture = Image.new("RGBA", (5, 3), (255, 0, 0, 64))
    image, mask = pil_to_image_and_mask(picture)
    assert image.shape == (1, 3, 5, 3) and mask.shape == (1, 3, 5)
    assert torch.allclose(image[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(mask, torch.full_like(mask, 1 - 64 / 255))


def test_no_alpha_gives_an_all_zero_mask_of_the_image_size():
    image, mask = pil_to_image_and_mask(Image.new("L", (7, 4), 128))
    assert image.shape == (1, 4, 7, 3) and torch.count_nonzero(mask) == 0 and mask.shape == (1, 4, 7)


def test_exif_orientation_is_applied():
    picture = Image.new("RGB", (6, 2), (0, 255, 0))
    exif = picture.getexif()
    exif[0x0112] = 6  # rotated 90° clockwise: upright it is 2 wide, 6 high
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", exif=exif)
    image, _ = pil_to_image_and_mask(Image.open(buffer))
    assert image.shape[1:3] == (6, 2)


def test_image_round_trip_and_metadata():
    image = torch.rand(2, 4, 6, 3)
    pictures = image_to_pil(image)
    assert [p.size for p in pictures] == [(6, 4), (6, 4)]
    back, _ = pil_to_image_and_mask(pictures[1])
    assert torch.allclose(back[0], image[1], atol=0.5 / 255 + 1e-6)
    buffer = io.BytesIO()
    pictures[0].save(
        buffer, format="PNG", pnginfo=png_metadata({"1": {"class_type": "X"}}, {"workflow": {"nodes": []}})
    )
    text = Image.open(io.BytesIO(buffer.getvalue())).text
    assert json.loads(text["prompt"]) == {"1": {"class_type": "X"}} and json.loads(text["workflow"]) == {"nodes": []}
