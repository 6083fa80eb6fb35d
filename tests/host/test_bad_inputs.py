"""The bad-input table: every row against one real server, with the table of docs/reliability.md as its record.

For every row the server must answer with the outcome the row states, naming the node, the input and what
was wrong (ComfyUI's ``node_errors`` at validation, else an execution error); answer ``/system_stats``
right after; write nothing outside its output folder; and change no file that existed before.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pack_under_test import PACK_ROOT

VALIDATION, EXECUTION, RUNS = "refused at validation", "execution error", "runs"


@dataclass(frozen=True)
class Row:
    id: str
    change: Callable[[dict], None]  # edits the example graph
    outcome: str
    node: str = ""  # the node the error names
    needles: tuple[str, ...] = ()  # each must appear in the error: the input's name and what was wrong


def set_input(node: str, **values) -> Callable[[dict], None]:
    return lambda graph: graph[node]["inputs"].update(values)


def image(name: str) -> Callable[[dict], None]:
    return set_input("4", image=name)


def without(node: str, name: str) -> Callable[[dict], None]:
    return lambda graph: graph[node]["inputs"].pop(name)


def latent_from(node_type: str, **inputs) -> Callable[[dict], None]:
    """A latent from another node (id 20) into the sampler, in place of NoiseAtStrength's."""

    def change(graph: dict) -> None:
        graph["20"] = {"class_type": node_type, "inputs": inputs}
        graph["7"]["inputs"]["latent_image"] = ["20", 0]

    return change


def masked_by(mask_node: dict) -> Callable[[dict], None]:
    def change(graph: dict) -> None:
        graph["21"] = mask_node
        graph["22"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["5", 0], "mask": ["21", 0]}}
        graph["6"]["inputs"]["latent"] = ["22", 0]

    return change


def noised_into_core_ksampler(graph: dict) -> None:
    graph["7"] = {"class_type": "KSampler", "inputs": {
        "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["6", 0], "seed": 3,
        "steps": 4, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 0.6}}  # fmt: skip


