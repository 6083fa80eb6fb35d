"""``img2img run`` with masks against a real ComfyUI server: a sibling mask file and an input's transparency each
change their region alone (crop, img2img, stitch), an opaque RGBA input runs the whole picture, and a changed
mask file runs its input again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from img2img_cli.main import main
from PIL import Image

from cli_progress import manifest_lines

FAST = ["--prompt", "a lighthouse", "--denoise", "0.75", "--steps", "4", "--crop-size", "64"]
SIZE = (150, 200)  # height, width
BLEND = 16  # the default
# The regions as (top, bottom, left, right): the mask file's, and the transparent one of the RGBA input.
MASK_BOX = (50, 100, 70, 130)
CUTOUT_BOX = (30, 90, 20, 80)


def box_mask(box: tuple[int, int, int, int], grow: int = 0) -> np.ndarray:
    top, bottom, left, right = box
    mask = np.zeros(SIZE, dtype=bool)
    mask[max(top - grow, 0) : bottom + grow, max(left - grow, 0) : right + grow] = True
    return mask


def noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*SIZE, 3), dtype=np.uint8)


def write_inputs(folder: Path) -> dict[str, np.ndarray]:
    """photo.png with photo.mask.png beside it (white = change), cutout.png with a transparent hole, opaque.png
    (RGBA, every pixel opaque); returns each input's RGB."""
    folder.mkdir()
    pixels = {name: noise(seed) for seed, name in enumerate(("photo", "cutout", "opaque"))}
    Image.fromarray(pixels["photo"]).save(folder / "photo.png")
    Image.fromarray(np.where(box_mask(MASK_BOX), 255, 0).astype(np.uint8)).save(folder / "photo.mask.png")
    alpha = np.where(box_mask(CUTOUT_BOX), 0, 255).astype(np.uint8)
    Image.fromarray(np.dstack([pixels["cutout"], alpha])).save(folder / "cutout.png")
    Image.fromarray(np.dstack([pixels["opaque"], np.full(SIZE, 255, np.uint8)])).save(folder / "opaque.png")
    return pixels


def executed_classes(server, prompt_id: str) -> set[str]:
    [entry] = server.get_json(f"/history/{prompt_id}").values()
    return {node["class_type"] for node in entry["prompt"][2].values()}


def test_a_sibling_mask_and_an_inputs_transparency_change_their_region_alone(server, checkpoint, tmp_path, capsys):
    pixels = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), *FAST, "--checkpoint", checkpoint, "--out", str(out), "--server", server.url]
    assert main(args) == 0, capsys.readouterr()
    assert "3 done, 0 skipped, 0 failed" in capsys.readouterr().out  # the mask file is no input
    lines = {Path(line["input"]).stem: line for line in manifest_lines(out)}
    assert lines["photo"]["mask_file"] == str(tmp_path / "in" / "photo.mask.png")
    assert (lines["cutout"]["mask"], lines["opaque"]["mask"]) == ("alpha", "alpha")
    for name, box in (("photo", MASK_BOX), ("cutout", CUTOUT_BOX)):
        assert {"Img2ImgCrop", "Img2ImgStitch"} <= executed_classes(server, lines[name]["prompt_id"])
        with Image.open(out / lines[name]["output"]) as picture:
            assert (picture.size, picture.mode) == ((SIZE[1], SIZE[0]), "RGB")
            output = np.asarray(picture)
        # w is 0 from the blend width on: every pixel there is the input's, bit for bit.
        far = ~box_mask(box, grow=BLEND - 1)
        assert np.array_equal(output[far], pixels[name][far]), name
        changed = (output[box_mask(box)] != pixels[name][box_mask(box)]).any(axis=-1)
        assert changed.mean() > 0.9, (name, changed.mean())
    assert "LoadImageMask" in executed_classes(server, lines["photo"]["prompt_id"])
    # An RGBA file without a transparent pixel has no region: the server's loader said so, and the whole picture
    # ran through the plain chain (its sides cropped to the VAE's multiple of 8, as without masks).
    assert "Img2ImgCrop" not in executed_classes(server, lines["opaque"]["prompt_id"])
    with Image.open(out / lines["opaque"]["output"]) as picture:
        assert picture.size == (200, 144)

    # The same run again skips all three; a changed mask file runs its input again, the others stay.
    assert main(args) == 0
    assert "0 done, 3 skipped, 0 failed" in capsys.readouterr().out
    moved = np.where(box_mask((10, 40, 10, 40)), 255, 0).astype(np.uint8)
    Image.fromarray(moved).save(tmp_path / "in" / "photo.mask.png")
    assert main(args) == 0
    assert "1 done, 2 skipped, 0 failed" in capsys.readouterr().out


def test_mask_alpha_without_transparency_keeps_the_picture_and_sibling_without_a_file_fails(
    server, checkpoint, tmp_path, capsys
):
    folder = tmp_path / "in"
    folder.mkdir()
    pixels = noise(7)
    Image.fromarray(pixels).save(folder / "plain.png")
    out = tmp_path / "out"
    args = ["run", str(folder / "plain.png"), *FAST, "--checkpoint", checkpoint, "--out", str(out)]
    assert main([*args, "--server", server.url, "--mask", "alpha"]) == 0, capsys.readouterr()
    [line] = manifest_lines(out)
    # No region: the crop node's one crop has an empty mask, which changes nothing, and the stitch passes it.
    with Image.open(out / line["output"]) as picture:
        assert np.array_equal(np.asarray(picture), pixels)
    assert main([*args, "--server", server.url, "--mask", "sibling"]) == 1
    err = capsys.readouterr().err
    assert f"FAILED {folder / 'plain.png'}: no mask plain.mask.png beside it (--mask sibling)" in err