ROWS = [
    # Images
    Row("missing file", image("no_such_file.png"), VALIDATION, "4", ("image", "no_such_file.png")),
    Row("zero bytes", image("zero.png"), VALIDATION, "4", ("zero.png", "empty")),
    Row("truncated PNG", image("truncated.png"), EXECUTION, "4", ("truncated.png", "truncated")),
    Row("truncated JPEG", image("truncated.jpg"), EXECUTION, "4", ("truncated.jpg", "truncated")),
    Row("a text file named .png", image("notes.png"), VALIDATION, "4", ("notes.png", "not an image")),
    Row("a 1×1 image", image("one_pixel.png"), RUNS),
    Row("a header claiming 30000×30000", image("bomb.png"), VALIDATION, "4", ("bomb.png", "pixels")),
    Row("an animated GIF", image("animated.gif"), RUNS),
    Row("an animated WebP", image("animated.webp"), RUNS),
    Row("a CMYK JPEG", image("cmyk.jpg"), RUNS),
    Row("a 16-bit PNG", image("sixteen.png"), RUNS),
    Row("a palette PNG with transparency", image("palette.png"), RUNS),
    Row("a file name with unicode and spaces", image("Über den Wolken ☁.png"), RUNS),
    # Names and paths
    Row("image ../../etc/passwd", image("../../etc/passwd"), VALIDATION, "4", ("image", "inside the folder")),
    Row("image as an absolute path", image("/etc/passwd"), VALIDATION, "4", ("image", "inside the folder")),
    Row("a symlink in the input folder to outside it", image("link.png"), VALIDATION, "4", ("image", "outside")),
    Row("folder with ..", set_input("4", folder="walk/../../x"), VALIDATION, "4", ("folder", "inside the folder")),
    Row(
        "filename_prefix leaving the output folder",
        set_input("9", filename_prefix="../escape"),
        EXECUTION,
        "9",
        ("filename_prefix", "not allowed"),
    ),
    Row("filename_prefix of an existing file", set_input("9", filename_prefix="existing"), RUNS),
    # Numbers
    Row("steps 0", set_input("7", steps=0), VALIDATION, "7", ("steps", "min")),
    Row("steps −5", set_input("7", steps=-5), VALIDATION, "7", ("steps", "min")),
    Row("steps 100000", set_input("7", steps=100000), VALIDATION, "7", ("steps", "max")),
    Row("denoise −0.1", set_input("7", denoise=-0.1), VALIDATION, "7", ("denoise", "min")),
    Row("denoise 1.5", set_input("7", denoise=1.5), VALIDATION, "7", ("denoise", "max")),
    Row("denoise NaN", set_input("6", denoise=float("nan")), EXECUTION, "6", ("denoise", "from 0 to 1")),
    Row("denoise inf", set_input("7", denoise=float("inf")), VALIDATION, "7", ("denoise", "max")),
    Row("cfg NaN", set_input("7", cfg=float("nan")), EXECUTION, "7", ("cfg", "finite")),
    Row("seed above 2^64", set_input("7", seed=2**64 + 1), VALIDATION, "7", ("seed", "max")),
    Row("limit (batch size) −1", set_input("4", limit=-1), VALIDATION, "4", ("limit", "0 (every file")),
    Row(
        "width/height not a multiple of 8 (multiple 1)",
        set_input("4", width=100, height=100, multiple=1),
        EXECUTION,
        "5",
        ("pixels", "not a multiple of the VAE's scale"),
    ),
    # Graph shapes
    Row(
        "a LATENT of another channel count",
        latent_from("LoadLatent", latent="sixteen_channels.latent"),
        EXECUTION,
        "7",
        ("latent_image", "16 channels", "expects 4"),
    ),
    Row(
        "a noise mask of another size than the latent",
        masked_by({"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 48, "height": 80}}),
        RUNS,
    ),
    Row("NoiseAtStrength's output into core KSampler", noised_into_core_ksampler, RUNS),
    # API
    Row("unknown input keys", set_input("7", colour="blue", _private=1), RUNS),
    Row('a wrong type (steps "twenty")', set_input("7", steps="twenty"), VALIDATION, "7", ("steps", "twenty")),
    Row("a link to a missing node", set_input("7", model=["99", 0]), VALIDATION, "7", ("99",)),
    *(
        Row(f"{node_type} without {name}", without(node, name), VALIDATION, node, (name, "missing"))
        for node, node_type, name in (
            ("4", "Img2ImgLoadImage", "image"),
            ("5", "Img2ImgVAEEncode", "vae"),
            ("6", "Img2ImgNoiseAtStrength", "denoise"),
            ("7", "Img2ImgKSampler", "latent_image"),
            ("8", "Img2ImgVAEDecode", "samples"),
            ("9", "Img2ImgSaveImage", "images"),
        )
    ),
]


def encoded(picture: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=format, **options)
    return buffer.getvalue()


def bomb_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def input_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    frames = [Image.new("RGB", (64, 64), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    palette = Image.new("P", (64, 64), 1)
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    palette.paste(0, (0, 0, 32, 64))
    sixteen = Image.fromarray((rng.integers(0, 65536, (64, 64), dtype=np.uint16)).astype(np.uint16))
    return {
        "zero.png": b"",
        "truncated.png": encoded(photo, "PNG")[:300],
        "truncated.jpg": encoded(photo, "JPEG", quality=90)[:700],
        "notes.png": b"just some text, not a picture\n",
        "one_pixel.png": encoded(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"),
        "bomb.png": bomb_png(),
        "animated.gif": encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0),
        "animated.webp": encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50),
        "cmyk.jpg": encoded(photo.convert("CMYK"), "JPEG"),
        "sixteen.png": encoded(sixteen, "PNG"),
        "palette.png": encoded(palette, "PNG", transparency=0),
        "Über den Wolken ☁.png": encoded(photo, "PNG"),
    }


def sixteen_channel_latent() -> bytes:
    from safetensors.torch import save

    generator = torch.Generator().manual_seed(0)
    return save({"latent_tensor": torch.randn(1, 16, 8, 8, generator=generator)}, metadata={"format": "pt"})


def snapshot(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file under ``folder`` (links as their target) with a hash of its bytes."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if relative.split("/")[0] in skip:
            continue
        if path.is_symlink():
            found[relative] = "-> " + str(path.readlink())
        elif path.is_file():
            found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def hardened_server(start_server):
    """A server of its own, so that the folders' snapshots see only this table's rows."""
    server = start_server()
    for name, data in input_files().items():
        (server.input_dir / name).write_bytes(data)
    (server.input_dir / "sixteen_channels.latent").write_bytes(sixteen_channel_latent())
    (server.input_dir / "link.png").symlink_to(PACK_ROOT / "example_workflows" / "input" / "sample.png")
    (server.output_dir / "existing_00001_.png").write_bytes(b"a user's file, not to be replaced")
    return server


def error_of(entry: dict) -> dict:
    return next(data for name, data in entry["status"]["messages"] if name == "execution_error")


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_bad_input(hardened_server, api_graph, row: Row):
    server = hardened_server
    workdir = server.output_dir.parent
    outside_before = snapshot(workdir, skip=("output", "temp", "user", "server.log"))
    output_before = snapshot(server.output_dir)
    graph = api_graph(seed=ROWS.index(row) + 1000, **{"6.steps": 4, "7.steps": 4})
    row.change(graph)

    status, answer = server.post_json("/prompt", {"prompt": graph})
    if row.outcome == VALIDATION:
        assert status == 400, answer
        errors = json.dumps(answer["node_errors"].get(row.node, answer))
        assert row.node in answer["node_errors"], answer
        assert all(needle in errors for needle in row.needles), errors
    else:
        assert status == 200, answer
        entry = server.wait(answer["prompt_id"])
        if row.outcome == EXECUTION:
            error = error_of(entry)
            assert entry["status"]["status_str"] == "error"
            assert error["node_id"] == row.node, error
            assert all(needle in error["exception_message"] for needle in row.needles), error
        else:
            [path] = server.saved_paths(entry)
            assert path.stat().st_size > 0

    assert server.get_json("/system_stats")["system"]["comfyui_version"] == "0.3.75"
    assert snapshot(workdir, skip=("output", "temp", "user", "server.log")) == outside_before
    output_after = snapshot(server.output_dir)
    assert {name: output_after.get(name) for name in output_before} == output_before


def test_an_empty_image_batch_is_refused_by_every_node_that_takes_images(comfy_runtime):
    """No node of core or the pack makes an empty IMAGE batch in a graph; the pack's nodes refuse one anyway."""
    empty = torch.zeros(0, 64, 64, 3)
    with pytest.raises(ValueError, match=r"pixels.*non-empty"):
        comfy_runtime.pack["Img2ImgVAEEncode"]().encode(empty, comfy_runtime.vae, "auto", 512, 64)
    with pytest.raises(ValueError, match=r"images.*non-empty"):
        comfy_runtime.pack["Img2ImgSaveImage"]().save(empty, "empty", "png", 95)


def test_the_readme_table_has_a_row_for_every_case():
    """The table lives in docs/reliability.md (the README links it), under "## Bad inputs"."""
    page = (PACK_ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    section = page[page.index("## Bad inputs") :]
    missing = [row.id for row in ROWS if f"| {row.id} |" not in section]
    assert not missing, missing
